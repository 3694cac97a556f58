"""The question grammar: `read_question` turns a question into one `Intent` before any search is done.

What kind of answer it wants (a list of papers, a summary, a lookup, a how-to, metadata), the year span
it names as a filter (text search cannot match dates), the text retrieval searches for, whether it asks
for a number or for one paper, and whether it points back at the previous answer. Years and periods have
one grammar (`rag.question_dates`), read alike for the year filter and for metadata questions (`rag.question_meta`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from rag.errors import QuestionError
from rag.question_dates import find_period
from rag.question_meta import MetaQuery, parse
from rag.text import GENERIC, terms
from rag.types import Filters

MAX_K = 100
Kind = Literal["list", "summary", "lookup", "how-to", "metadata"]
Want = Literal["figure", "dataset", "comparison"]  # what a question asks each paper for, which an abstract may lack

_LIST = re.compile(
    r"\b(which|what|list|name|find|show)\b(?: all| the| any| other)*"
    r" (papers?|works?|studies|articles|publications|approaches|methods|techniques|ways)\b|\bpapers (?:that|which|about|on)\b"
    # "is there work on X", "what work exists on X": every paper that does X, not one lookup
    r"|\bis there (?:any )?(?:work|research|literature)\b|\bwhat (?:work|research) (?:exists|is there)\b",
    re.I,
)
_HOW_TO = re.compile(r"^\W*how (?:do|can|could|should|would) (?:i|we|one|you)\b", re.I)  # every method that does it
_SUMMARY = re.compile(
    r"\b(summari[sz]e|summary of|overview of|what (?:does|do) the (?:corpus|papers|abstracts) (?:say|report|tell)|"
    r"what is known about|compare|comparison of)\b",
    re.I,
)
_NUMERIC = re.compile(
    r"\b(how (much|many|fast|large|big|long)|what (speedup|accuracy|score|percentage|fraction|number))\b", re.I
)
# Asked for the data a method was evaluated on, or what it was compared with (after a number: "how much better than").
_WANTS: list[tuple[Want, re.Pattern[str]]] = [
    (
        "dataset",
        re.compile(
            r"\b(?:which|what) (?:\w+ )?(?:datasets?|benchmarks?|corpora|test sets?)\b"
            r"|\b(?:evaluat|test|benchmark|train)\w* (?:it |them )?on (?:which|what)\b",
            re.I,
        ),
    ),
    (
        "comparison",
        re.compile(
            r"\b(?:compared? (?:to|with|against)|versus|vs\.?|(?:which|what) baselines?|(?:better|worse) than"
            r"|outperform\w*|relative to)\b",
            re.I,
        ),
    ),
]
_ASKS = [
    ("authors", re.compile(r"\b(how many (authors|people|researchers)|number of authors|author count)\b", re.I)),
    ("date", re.compile(r"\b(what|which) (year|date|month)\b|\bwhen was\b", re.I)),
]
# "Which paper argues ...": a list question's words, but one paper is asked for.
_ONE = re.compile(
    r"\b(?:which|what) (?:one |single )?(?:paper|work|study|article|publication|method|approach)\b(?! or\b)", re.I
)
_YES_NO = re.compile(r"^\W*(?:does|do|did|is|are|was|were|can|could|has|have|will|would|should)\b", re.I)
_FOLLOW_UP = re.compile(
    r"\b(it|its|they|them|their|these|those|the same|(?:this|that|the) (?:paper|method|work|model|approach|one))\b",
    re.I,
)
# Words that point back at the previous answer's papers: several ("which of those") or one ("it", "the second one").
_BACK_MANY = re.compile(
    r"\b(?:those|these|them|they|the above|of the (?:above|listed|previous) (?:papers|ones)|which of (?:them|these|those))\b",
    re.I,
)
_BACK_ONE = re.compile(
    r"\b(?:it|its|itself|(?:this|that|the same) (?:paper|method|work|model|approach|one)|"
    r"the (?:first|second|third|fourth|fifth|last|top) (?:one|paper|method)?)\b(?! (?:possible|true|known|likely|feasible)\b)",
    re.I,
)
# "which of those have no known year?", "... with a known date?": a filter on whether the year is recorded.
_NO_YEAR = re.compile(r"\b(?:no|without|unknown|missing)\b(?: \w+){0,2} (?:year|date)s?\b|\bundated\b", re.I)
_KNOWN_YEAR = re.compile(r"\b(?:has|have|with|a)\b(?: a)? known (?:publication )?(?:year|date)s?\b", re.I)
_ORDINALS = {"first": 1, "top": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}
_ORDINAL = re.compile(r"\bthe (first|second|third|fourth|fifth|last|top)\b", re.I)
BACK_WORDS = re.compile(
    _BACK_MANY.pattern + "|" + _BACK_ONE.pattern + r"|\b(?:of|among|from)\b(?= (?:them|those|these)\b)", re.I
)


@dataclass(frozen=True)
class Intent:
    """What a question asks, read once: every later step reads this instead of the question's words."""

    text: str  # the question as asked
    query: str  # what retrieval searches for: the question without its year phrase
    filters: Filters
    kind: Kind = "lookup"
    wants: Want | None = None  # a figure, a dataset or a comparison, asked of each paper
    asks: str | None = None  # "authors" or "date" of a named paper the metadata grammar could not read
    meta: MetaQuery | None = None  # a question about the corpus's metadata, answered by rag.metadata
    back: str | None = None  # "many" when it points at the previous answer's papers, "one" at one of them
    ordinal: int | None = None  # 1 for "the first one", 2 for "the second", -1 for "the last"
    yes_no: bool = False
    one: bool = False  # "which paper ...": answered like a lookup, from the best paper
    continues: bool = False  # leans on the conversation: pronouns, or four words or fewer
    year_known: bool | None = None  # False: "no known year", True: "a known year", None: neither is asked
    field_terms: str = ""  # the field's own words for what a question not in them describes, named by an LLM

    @property
    def searched(self) -> str:
        """What retrieval and the judges read: the question, and the field's terms for it when an LLM named them
        (the question's own words alone decide what no paper mentions, and are what an LLM is asked)."""
        return f"{self.query} {self.field_terms}" if self.field_terms else self.query

    @property
    def is_numeric(self) -> bool:
        return self.wants == "figure"

    @property
    def is_list(self) -> bool:
        return self.kind in ("list", "how-to")

    @property
    def many(self) -> bool:
        """Papers to be listed: "which papers ...", not "which paper ..." (answered like a lookup)."""
        return self.is_list and not self.one

    @property
    def is_summary(self) -> bool:
        """ "Summarise / what does the corpus say about X": every relevant source, as a list has."""
        return self.kind == "summary"

    @property
    def concepts(self) -> list[str]:
        """What the question is about, one phrase a concept: its runs of words that name something, split at
        stop words and generic ones ("defend trained networks", "theft", "unauthorised reuse")."""
        runs: list[list[str]] = [[]]
        for word in re.findall(r"[\w'-]+", self.searched):
            if set(terms(word)) - GENERIC:
                runs[-1].append(word)
            elif runs[-1]:
                runs.append([])
        return [" ".join(run) for run in runs if run]

    @property
    def filter_only(self) -> bool:
        """All filter and no topic, such as "which papers are from 2019?": the filter is the answer."""
        return self.filters.active() and not set(terms(self.query)) - GENERIC


