"""The offline answerer: quotes the sentences of each relevant abstract that answer the question.

It has the same `stream(intent, hits)` interface as the LLM answerer, so the engine does not care
which one it drives. Every quoted sentence carries its [n], so the citation check can verify it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rag.lexicon import Lexicon
from rag.question import Intent, Want
from rag.relevance import Relevance
from rag.safety import WITHHELD
from rag.text import GENERIC, sentence_spans, terms
from rag.tuned import NEAR
from rag.types import Hit, Paper, Turn

NAME = "extractive (no LLM)"
EXTRACTIVE_NOTICE = (
    "Extractive answer: sentences quoted from the abstracts, no LLM. "
    "For written answers set RAG_LLM_BASE_URL (any OpenAI-compatible server) or RAG_LLM_BACKEND=openai."
)
MAX_SENTENCES = 3
_NUMBER = re.compile(r"(?<![A-Za-z\d-])\d+(?:[.,]\d+)*\s*(?:%|x|×|times)?(?![A-Za-z\d])")
# A sentence that cites ("[1] says ...") or carries structured output (JSON fields, chat turns, tags) is never a quote:
# an abstract has no business imitating an answer.
_STRUCTURED = re.compile(r"\[\d+\]|\"\w+\"\s*:|\b(?:user|assistant|system)\s*:|[<‹]/?\w+[>›]", re.I)
# A figure a question can ask for: a number that is not an enumeration mark such as "(1)".
_FIGURE = re.compile(r"(?<![A-Za-z\d(-])\d+(?:[.,]\d+)*\s*(?:%|x|×|times)?(?![A-Za-z\d)])")
_FINDING = re.compile(
    r"\b(achiev|improv|outperform|reduc|speed|accelerat|surpass|increas|decreas|sav|gain|lower|higher|faster|"
    r"state-of-the-art|results? show|we show|we find|demonstrat)\w*",
    re.I,
)
# A sentence naming the data a method was measured on, or what it was measured against (`Intent.wants`). A dataset is
# named (ImageNet, GLUE, WikiText-103): "various benchmarks" names none.
_NAMED = r"(?:[A-Z][a-z]+[A-Z][\w-]*|[A-Z]{2,}[\w-]*|[A-Z][a-z]+-\d[\w-]*)"
_DATASET = re.compile(
    rf"\b(?:on|across|using|from) (?:the )?{_NAMED}"
    rf"|\b{_NAMED}(?: [A-Z][\w-]*)? (?:data ?sets?|benchmarks?|corpus|corpora|test sets?)\b"
)
_COMPARISON = re.compile(
    r"\b(?:compared (?:to|with|against)|\w+er than|outperform\w*|versus|vs\.?|baselines?|relative to|surpass\w*|on par with"
    r"|over (?:the )?(?:state-of-the-art|previous|prior|existing|standard))\b",
    re.I,
)
_HAS = {"figure": _FIGURE, "dataset": _DATASET, "comparison": _COMPARISON}
# Asked for a dataset an abstract does not name, what it says of its evaluation comes closest.
_EVALUATED = re.compile(r"\b(?:data ?sets?|benchmarks?|corpus|corpora|experiments?|evaluat\w*)\b", re.I)
_LACKS = {"figure": "gives no figure", "dataset": "names no dataset", "comparison": "reports no comparison"}
# What a summary groups its papers by: the kind of result their quoted sentences report, in this order.
_REPORTS = [
    ("Speed", re.compile(r"\b(?:speed-?ups?|faster|throughput|latency|wall-?clock|accelerat\w*)\b", re.I)),
    ("Memory", re.compile(r"\b(?:memory|footprint|[GMT]B|compress\w*)\b")),
    (
        "Accuracy and quality",
        re.compile(r"\b(?:accura\w*|perplexity|BLEU|F1|scores?|outperform\w*|state-of-the-art|error)\b", re.I),
    ),
]
OTHER = "Other findings"
_NAME = r"([A-Z][\w\-]*[A-Z0-9][\w\-]*)(?<![A-Z]s)"  # COAT, FedLoGe, DP-LoRA; not a plural like LLMs
_PROPOSE = r"\b(?:[Ww]e|[Tt]his paper|[Tt]his work) (?:propose|present|introduce|develop|design)s?\s+"
_INTRODUCES = [
    re.compile(_PROPOSE + r"(?:a |an |the )?(?:new |novel )?" + _NAME + r"\b(?=[,:(]| is\b| which\b| that\b)"),
    re.compile(r"(?:^|\. )" + _NAME + r"(?:,| is) an? "),
    # "we propose a Flexible REsource Scheduling (FRES) framework": an acronym of the words before it (see _spelt)
    re.compile(_PROPOSE + r"(?:a |an |the )?(?:new |novel )?((?:[\w-]+ ){1,5})\(" + _NAME + r"(?: for short)?\)"),
    # "we propose Kaleidoscope, a flexible ...", "we propose sigmaReparam, a simple ..."
    re.compile(_PROPOSE + r"(?:the )?([a-z]+[A-Z][\w\-]*|[A-Z][a-z][\w\-]*), an? "),
]


_SMALL = frozenset({"of", "for", "and", "the", "a", "an", "to", "in", "on", "with", "via", "by"})


def reports(hit: Hit) -> str:
    """What kind of result a paper's quoted findings report (`_REPORTS`), for grouping a summary."""
    text = " ".join(q for q in hit.quotes() if _FIGURE.search(q) or _FINDING.search(q))
    return next((name for name, pattern in _REPORTS if pattern.search(text)), OTHER)


