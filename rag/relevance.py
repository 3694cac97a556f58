"""Is the corpus about this question at all? Relevance of retrieved papers and names no paper has.

Statistics come from the lexical index (IDF, the corpus's words, which papers hold a term), never
from re-reading the corpus, so the check costs the same at 300 or 100,000 papers.
"""

from __future__ import annotations

import re

from rag.lexicon import Lexicon
from rag.text import NAME, terms
from rag.types import Hit

GENERIC = frozenset(terms(
    "paper papers work works study studies propose proposed report reports method methods approach which what "
    "corpus author authors wrote written listed year published summarise summarize say says describe"
))
# A proper name followed by a size or version: "Gemini 1.5", "Llama 70B", "GPT 5".
SIZED = re.compile(r"\b([A-Z][A-Za-z]+(?:-[A-Za-z]+)?)[\s-]+(v?\d+(?:\.\d+)*\s?[BMKT]?)\b")
LIST_KEEP = 0.7  # a "which papers" answer names every paper at least this relevant relative to the best


def variants(name: str) -> list[list[str]]:
    """Forms of a name, each a list of words that must all occur: GPT-2-like -> GPT-2, MLPs -> MLP,
    UAV-assisted -> UAV + assisted. A version (Mamba-3) is never split off: Mamba is not Mamba-3."""
    base = re.sub(r"-(like|based|style|sized|scale)$", "", name, flags=re.I)
    forms = [[name], [base]] + ([[base[:-1]]] if base.endswith("s") else [])
    parts = base.split("-")
    if len(parts) > 1 and all(p.isalpha() and len(p) > 2 for p in parts):
        forms.append(parts)
    return forms


class Relevance:
    """Scores how well papers match a question, from the corpus statistics of the lexical index."""

    def __init__(self, lexicon: Lexicon, refuse_below: float) -> None:
        self.lexicon = lexicon
        self.refuse_below = refuse_below

    def unknown_names(self, query: str) -> list[str]:
        """Names no paper has (FP4, Mamba-3, KTO), and named sizes or versions no paper has together
        with their name (Llama 70B when the corpus knows Llama only at 7B)."""
        unknown = [w for w in NAME.findall(query) if not any(all(map(self.lexicon.mentions, f)) for f in variants(w))]
        for name, size in SIZED.findall(query):
            together = terms(f"{name} {size}")
            if len(together) > 1 and not self.lexicon.together(together) and f"{name} {size}" not in unknown:
                unknown.append(f"{name} {size}")
        return sorted(set(unknown), key=unknown.index)

    def coverage(self, query: str, hit: Hit) -> float:
        """IDF-weighted share of the question's content terms that the paper contains."""
        wanted = sorted(set(terms(query)) - GENERIC)
        total = sum(self.lexicon.idf(t) for t in wanted)
        if not total:
            return 0.0
        have = set(terms(f"{hit.paper.title} {hit.paper.abstract}"))
        return sum(self.lexicon.idf(t) for t in wanted if t in have) / total

    def score(self, query: str, hit: Hit) -> float:
        """0-1: the chunk cosine, lifted by shared rare terms. Meaning alone can carry a question
        (a paraphrase shares no words with its answer); shared words alone cannot."""
        dense = hit.dense or 0.0
        return max(dense, (dense + self.coverage(query, hit)) / 2)

    def best(self, query: str, hits: list[Hit]) -> float:
        return max((self.score(query, h) for h in hits), default=0.0)

    def relevant(self, query: str, hits: list[Hit]) -> list[int]:
        """Positions (1-based) of the hits a list answer should name: all close to the best one."""
        scores = [self.score(query, h) for h in hits]
        floor = max(self.refuse_below, LIST_KEEP * max(scores, default=0.0))
        return [i for i, s in enumerate(scores, 1) if s >= floor]

    def named(self, query: str, hits: list[Hit]) -> int:
        """Position (1-based) of the paper a metadata question is about: among the top three, the one
        that contains the question's names exactly as written (PaLM, not palm trees), else the first."""
        names = NAME.findall(query)
        if not names:
            return 1
        found = [
            sum(bool(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", f"{h.paper.title} {h.paper.abstract}")) for n in names)
            for h in hits[:3]
        ]
        return found.index(max(found)) + 1