def read_question(question: str, filters: Filters = Filters()) -> Intent:
    """The question's intent; `filters` are the ones given beside it (an explicit year range wins over the text's)."""
    query, filters = _year_filter(question, filters)
    asks = next((name for name, pattern in _ASKS if pattern.search(question)), None)
    meta = parse(question)
    return Intent(
        text=question,
        query=query,
        filters=filters,
        kind=_kind(question, asks, meta),
        wants=_wants(question) if asks is None else None,
        asks=asks,
        meta=meta,
        back=_refers_back(question),
        ordinal=_ordinal(question),
        yes_no=bool(_YES_NO.match(query)),
        one=bool(_ONE.search(query)),
        continues=bool(_FOLLOW_UP.search(question)) or len(question.split()) <= 4,
        year_known=False if _NO_YEAR.search(question) else True if _KNOWN_YEAR.search(question) else None,
    )


def _wants(question: str) -> Want | None:
    if _NUMERIC.search(question):
        return "figure"
    return next((want for want, pattern in _WANTS if pattern.search(question)), None)


def _kind(question: str, asks: str | None, meta: MetaQuery | None) -> Kind:
    if asks or meta:
        return "metadata"
    if _LIST.search(question):
        return "list"
    if _HOW_TO.search(question):
        return "how-to"
    return "summary" if _SUMMARY.search(question) else "lookup"


def _year_filter(question: str, filters: Filters) -> tuple[str, Filters]:
    """A span of whole years the question names, as a year filter, and the question without it. A span
    with months ("after June 2024") is no year filter: a filter by year would let in the wrong months."""
    if filters.year_from is not None or filters.year_to is not None:
        return question, filters
    text = " ".join(question.split())
    found = find_period(text)
    if found is None or not found[0].whole_years:
        return question, filters
    period, m = found
    year_from, year_to = period.start[0] if period.start else None, period.end[0] if period.end else None
    return " ".join((text[: m.start()] + text[m.end() :]).split()), replace(
        filters, year_from=year_from, year_to=year_to
    )


def _refers_back(question: str) -> str | None:
    if _BACK_MANY.search(question):
        return "many"
    return "one" if _BACK_ONE.search(question) else None


def _ordinal(question: str) -> int | None:
    m = _ORDINAL.search(question)
    return _ORDINALS[m.group(1).lower()] if m else None


def too_long(what: str, text: str, limit: int) -> str:
    return (
        f"the {what} has {len(text):,} characters, more than the {limit:,} allowed (RAG_MAX_QUESTION_CHARS); shorten it"
    )


def check_request(question: str, filters: Filters, k: int | None, max_chars: int) -> None:
    """Mistakes in a question or its options, named before any work is done."""
    if not question.strip():
        raise QuestionError("the question is empty; type a question about the papers")
    if not question.isprintable() and (bad := next((c for c in question if 0xD800 <= ord(c) <= 0xDFFF), None)):
        raise QuestionError(
            f"the question holds bytes that are not text (\\u{ord(bad):04x} at character {question.index(bad) + 1}); type it again as UTF-8"
        )
    if len(question) > max_chars:
        raise QuestionError(too_long("question", question, max_chars))
    if filters.year_from is not None and filters.year_to is not None and filters.year_from > filters.year_to:
        raise QuestionError(
            f"the year range is reversed ({filters.year_from} to {filters.year_to}); swap --year-from and --year-to"
        )
    if k is not None and not 1 <= k <= MAX_K:
        raise QuestionError(f"k must be between 1 and {MAX_K}, not {k}")