def lacks(hit: Hit, wants: Want | None) -> str:
    """What the paper's answering sentences lack of what the question asks for ("gives no figure"), or "".
    The quotes hold a sentence with a dataset or a comparison whenever the abstract has one (`evidence_spans`)."""
    return _LACKS[wants] if wants and not any(_HAS[wants].search(q) for q in hit.quotes()) else ""


def missing_note(cited: list[Hit], wants: Want | None) -> str:
    """What an answer says of the cited papers whose abstracts lack what the question asks for."""
    return " ".join(f"The abstract of {label(h.paper)} {what} for this." for h in cited if (what := lacks(h, wants)))


def grouped(hits: list[Hit]) -> list[Hit]:
    """A summary's relevant papers grouped by what they report, strongest first within a group (the sort is
    stable), then the others: the [n] then count the papers in the order the answer names them."""
    order = [name for name, _ in _REPORTS] + [OTHER]
    relevant = sorted((h for h in hits if h.relevant), key=lambda h: order.index(reports(h)))
    return relevant + [h for h in hits if not h.relevant]


def method_name(paper: Paper) -> str:
    """The name the paper goes by: its title's lead ("COAT: ..."), else the name its abstract
    introduces ("we propose X, ...", "X is a ...", "we propose a ... (X)"), which questions and
    readers know it by even when the title does not say it."""
    lead = paper.title.split(":")[0].strip()
    if ":" in paper.title and len(lead.split()) <= 3:
        return lead
    for pattern in _INTRODUCES:
        for m in pattern.finditer(paper.abstract):
            if pattern.groups == 1:
                return m.group(1).rstrip("-")
            if _spelt(m.group(2), m.group(1)):
                return m.group(2)
    return ""


def _spelt(acronym: str, words: str) -> bool:
    """The acronym spells the words it follows: the initials of its last few words (small words
    aside) begin it and come in its capitals in order. FRES for Flexible REsource Scheduling, SRO for
    Stackelberg response optimization; not MoE after "a modular vision model"."""
    capitals = "".join(c for c in acronym if c.isupper())
    initials = [w[0].upper() for w in re.split(r"[\s-]+", words) if w and w.lower() not in _SMALL]
    for start in range(len(initials) - 1):
        tail, rest = initials[start:], iter(capitals)
        if tail[0] == capitals[:1] and all(c in rest for c in tail):
            return True
    return False


