"""Is the corpus about this question at all? Relevance of retrieved papers and names no paper has.

Statistics come from the lexical index (IDF, the corpus's words, which papers hold a term), never
from re-reading the corpus, so the check costs the same at 300 or 100,000 papers.
"""

from __future__ import annotations

import re

from rag.lexicon import Lexicon
from rag.text import GENERIC, NAME, SIZE, terms, versioned
from rag.tuned import FILTER_KEEP, LIST_KEEP
from rag.types import Hit

# A capitalised word inside a sentence is a name ("Switchboard", "Whisper"); months and days are not.
_CAPITALISED = re.compile(r"(?<=[\w,;:)] )[A-Z][a-z]+(?:-[A-Za-z]+)*\b")
# Two or more capitalised words in a row inside a sentence are one name ("Monte Carlo", "World Cup").
_PHRASE = re.compile(r"(?<=[\w,;:)] )[A-Z][\w.-]*(?: [A-Z][\w.-]*)+")
_CALENDAR = frozenset(
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday".split()
)


def variants(name: str) -> list[list[str]]:
    """Forms of a name, each a list of words that must all occur: GPT-2-like -> GPT-2, MLPs -> MLP,
    Kolmogorov-Arnold -> Kolmogorov + Arnold, UAV-assisted -> UAV. A version (Mamba-3) is never split
    off: Mamba is not Mamba-3."""
    base = re.sub(r"-(like|based|style|sized|scale)$", "", name, flags=re.I)
    forms = [[name], [base]] + ([[base[:-1]]] if base.endswith("s") else [])
    parts = base.split("-")
    if len(parts) > 1 and all(p.isalpha() and len(p) > 2 for p in parts):
        forms.append(parts)
    if len(parts) > 1 and any(p.islower() for p in parts) and (named := [p for p in parts if not p.islower()]):
        forms.append(named)  # non-Latin -> Latin, UAV-assisted -> UAV: a plain word is no part of the name
    return forms


class Relevance:
    """Scores how well papers match a question, from the corpus statistics of the lexical index."""

    def __init__(self, lexicon: Lexicon, refuse_below: float) -> None:
        self.lexicon = lexicon
        self.refuse_below = refuse_below

    def unknown_names(self, query: str) -> list[str]:
        """What the question names that no paper has: names (FP4, Mamba-3, KTO, Switchboard), versions
        (Llama 4 when the corpus knows Llama 2) and sizes (VibeThinker 70B when it knows VibeThinker
        at 1.5B only). A family the corpus knows at another version or size is still unknown."""
        names = [w for w in NAME.findall(query) if not SIZE.fullmatch(w)]
        names += [w for w in _CAPITALISED.findall(query) if w.lower() not in _CALENDAR and w not in names]
        unknown = [w for w in names if not self._known(w)]
        unknown += [
            " ".join(v.rsplit("-", 1))
            for v in versioned(query)
            if self._known(v.rsplit("-", 1)[0]) and not self.lexicon.mentions(v)
        ]
        known = [w for w in names if w not in unknown]
        unknown += [size for size in SIZE.findall(query) if not self._known_size(size, known)]
        unknown += self._unknown_phrases(query, unknown)
        return sorted(set(unknown), key=unknown.index)

    def _unknown_phrases(self, query: str, unknown: list[str]) -> list[str]:
        """Names of several words (Monte Carlo, Stable Diffusion) that no single paper holds together,
        though each word occurs somewhere; a phrase with a word already reported is not repeated."""
        found = []
        for phrase in _PHRASE.findall(query):
            words = phrase.split()
            if any(w in unknown or w.lower() in _CALENDAR for w in words) or any(u in phrase for u in unknown):
                continue
            if (stems := terms(phrase)) and len(stems) > 1 and not self.lexicon.together(sorted(set(stems))):
                found.append(phrase)
        return found

    def _known(self, name: str) -> bool:
        return any(all(map(self.lexicon.mentions, form)) for form in variants(name))

    def _known_size(self, size: str, names: list[str]) -> bool:
        """A size is known with the question's most specific name (the rarest), or alone if it names none."""
        if not names:
            return self.lexicon.mentions(size)
        rarest = max(names, key=lambda n: (max((self.lexicon.idf(t) for t in terms(n)), default=0.0), -names.index(n)))
        return self.lexicon.together(terms(rarest) + terms(size))

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
        return _lifted(hit.dense, self.coverage(query, hit))

    def best(self, query: str, hits: list[Hit]) -> float:
        return max((self.score(query, h) for h in hits), default=0.0)

    def relevant(self, query: str, hits: list[Hit], keep: float = LIST_KEEP) -> list[int]:
        """Positions (1-based) of the hits a list answer or a summary should name: those close to the best.

        Closeness (kept from `keep` up) is the mean of two shares of the best hit's figure: the retrieval
        score (meaning and words, as fused) and the coverage of the question's terms, IDF-weighted so the
        rare ones count most. Either alone keeps too much: cosines of unrelated papers on one field sit close together,
        and a paper can hold the words without being about them. A paper below the refusal floor never counts;
        when no paper shares a word with the question, the score decides alone.
        """
        if not hits:
            return []
        top = max(h.score for h in hits)
        covered = [self.coverage(query, h) for h in hits]
        most = max(covered)
        kept = []
        for i, (hit, coverage) in enumerate(zip(hits, covered), 1):
            share = hit.score / top if top > 0 else 1.0
            closeness = (share + coverage / most) / 2 if most > 0 else share  # no paper shares a word: the score alone
            if closeness >= keep and _lifted(hit.dense, coverage) >= self.refuse_below:
                kept.append(i)
        return kept

    def on_topic(self, query: str, hits: list[Hit], unfiltered: list[Hit]) -> list[Hit]:
        """The `hits` (of a filtered search) about as relevant as the best of `unfiltered` (see FILTER_KEEP)."""
        floor = FILTER_KEEP * self.best(query, unfiltered)
        return [h for h in hits if self.score(query, h) >= floor]

    def named(self, query: str, hits: list[Hit]) -> int:
        """Position (1-based) of the paper a metadata question is about: among the top three, the one
        that contains the question's names exactly as written (PaLM, not palm trees), else the first."""
        names = NAME.findall(query)
        if not names:
            return 1
        found = [
            sum(
                bool(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", f"{h.paper.title} {h.paper.abstract}"))
                for n in names
            )
            for h in hits[:3]
        ]
        return found.index(max(found)) + 1


def _lifted(dense: float | None, coverage: float) -> float:
    """`Relevance.score` from its parts, for callers that have the coverage already."""
    dense = dense or 0.0
    return max(dense, (dense + coverage) / 2)
