"""Read a question before retrieval: is it a "which papers" question, does it name years?"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from rag.errors import QuestionError
from rag.types import Filters

MAX_K = 100

_YEAR = r"(19[5-9]\d|20[0-3]\d)(?![\d,.]*\s*(?:tokens?|parameters?|GPUs?|steps?|samples?|words?|images?|dimensions?)\b)"
_RANGE = [
    (re.compile(rf"\bbetween {_YEAR} and {_YEAR}\b", re.I), lambda a, b: (int(a), int(b))),
    (re.compile(rf"\bfrom {_YEAR} (?:to|until|through) {_YEAR}\b", re.I), lambda a, b: (int(a), int(b))),
    (re.compile(rf"\b{_YEAR}\s*[-–]\s*{_YEAR}\b"), lambda a, b: (int(a), int(b))),
    (re.compile(rf"\b(?:before|prior to|earlier than) {_YEAR}\b", re.I), lambda a: (None, int(a) - 1)),
    (re.compile(rf"\b(?:after|later than) {_YEAR}\b", re.I), lambda a: (int(a) + 1, None)),
    (re.compile(rf"\b(?:since|from) {_YEAR} on(?:wards?)?(?=\s*(?:[,.;?!]|$))", re.I), lambda a: (int(a), None)),
    (re.compile(rf"\b(?:since) {_YEAR}\b", re.I), lambda a: (int(a), None)),
    (re.compile(rf"\b(?:published |released |written |appeared )?(?:in|from|during) {_YEAR}\b", re.I), lambda a: (int(a), int(a))),
    (re.compile(rf"\b{_YEAR}(?= papers?\b| work\b| studies\b)", re.I), lambda a: (int(a), int(a))),
]
_LIST = re.compile(
    r"\b(which|what|list|name|find|show)\b(?: all| the| any| other)*"
    r" (papers?|works?|studies|articles|publications|approaches|methods|techniques|ways)\b|\bpapers (?:that|which|about|on)\b"
    # "is there work on X", "what work exists on X", "how do I X": every paper that does X, not one lookup
    r"|\bis there (?:any )?(?:work|research|literature)\b|\bwhat (?:work|research) (?:exists|is there)\b"
    r"|^\W*how (?:do|can|could|should|would) (?:i|we|one|you)\b",
    re.I,
)
_SUMMARY = re.compile(
    r"\b(summari[sz]e|summary of|overview of|what (?:does|do) the (?:corpus|papers|abstracts) (?:say|report|tell)|"
    r"what is known about|compare|comparison of)\b",
    re.I,
)
_NUMERIC = re.compile(r"\b(how (much|many|fast|large|big|long)|what (speedup|accuracy|score|percentage|fraction|number))\b", re.I)


@dataclass(frozen=True)
class Intent:
    query: str  # what retrieval searches for: the question without its year phrase
    filters: Filters
    is_list: bool
    is_numeric: bool
    asks: str | None = None  # "authors" or "date" when the answer is a paper's metadata
    is_summary: bool = False  # "summarise / what does the corpus say about X": every relevant source


_ASKS = [
    ("authors", re.compile(r"\b(how many (authors|people|researchers)|number of authors|author count)\b", re.I)),
    ("date", re.compile(r"\b(what|which) (year|date|month)\b|\bwhen was\b", re.I)),
]


def analyse(question: str, filters: Filters = Filters()) -> Intent:
    """Turn a year named in the question into a filter (text search cannot match dates)."""
    query = question
    if filters.year_from is None and filters.year_to is None:
        for pattern, years in _RANGE:
            if m := pattern.search(question):
                year_from, year_to = years(*m.groups())
                filters = replace(filters, year_from=year_from, year_to=year_to)
                query = " ".join((question[: m.start()] + question[m.end():]).split())
                break
    asks = next((name for name, pattern in _ASKS if pattern.search(question)), None)
    return Intent(
        query=query, filters=filters, is_list=bool(_LIST.search(question)) and asks is None,
        is_numeric=bool(_NUMERIC.search(question)) and asks is None, asks=asks,
        is_summary=bool(_SUMMARY.search(question)) and asks is None,
    )


_FOLLOW_UP = re.compile(
    r"\b(it|its|they|them|their|these|those|the same|(?:this|that|the) (?:paper|method|work|model|approach|one))\b", re.I
)


# Words that point back at the previous answer's papers: several ("which of those") or one ("it", "the second one").
_BACK_MANY = re.compile(
    r"\b(?:those|these|them|they|the above|of the (?:above|listed|previous) (?:papers|ones)|which of (?:them|these|those))\b", re.I
)
_BACK_ONE = re.compile(
    r"\b(?:it|its|itself|(?:this|that|the same) (?:paper|method|work|model|approach|one)|"
    r"the (?:first|second|third|fourth|fifth|last|top) (?:one|paper|method)?)\b(?! (?:possible|true|known|likely|feasible)\b)",
    re.I,
)
_ORDINALS = {"first": 1, "top": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}
_ORDINAL = re.compile(r"\bthe (first|second|third|fourth|fifth|last|top)\b", re.I)
_YES_NO = re.compile(r"^\W*(?:does|do|did|is|are|was|were|can|could|has|have|will|would|should)\b", re.I)
BACK_WORDS = re.compile(_BACK_MANY.pattern + "|" + _BACK_ONE.pattern + r"|\b(?:of|among|from)\b(?= (?:them|those|these)\b)", re.I)


def refers_back(question: str) -> str | None:
    """"many" when the question points at the previous answer's papers, "one" at one of them, else None."""
    if _BACK_MANY.search(question):
        return "many"
    return "one" if _BACK_ONE.search(question) else None


def ordinal(question: str) -> int | None:
    """1 for "the first one", 2 for "the second", -1 for "the last"; None when none is named."""
    m = _ORDINAL.search(question)
    return _ORDINALS[m.group(1).lower()] if m else None


def is_yes_no(question: str) -> bool:
    return bool(_YES_NO.match(question))


def needs_history(question: str) -> bool:
    """A short question leaning on pronouns probably continues the conversation."""
    return bool(_FOLLOW_UP.search(question)) or len(question.split()) <= 4


def too_long(what: str, text: str, limit: int) -> str:
    return f"the {what} has {len(text):,} characters, more than the {limit:,} allowed (RAG_MAX_QUESTION_CHARS); shorten it"


def check_request(question: str, filters: Filters, k: int | None, max_chars: int) -> None:
    """Mistakes in a question or its options, named before any work is done."""
    if not question.strip():
        raise QuestionError("the question is empty; type a question about the papers")
    if not question.isprintable() and (bad := next((c for c in question if 0xD800 <= ord(c) <= 0xDFFF), None)):
        raise QuestionError(f"the question holds bytes that are not text (\\u{ord(bad):04x} at character {question.index(bad) + 1}); type it again as UTF-8")
    if len(question) > max_chars:
        raise QuestionError(too_long("question", question, max_chars))
    if filters.year_from is not None and filters.year_to is not None and filters.year_from > filters.year_to:
        raise QuestionError(f"the year range is reversed ({filters.year_from} to {filters.year_to}); swap --year-from and --year-to")
    if k is not None and not 1 <= k <= MAX_K:
        raise QuestionError(f"k must be between 1 and {MAX_K}, not {k}")