def label(paper: Paper) -> str:
    """How an answer names a paper: title, with the method's name in front when the title lacks it."""
    name = method_name(paper)
    if not paper.title:
        return f"{name} ({paper.display_title})" if name else paper.display_title
    return paper.title if not name or name.lower() in paper.title.lower() else f"{name}: {paper.title}"


class ExtractiveAnswerer:
    """Quotes evidence sentences, one paper per line for lists and summaries."""

    name = NAME
    mode = "extractive"
    notice = EXTRACTIVE_NOTICE

    def __init__(self, lexicon: Lexicon, relevance: Relevance) -> None:
        self.lexicon = lexicon
        self.relevance = relevance

    def fits(self, question: str) -> bool:
        return True  # no context window

    def condense(self, question: str, turns: list[Turn]) -> str:
        """A follow-up searched together with the question before it (no model to rewrite it)."""
        return f"{turns[-1].question} {question}"

    def field_terms(self, question: str) -> str:
        return ""  # no model to name them: the question's own words are searched

    def fit(self, intent: Intent, hits: list[Hit]) -> list[Hit]:
        return hits  # no context window to fit

    def stream(self, intent: Intent, hits: list[Hit]) -> Iterator[str]:
        """One piece per quoted sentence (after each "[n] "), and a line per paper of a list."""
        yield from (piece for piece in re.split(r"(?<=\] )|(?<=\n)", self.answer(intent, hits)) if piece)

    def answer(self, intent: Intent, hits: list[Hit]) -> str:
        """Written from the evidence step's judgements: a list or summary names every paper judged relevant
        (they come first, strongest first), a lookup the best one unless another is as close."""
        if intent.asks:
            return self._metadata(intent, hits)
        listed = (intent.is_list or intent.is_summary) and not intent.one
        keep = self._chosen(intent, hits, listed)
        lines = [f"- {self.paper_line(i, hits[i - 1], intent.wants)}" for i in keep]
        groups = [reports(hits[i - 1]) for i in keep] if intent.is_summary and listed else []
        if len(set(groups)) > 1:
            return "\n".join(_headed(lines, groups))
        return "\n".join(lines) if len(lines) > 1 or (listed and intent.is_list) else lines[0][2:]

    def _chosen(self, intent: Intent, hits: list[Hit], listed: bool) -> list[int]:
        """Positions (1-based) of the papers the answer names."""
        if intent.filter_only:  # "papers from 2019": the filter is the answer
            return [i for i, h in enumerate(hits, 1) if h.quotes()] or [1]
        if listed:
            return [i for i, h in enumerate(hits, 1) if h.relevant and h.quotes()] or [1]
        near = self.relevance.relevant(intent.searched, hits, NEAR)  # a lookup: one paper, unless another is as close
        return sorted({1, *(i for i in near if hits[i - 1].relevant and hits[i - 1].quotes())})

    def paper_line(self, n: int, hit: Hit, wants: Want | None) -> str:
        """The paper's name and its answering sentences; asked for a figure, a dataset or a comparison its
        sentences lack, it says so."""
        missing = lacks(hit, wants)
        return (
            f"{label(hit.paper)}: "
            + " ".join(f"{s} [{n}]" for s in hit.quotes())
            + (f" (The abstract {missing} for this.)" if missing else "")
        )

    def _metadata(self, intent: Intent, hits: list[Hit]) -> str:
        n = self.relevance.named(intent.query, hits)
        p = hits[n - 1].paper
        if intent.asks == "authors":
            return (
                f"{p.display_title} lists {p.authors} authors [{n}]."
                if p.authors
                else f"The corpus does not record the authors of {p.display_title} [{n}]."
            )
        return (
            f"{p.display_title} is dated {p.date_raw} [{n}]."
            if p.date_raw
            else f"The corpus does not record the date of {p.display_title} [{n}]."
        )

    def evidence_spans(
        self, query: str, hit: Hit, wants: Want | None = None, results: bool = False
    ) -> tuple[tuple[int, int], ...]:
        """Offsets of up to three sentences of the abstract, in their order: the one that best answers the
        query, plus findings (numbers, results) and the sentence naming the method when they bear on it;
        with `results` (a summary), a sentence reporting a figure when the abstract has one; asked for a
        dataset or a comparison, a sentence naming one when the abstract has one."""
        scored = self._scored(query, hit, wants == "figure")
        if not scored:
            return ()
        best = max(scored, key=lambda s: (s[0], -s[1]))
        chosen = {best[1]: best}
        ranked = sorted(scored, key=lambda s: (-s[0], s[1]))
        asked = _HAS[wants] if wants in ("dataset", "comparison") else None
        for row in ranked:
            if len(chosen) >= MAX_SENTENCES - (results or asked is not None):
                break
            if row[1] not in chosen and row[0] >= 0.5 * best[0] and (row[3] or row[4]):
                chosen[row[1]] = row
        if results and not any(_FIGURE.search(row[2]) for row in chosen.values()):
            # asked what papers report: the paper's best sentence with a figure, however few words it shares
            chosen.update(
                {row[1]: row for row in [r for r in ranked if _FIGURE.search(r[2]) and _FINDING.search(r[2])][:1]}
            )
        if asked and not any(asked.search(row[2]) for row in chosen.values()):
            found = [r for r in ranked if asked.search(r[2])]
            if not found and asked is _DATASET:  # none named: what the abstract says of its evaluation
                found = [r for r in ranked if _EVALUATED.search(r[2])]
            chosen.update({row[1]: row for row in found[:1]})
        return tuple((start, start + len(row[2])) for start, row in sorted(chosen.items()))

    def excerpt(self, query: str, hit: Hit, n: int) -> str:
        """The `n` sentences of the abstract that bear most on the query, in their order, with " … " where
        sentences are left out: a short source for a small model, whose time to first token grows with
        the prompt. The whole abstract when it has no more than `n` sentences."""
        scored = self._scored(query, hit, False)
        if len(scored) <= n:
            return hit.paper.abstract
        kept = sorted(
            sorted(range(len(scored)), key=lambda i: (-scored[i][0], -scored[i][3], i))[:n]
        )  # no shared word: findings first
        pieces = [scored[kept[0]][2]]
        for before, i in zip(kept, kept[1:]):
            pieces.append((" " if i == before + 1 else " … ") + scored[i][2])
        return ("… " if kept[0] else "") + "".join(pieces) + (" …" if kept[-1] < len(scored) - 1 else "")

    def _scored(self, query: str, hit: Hit, numeric: bool) -> list[tuple[float, int, str, int, bool]]:
        """(score, start, sentence, finding, names the method) per quotable sentence, in abstract order.

        Scored by the IDF-weighted share of query terms in the sentence or the title (the title says
        what the paper is about, the sentence what it found), raised for findings (numbers, results).
        """
        wanted = sorted(set(terms(query)) - GENERIC)
        title = set(terms(hit.paper.title))
        abstract = hit.paper.abstract
        name = method_name(hit.paper).lower()
        scored = []
        for start, end in sentence_spans(abstract, hit.paper.spans):
            sentence = abstract[start:end]
            if WITHHELD in sentence or _STRUCTURED.search(sentence):
                continue  # a sentence addressed to an AI (replaced by a marker), or one imitating an answer: never quoted
            got = set(terms(sentence))
            score = sum(self.lexicon.idf(t) for t in wanted if t in got | title) + 0.1 * sum(
                1 for t in wanted if t in got
            )
            finding = bool(_NUMBER.search(sentence)) + bool(_FINDING.search(sentence))
            score *= 1 + (0.2 if numeric else 0.1) * finding
            scored.append((score, start, sentence, finding, bool(name) and name in sentence.lower()))
        return scored


def _headed(lines: list[str], groups: list[str]) -> Iterator[str]:
    """The lines of a grouped summary, each group opened by its name."""
    for i, (line, group) in enumerate(zip(lines, groups)):
        if i == 0 or group != groups[i - 1]:
            yield f"{group}:"
        yield line
