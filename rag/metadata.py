"""Questions about the corpus's metadata: counts, earliest/latest, most authors, a paper's date.

A text search sees only its top hits, so "how many papers are from 2023?" or "which paper has the
most authors?" cannot be answered from retrieval. `parse` recognises such a question and `answer`
computes it over every paper it is given, citing the papers it names. Papers whose needed field is
unknown (most of the default corpus has no year) are never dropped silently: the answer says how
many there are. Pure code: no I/O, no models; the same input gives the same output.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from statistics import mean, median
from typing import Any

from rag.text import NAME
from rag.types import Paper

EXAMPLES = 10  # papers a count answer cites
LIST_MAX = 30  # papers a list or superlative answer cites
NAME_UNKNOWN = 5  # papers with an unknown field are named when there are at most this many

_MONTHS = "january february march april may june july august september october november december".split()
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_VERB_MONTHS = ("may", "march", "mar")  # lower case, with no year after them, these are verbs
# A year, not a quantity: "2048 tokens" and "12,288 GPUs" are not years.
_YEAR = r"(?<![\d,.])(?:19[5-9]\d|20[0-3]\d)(?!\d|[,.]\d|\s*(?:tokens?|parameters?|GPUs?|TPUs?|steps?|samples?|words?|images?|chips?)\b)"
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "single": 1, "a single": 1,
}
_NUM_WORDS = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty"
_NUM = rf"(?:\d{{1,3}}|{_NUM_WORDS})"
_ORDINAL = {"first": 1, "second": 2, "third": 3, "fourth": 4, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4}
_PAPER = r"(?:papers?|works?|stud(?:y|ies)|articles?|publications?|abstracts?)"


# ---------------------------------------------------------------- the parsed question


@dataclass(frozen=True)
class Period:
    """A span of time: inclusive (year, month) bounds, or, when no year is named, months of any year."""

    start: tuple[int, int] | None = None
    end: tuple[int, int] | None = None
    months: tuple[int, int] | None = None  # month-of-year range (Nov..Feb wraps) when no year is named

    @classmethod
    def years(cls, year_from: int | None, year_to: int | None) -> Period:
        """The period of a year filter, so a `rag.types.Filters` year range can join a MetaQuery."""
        return cls(None if year_from is None else (year_from, 1), None if year_to is None else (year_to, 12))

    @property
    def whole_years(self) -> bool:
        """True when a plain year filter means the same (no month named)."""
        return self.months is None and (self.start or (0, 1))[1] == 1 and (self.end or (0, 12))[1] == 12

    def label(self) -> str:
        """Words for the answer: "from 2023", "from March to June 2024", "from July (any year)"."""
        if self.months:
            a, b = self.months
            return f"from {_month_name(a)}" + (f" to {_month_name(b)}" if a != b else "") + " (any year)"
        if self.start and self.end:
            (y1, m1), (y2, m2) = self.start, self.end
            if y1 == y2 and (m1, m2) != (1, 12):
                return f"from {_month_name(m1)}" + (f" to {_month_name(m2)}" if m1 != m2 else "") + f" {y1}"
            if y1 == y2:
                return f"from {y1}"
            return f"from {_bound(self.start, first=True)} to {_bound(self.end, first=False)}"
        if self.end:
            return f"from {_bound(self.end, first=False)} or earlier"
        assert self.start is not None
        return f"from {_bound(self.start, first=True)} or later"


@dataclass(frozen=True)
class AuthorRange:
    """An author-count condition with inclusive bounds: "single author" is 1..1, "more than 10" 11..None."""

    low: int | None = None
    high: int | None = None

    def label(self) -> str:
        if self.low == self.high:
            return f"with exactly {_plural(self.low or 0, 'author')}"
        if self.high is None:
            return f"with {self.low} or more authors"
        if self.low is None:
            return f"with at most {_plural(self.high, 'author')}"
        return f"with {self.low} to {self.high} authors"


ASKS = ("count", "list", "most_authors", "fewest_authors", "earliest", "latest", "paper", "per_year", "average_authors", "unrecorded")


@dataclass(frozen=True)
class MetaQuery:
    """What a metadata question asks (`ask`, one of ASKS) and the conditions a paper must meet."""

    ask: str
    period: Period | None = None
    authors: AuthorRange | None = None
    organisation: str = ""
    missing: str = ""  # "year", "date", "authors" or "organisation": papers whose field is unknown
    recorded: str = ""  # the same fields: papers whose field is known ("papers that name their organisation")
    fields: tuple[str, ...] = ()  # ask="paper": "authors", "date" and/or "organisation" of the named paper
    n: int = 1  # superlatives: how many papers ("the 3 latest papers"); ties with the last are kept
    unrecorded: str = ""  # asked for but not in the corpus ("citation counts", "author names")
    topic: str = ""  # the question's remaining topic words, "" when there are none

    def has_conditions(self) -> bool:
        return bool(self.period or self.authors or self.organisation or self.missing or self.recorded)


Value = int | float | str | dict[str, int | str] | None


@dataclass
class MetaAnswer:
    """A computed answer: `text` cites `papers` as [1]..[n]; `unknown` holds papers whose needed field is unknown."""

    text: str
    papers: list[Paper] = field(default_factory=list)
    value: Value = None  # the count, author count, date, average or {year: count}
    unknown: list[Paper] = field(default_factory=list)
    not_recorded: bool = False  # the answer rests on metadata the corpus lacks, so no citation can back it


# ---------------------------------------------------------------- parse


def parse(question: str) -> MetaQuery | None:
    """The metadata question asked, or None for a content question (also "papers from 2019 about X",
    a topic search with a year filter, which retrieval handles)."""
    text = " ".join(question.split())
    for reader in (_unrecorded, _per_year, _average, _superlative, _named_paper):
        if (query := reader(text)) is not None:
            return query
    return _count_or_list(text)


class _Rest:
    """The question with recognised phrases blanked out; what is left is the topic."""

    def __init__(self, text: str) -> None:
        self.text = _IN_CORPUS.sub(lambda m: " " * len(m.group(0)), text)

    def take(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        if m := pattern.search(self.text):
            self.cut(m)
        return m

    def cut(self, m: re.Match[str], group: int | str = 0) -> None:
        start, end = m.span(group)
        self.text = self.text[:start] + " " * (end - start) + self.text[end:]

    def topic(self) -> str:
        """The words left, without the question's frame words at either end ("which papers ... are")."""
        words = self.text.replace(",", " , ").split()
        while words and _frame(words[0]):
            words.pop(0)
        while words and _frame(words[-1]):
            words.pop()
        return " ".join(words).replace(" , ", ", ").strip("?!.;:,'\" ")


_IN_CORPUS = re.compile(
    r"\b(?:in|of|from|within) (?:the|this|our|your) (?:corpus|collection|data ?set|index)\b"
    r"|\b(?:does|do|did) (?:the|this) (?:corpus|collection) (?:have|hold|contain|include)\b",
    re.I,
)
_FRAME = frozenset(
    "a an the this that these those which what who whom whose how many much number count of in on at about "
    "regarding concerning around among amongst for from with by to and or any all some there here is are was were "
    "be been being do does did have has had paper papers work works study studies article articles publication "
    "publications entry entries abstract abstracts document documents record records one ones list show give tell me "
    "name find published publish released release written wrote write authored "
    "appeared appear dated came come out it its they them their please total overall altogether exist exists so far "
    "listed lists behind introduced proposed presented posted submitted contain contains hold holds include includes "
    "can could would will we our us you your i respectively top what's whats when".split()
)


def _frame(word: str) -> bool:
    bare = word.lower().strip("?!.;:,'\"")
    return not bare or bare in _FRAME


# --- things the corpus does not record


_UNRECORDED = [
    ("citation counts", re.compile(
        r"\b(?:most|fewest|least|highest|lowest|how many) (?:citations|cited)\b|\bmost[- ]cited\b|\bcitation counts?\b"
        r"|\bhow (?:often|many times) (?:was|is|has) .{1,80}? (?:been )?cited\b", re.I)),
    ("venues", re.compile(
        r"\b(?:which|what) (?:venue|conference|journal)s? (?:was|were|is|did)\b.*\b(?:published|appear|accepted|presented)\b"
        r"|\b(?:published|appeared|accepted|presented) (?:in|at) (?:which|what) (?:venue|conference|journal)", re.I)),
]


def _unrecorded(text: str) -> MetaQuery | None:
    return next((MetaQuery(ask="unrecorded", unrecorded=what) for what, p in _UNRECORDED if p.search(text)), None)


# --- per-year breakdown, average author count


_PER_YEAR = re.compile(
    rf"\b(?:per|each|every|by) year\b(?=.*\b{_PAPER}\b)|\b{_PAPER}\b.*\b(?:per|each|every|by) year\b"
    r"|\b(?:distribution|breakdown|histogram|spread) (?:of )?(?:the )?(?:papers? )?(?:by |per |over |across )?(?:publication )?years?\b",
    re.I,
)
_AVERAGE = re.compile(
    r"\b(?:average|mean|median|typical) (?:number of |count of )?(?:co-?)?authors?(?: count)?(?: per paper)?\b"
    r"|\bhow many (?:co-?)?authors (?:does|do) (?:a|an|the) (?:average|typical|median) paper(?: have)?\b"
    r"|\bhow many (?:co-?)?authors\b(?=.*\bon average\b)|\bauthors per paper\b",
    re.I,
)


def _per_year(text: str) -> MetaQuery | None:
    return MetaQuery(ask="per_year") if _PER_YEAR.search(text) else None


def _average(text: str) -> MetaQuery | None:
    rest = _Rest(text)
    if not rest.take(_AVERAGE):
        return None
    rest.take(re.compile(r"\bon average\b", re.I))
    return _conditions(rest, MetaQuery(ask="average_authors"))


# --- superlatives


_MOST_AUTHORS = re.compile(
    r"\b(?P<w>most|fewest|least|largest number of|highest number of|greatest number of|biggest number of"
    r"|maximum number of|smallest number of|lowest number of|minimum number of) (?:co-?)?authors?\b"
    r"|\b(?P<w2>largest|biggest|longest|smallest|shortest) (?:author (?:list|count)|list of authors|team|number of authors)\b"
    rf"|\b{_PAPER} (?:ranked |sorted |ordered )?by (?:the )?(?:number of |count of )?authors\b",
    re.I,
)
_DATE_WORDS = r"earliest|oldest|latest|newest|most recent(?:ly published)?|least recent"
_SUPER_DATE = [
    re.compile(r"\b(?P<w>earliest|oldest|latest|newest|most recent)(?: full| known)? (?:publication |release )?date\b", re.I),
    re.compile(rf"\b(?P<w>{_DATE_WORDS})(?=\s+(?:[\w-]+\s+){{0,4}}?(?:{_PAPER}|ones?)\b)", re.I),
    re.compile(rf"\b(?:is|was|are|were) the (?P<w>{_DATE_WORDS})\b(?= *[?.!]* *$)", re.I),  # "which paper is the oldest?"
    re.compile(r"\b(?:published|dated|released|came out|appeared) (?P<w>first|earliest|last|latest|most recently)\b", re.I),
]
_TOP_N = re.compile(
    rf"\b(?:top|the) (?P<n>{_NUM}) (?:[\w-]+ ){{0,2}}?{_PAPER}\b|\b(?:{_DATE_WORDS}) (?P<n2>{_NUM}) {_PAPER}\b",
    re.I,
)


def _superlative(text: str) -> MetaQuery | None:
    rest = _Rest(text)
    n = _top_n(rest)
    if m := rest.take(_MOST_AUTHORS):
        word = (m.group("w") or m.group("w2") or "most").lower()
        fewest = word.startswith(("fewest", "least", "smallest", "lowest", "minimum", "shortest"))
        query = MetaQuery(ask="fewest_authors" if fewest else "most_authors")
    elif m := next(filter(None, (rest.take(p) for p in _SUPER_DATE)), None):
        latest = m.group("w").lower().startswith(("latest", "newest", "most recent", "last"))
        query = MetaQuery(ask="latest" if latest else "earliest")
    else:
        return None
    return _conditions(rest, replace(query, n=n))


def _top_n(rest: _Rest) -> int:
    """ "the 3 latest papers", "top five papers by authors": how many to name (1 when unsaid)."""
    if not (m := _TOP_N.search(rest.text)):
        return 1
    group = "n" if m.group("n") else "n2"
    rest.cut(m, group)
    return _number(m.group(group))


def _number(word: str) -> int:
    word = word.lower()
    return int(word) if word.isdigit() else _NUMBER_WORDS[word]


# --- a named paper's date or author count


_PAPER_AUTHORS = re.compile(
    r"\bhow many (?:co-?)?authors\b|\b(?:the )?(?:number|count) of (?:co-?)?authors\b|\bauthor count\b"
    r"|\bhow many (?:people|researchers|writers|scientists) (?:co-?wrote|co-?authored|wrote|authored|worked on|are behind|contributed to)\b",
    re.I,
)
_PAPER_ORGANISATION = re.compile(
    r"\b(?:which|what) (?:company|organi[sz]ation|lab|institution|institute|university|affiliation)"
    rf" (?:published|released|wrote|authored|produced|is behind|was behind)(?= (?:the |this |that )?{_PAPER}\b)",
    re.I,
)
_WHO_WROTE = re.compile(r"\bwho (?:wrote|authored|are the authors of|were the authors of|is the author of)\b|\bnames? of the authors\b", re.I)
_PUBLISHED = r"(?:published|released|written|posted|submitted|dated|introduced|proposed|presented|come out|came out|appear|appeared)"
_PAPER_DATE = [
    re.compile(rf"\b(?:in )?(?:what|which) (?:year|date|month)(?: and (?:month|year))? (?:was|were|is|did)\b(?=.*\b{_PUBLISHED}\b)", re.I),
    re.compile(rf"\bwhen (?:was|were|did|is)\b(?=.*\b{_PUBLISHED}\b)", re.I),
    re.compile(r"\b(?:the )?(?:publication|release|submission) (?:date|year|month)\b|\bhow old is\b", re.I),
]
_PUBLISHED_WORD = re.compile(rf"\b{_PUBLISHED}\b", re.I)
_PRONOUN_TAIL = re.compile(r"\b(?:and|,) (?:does it have|do they have|has it|wrote it|are on it)\b", re.I)


def _named_paper(text: str) -> MetaQuery | None:
    if _MISSING.search(text):
        return None  # "how many papers have an unknown number of authors" is a count
    rest = _Rest(text)
    fields, unrecorded = [], ""
    if any(rest.take(p) for p in _PAPER_DATE):
        fields.append("date")
        rest.take(_PUBLISHED_WORD)
    if rest.take(_PAPER_AUTHORS):
        fields.append("authors")
    elif rest.take(_WHO_WROTE):
        fields.append("authors")
        unrecorded = "author names"
    if rest.take(_PAPER_ORGANISATION):
        fields.append("organisation")
    if not fields:
        return None
    if fields == ["authors"] and not unrecorded and re.search(r"\bpapers\b", text, re.I):
        return _conditions(rest, MetaQuery(ask="average_authors"))  # "how many authors do papers from 2023 have"
    rest.take(_PRONOUN_TAIL)
    topic = rest.topic()
    return MetaQuery(ask="paper", fields=tuple(sorted(fields)), unrecorded=unrecorded, topic=topic) if topic else None


# --- counts and lists, with their conditions


_BETWEEN = r"(?:(?!(?:authors?|do|does|did|the|a|an|are|is|were|was|have|has)\b)[\w-]+ ){0,2}"
_COUNT = re.compile(
    rf"\bhow many\b(?= (?:of (?:the|these|those) )?{_BETWEEN}{_PAPER}\b)"
    rf"|\b(?:the )?(?:total )?(?:number|count) of\b(?= {_BETWEEN}{_PAPER}\b)|\bcount (?:the |all )?(?={_PAPER}\b)"
    r"|\bhow many\b(?= (?:were|are|was|is) (?:there|published|from|dated|released)\b)"
    r"|\bhow (?:many|large|big) is the corpus\b|\bhow many does the corpus (?:have|hold|contain)\b",
    re.I,
)
_LIST = re.compile(rf"\b(?:which|what|list|name|show|find|give|are there|any)\b|\b{_PAPER}\b", re.I)


def _count_or_list(text: str) -> MetaQuery | None:
    rest = _Rest(text)
    counting = rest.take(_COUNT)
    query = _conditions(rest, MetaQuery(ask="count" if counting else "list"))
    if counting:
        return query
    if not query.has_conditions() or not _LIST.search(text):
        return None
    if query.topic and query.period and query.period.whole_years and not (query.authors or query.organisation or query.missing or query.recorded):
        return None  # "papers from 2019 about X": a topic search with a year filter
    return query


def _conditions(rest: _Rest, query: MetaQuery) -> MetaQuery:
    """Take the field, author, period and organisation phrases out of `rest`; the rest is topic."""
    missing = _missing(rest)
    recorded = _recorded(rest)
    authors = _author_range(rest)
    period = _period(rest)
    organisation = _organisation(rest)
    return replace(
        query, period=period, authors=authors, organisation=organisation, missing=missing, recorded=recorded, topic=rest.topic(),
    )


_MISSING = re.compile(
    r"\b(?:no|without(?: an?| any)?|missing(?: an?)?|unknown|lack(?:s|ing)?(?: an?| any)?|not having an?)"
    r" (?:known |recorded |given |listed |publication |release )*"
    r"(?P<f>years?|dates?|author counts?|numbers? of authors|authors?|organi[sz]ations?|affiliations?)\b"
    r"|\b(?P<g>year|date|author count|number of authors|organi[sz]ation|affiliation)s? (?:is |are |was |were )?"
    r"(?:unknown|missing|not (?:known|recorded|given|listed))\b"
    r"|\b(?P<u>undated)\b",
    re.I,
)


_RECORDED_FIELD = [
    re.compile(
        r"\b(?:with|having|that have|which have|has|have|giving|that give|which give) (?:an?|the|their|its)? ?(?:known|recorded|stated|given) "
        r"(?:publication )?(?P<f>year|date|author count|number of authors|organi[sz]ation|affiliation)s?\b",
        re.I,
    ),
    re.compile(
        r"\b(?:name|list|give|state|record|mention)s? (?:the|their|its|an) (?P<f>organi[sz]ation|affiliation|company|lab)s?"
        r"(?: behind (?:them|it))?",
        re.I,
    ),
]
_WHICH_ORGANISATIONS = re.compile(
    r"(?:,? and )?\b(?:which|what) (?:organi[sz]ations|companies|labs|affiliations) (?:are|were) (?:they|those|these)\b", re.I
)


def _missing(rest: _Rest) -> str:
    m = rest.take(_MISSING)
    return _field_name(m.group("f") or m.group("g") or m.group("u")) if m else ""


def _recorded(rest: _Rest) -> str:
    """ "papers that name their organisation (and which organisations are they)": the field must be known."""
    m = next(filter(None, (rest.take(p) for p in _RECORDED_FIELD)), None)
    if m is None:
        return ""
    rest.take(_WHICH_ORGANISATIONS)
    return _field_name(m.group("f"))


_FIELD_PREFIXES = (
    ("year", "year"), ("date", "date"), ("undated", "date"),
    ("organ", "organisation"), ("affil", "organisation"), ("compan", "organisation"), ("lab", "organisation"),
)


def _field_name(word: str) -> str:
    word = word.lower()
    for prefix, name in _FIELD_PREFIXES:
        if word.startswith(prefix):
            return name
    return "authors"


_AUTHOR_RANGE = re.compile(
    r"(?:(?:written|authored) by |by |with )?(?:(?P<op>more than|over|at least|fewer than|less than|under|at most|no more than|exactly|only) )?"
    rf"\b(?P<n>{_NUM}|a single|single)(?P<plus>\+| or more| or fewer| or less)?[- ](?:co-?)?author(?:s|ed)?\b"
    r"|(?:written |authored )?\bby (?:a single|one|only one) (?:author|person|researcher)\b"
    r"|\b(?:single|sole|solo|one)[- ]authored\b",
    re.I,
)


def _author_range(rest: _Rest) -> AuthorRange | None:
    if not (m := rest.take(_AUTHOR_RANGE)):
        return None
    if m.group("n") is None:
        return AuthorRange(1, 1)
    n = _number(m.group("n"))
    op, plus = (m.group("op") or "").lower(), (m.group("plus") or "").strip().lower()
    if op in ("more than", "over"):
        return AuthorRange(n + 1, None)
    if op == "at least" or plus in ("+", "or more"):
        return AuthorRange(n, None)
    if op in ("fewer than", "less than", "under"):
        return AuthorRange(None, n - 1)
    if op in ("at most", "no more than") or plus in ("or fewer", "or less"):
        return AuthorRange(None, n)
    return AuthorRange(n, n)


_ORG_NAME = r"(?P<org>[A-Z][\w&.-]*(?: [A-Z][\w&.-]*)*)"
_ORG = [
    re.compile(
        r"\b(?i:credited to|affiliated with|attributed to|published by|released by|authored at|coming from|come from|came from)"
        rf" (?i:the )?{_ORG_NAME}"
    ),
    re.compile(rf"\b(?i:{_PAPER}|research)(?: (?i:that|which))?(?: (?i:are|were|is|was|come|came))? (?i:from|by|at) (?i:the )?{_ORG_NAME}"),
    re.compile(rf"\b(?i:did|has|have|does) {_ORG_NAME} (?i:publish|release|write|author|contribute)"),
]
_NOT_ORG = re.compile(rf"^(?:{_MONTH}|Q[1-4]|H[12]|The|A|An|I)$", re.I)


def _organisation(rest: _Rest) -> str:
    for pattern in _ORG:
        m = pattern.search(rest.text)
        if m and not _NOT_ORG.match(m.group("org").split()[0]):
            rest.cut(m)
            return m.group("org").rstrip(".")
    return ""


# --- periods

_POINT = (
    r"(?:(?:Q(?P<q>[1-4])|(?:the )?(?P<qw>first|second|third|fourth|1st|2nd|3rd|4th) quarter(?: of)?"
    r"|H(?P<h>[12])|(?:the )?(?P<hw>first|second) half(?: of)?"
    rf"|(?P<m>{_MONTH})(?: \d{{1,2}}(?:st|nd|rd|th)?)?)(?:,? (?P<y>{_YEAR}))?|(?P<yy>{_YEAR}))"
)
_Point = tuple[int | None, int, int]  # (year or None, first month, last month)


def _named_point(prefix: str) -> str:
    """_POINT with prefixed group names, so that two points fit in one pattern."""
    return re.sub(r"\(\?P<(\w+)>", lambda m: f"(?P<{prefix}{m.group(1)}>", _POINT)


_A, _B = _named_point("a_"), _named_point("b_")
_ON = r"(?:published |released |dated |written |appeared )?"
_PERIODS: list[tuple[str, re.Pattern[str]]] = [
    ("range", re.compile(rf"\b{_ON}between {_A} and {_B}(?!\w)", re.I)),
    ("range", re.compile(rf"\b{_ON}from {_A} ?(?:to|until|till|through|-|–) ?{_B}(?!\w)", re.I)),
    ("range", re.compile(rf"(?<![\w-]){_A} ?(?:-|–|to|through) ?{_B}(?![\w-])", re.I)),
    ("before", re.compile(rf"\b{_ON}(?:before|prior to|earlier than|older than) {_A}(?!\w)", re.I)),
    ("until", re.compile(rf"\b{_ON}(?:until|up to|up until|through|no later than|in or before) {_A}(?!\w)", re.I)),
    ("after", re.compile(rf"\b{_ON}(?:after|later than|newer than) {_A}(?!\w)", re.I)),
    ("since", re.compile(rf"\b{_ON}(?:since|in or after|no earlier than|starting (?:in|from)) {_A}(?!\w)", re.I)),
    ("since", re.compile(rf"\b{_ON}from {_A} on(?:wards?)?(?=\s*(?:[,.;?!]|$))", re.I)),
    ("in", re.compile(rf"\b{_ON}(?:in|from|during|dated) {_A}(?!\w)", re.I)),
    ("in", re.compile(rf"(?<![\w-]){_A}(?= {_PAPER}\b)", re.I)),
]


def _period(rest: _Rest) -> Period | None:
    """The first time span the question names (ranges before single points)."""
    for kind, pattern in _PERIODS:
        for m in pattern.finditer(rest.text):
            if period := _make_period(kind, m):
                rest.cut(m)
                return period
    return None


def _make_period(kind: str, m: re.Match[str]) -> Period | None:
    a = _read_point(m, "a_")
    if a is None:
        return None
    year, first, last = a
    if kind == "range":
        b = _read_point(m, "b_")
        if b is None:
            return None
        if year is None and b[0] is None:
            return Period(months=(first, b[2]))
        y1, y2 = year or b[0], b[0] or year
        assert y1 is not None and y2 is not None
        return Period(start=(y1, first), end=(y2, b[2])) if (y1, first) <= (y2, b[2]) else None
    if year is None:  # months of any year
        spans = {"in": (first, last), "before": (1, first - 1), "until": (1, last), "after": (last + 1, 12), "since": (first, 12)}
        lo, hi = spans[kind]
        return Period(months=(lo, hi)) if 1 <= lo <= hi <= 12 else None
    bounds = {
        "in": ((year, first), (year, last)), "before": (None, _previous(year, first)), "until": (None, (year, last)),
        "after": (_next(year, last), None), "since": ((year, first), None),
    }
    start, end = bounds[kind]
    return Period(start=start, end=end)


def _read_point(m: re.Match[str], prefix: str) -> _Point | None:
    """(year, first month, last month) of one matched point; None when it names no real time."""
    g = {k[len(prefix):]: v for k, v in m.groupdict().items() if k.startswith(prefix) and v}
    year = int(g.get("y") or g.get("yy") or 0) or None
    if "q" in g or "h" in g or "qw" in g or "hw" in g:
        if ("qw" in g or "hw" in g) and year is None:
            return None  # "the first half" of what? only with a year
        if "q" in g or "qw" in g:
            q = int(g["q"]) if "q" in g else _ORDINAL[g["qw"].lower()]
            return (year, 3 * q - 2, 3 * q)
        h = int(g["h"]) if "h" in g else _ORDINAL[g["hw"].lower()]
        return (year, 6 * h - 5, 6 * h)
    if "m" in g:
        word = g["m"].rstrip(".")
        if year is None and word in _VERB_MONTHS:
            return None  # "papers that may ..."
        month = _month_number(word)
        return (year, month, month)
    return (year, 1, 12) if year else None


def _month_number(word: str) -> int:
    return next(i for i, name in enumerate(_MONTHS, 1) if name.startswith(word.lower()[:3]))


def _month_name(month: int) -> str:
    return _MONTHS[month - 1].title()


def _bound(ym: tuple[int, int], first: bool) -> str:
    """(2024, 3) -> "March 2024"; a bound on a year's first (or last) month prints as the year."""
    year, month = ym
    return str(year) if month == (1 if first else 12) else f"{_month_name(month)} {year}"


def _previous(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _next(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


# ---------------------------------------------------------------- paper fields


def month_of(paper: Paper) -> int | None:
    """The month of a paper's date, also when its year is unknown ("Jul 14" -> 7)."""
    if paper.date:
        return int(paper.date[5:7])
    raw = paper.date_raw.strip()
    if m := re.match(r"^\d{4}-(\d{2})", raw):
        return int(m.group(1)) if 1 <= int(m.group(1)) <= 12 else None
    if m := re.match(rf"^({_MONTH})(?![a-z])", raw, re.I):
        return _month_number(m.group(1))
    return None


def _day_of(paper: Paper) -> int:
    if paper.date:
        return int(paper.date[8:10])
    m = re.match(rf"^{_MONTH} (\d{{1,2}})\b", paper.date_raw, re.I)
    return int(m.group(1)) if m else 0


def _date_key(paper: Paper) -> tuple[int, int, int]:
    """(year, month, day), 0 for unknown parts: a paper known only by its year sorts first in it."""
    return (paper.year or 0, month_of(paper) or 0, _day_of(paper))


def _chronological(paper: Paper) -> tuple[bool, int, bool, int, int, str]:
    """By date; within a year (or among papers without one) those without a month last; ties by id."""
    month = month_of(paper)
    return (paper.year is None, paper.year or 0, month is None, month or 0, _day_of(paper), paper.paper_id)


def _when(paper: Paper) -> str:
    return paper.date_raw or (str(paper.year) if paper.year else "")


# A test says whether a paper meets one condition: True, False, or the name of the field that is unknown.
_Test = Callable[[Paper], "bool | str"]


def _period_test(period: Period) -> _Test:
    def test(p: Paper) -> bool | str:
        month = month_of(p)
        if period.months:
            if month is None:
                return "month" if p.date_raw else "date"
            a, b = period.months
            return a <= month <= b if a <= b else (month >= a or month <= b)
        lo, hi = period.start or (0, 1), period.end or (9999, 12)
        if p.year is None:
            within_a_year = lo[0] == hi[0]
            if within_a_year and month is not None and not lo[1] <= month <= hi[1]:
                return False  # "Aug 22" is from no year's March to June
            return "year"
        if month is not None:
            return lo <= (p.year, month) <= hi
        if lo <= (p.year, 1) and (p.year, 12) <= hi:
            return True
        return "month" if lo <= (p.year, 12) and (p.year, 1) <= hi else False

    return test


def _author_test(span: AuthorRange) -> _Test:
    def test(p: Paper) -> bool | str:
        if p.authors is None:
            return "authors"
        return (span.low is None or p.authors >= span.low) and (span.high is None or p.authors <= span.high)

    return test


def _organisation_test(name: str) -> _Test:
    """Word match either way: "Google" finds "Google DeepMind", "Google DeepMind" finds "DeepMind"."""
    wanted = name.lower().split()

    def test(p: Paper) -> bool | str:
        if not p.organisation:
            return "organisation"
        have = p.organisation.lower().split()
        return all(w in have for w in wanted) or all(h in wanted for h in have)

    return test


_KNOWN: dict[str, Callable[[Paper], bool]] = {
    "year": lambda p: p.year is not None,
    "date": lambda p: bool(p.date_raw),
    "authors": lambda p: p.authors is not None,
    "organisation": lambda p: bool(p.organisation),
}
_FIELD_WORDS = {"year": "year", "date": "date", "month": "month", "authors": "author count", "organisation": "organisation"}


def _tests(query: MetaQuery) -> list[_Test]:
    tests: list[_Test] = []
    if query.missing:
        known = _KNOWN[query.missing]
        tests.append(lambda p: not known(p))
    if query.recorded:
        tests.append(_KNOWN[query.recorded])
    if query.period:
        tests.append(_period_test(query.period))
    if query.authors:
        tests.append(_author_test(query.authors))
    if query.organisation:
        tests.append(_organisation_test(query.organisation))
    return tests


def _split(papers: Iterable[Paper], tests: list[_Test]) -> tuple[list[Paper], list[tuple[Paper, str]]]:
    """Papers meeting every test, and papers ruled out by none but unknown for one (with that field)."""
    matched, unknown = [], []
    for p in papers:
        results = [t(p) for t in tests]
        if False in results:
            continue
        gaps = [r for r in results if isinstance(r, str)]
        if gaps:
            unknown.append((p, gaps[0]))
        else:
            matched.append(p)
    return matched, unknown


# ---------------------------------------------------------------- answer


def answer(query: MetaQuery, papers: Sequence[Paper], topic_ids: Collection[str] | None = None) -> MetaAnswer:
    """Compute the answer over all `papers`, or over those in `topic_ids` when it is given (without
    `topic_ids` the query's topic is ignored: nobody searched for it).

    For ask="paper", `topic_ids` is the search for the named paper, best first: among the first
    three, the one containing the topic's names as written (MegaScale, PaLM) wins, else the first.
    """
    if query.ask == "unrecorded":
        return MetaAnswer(text=f"The corpus does not record {query.unrecorded}; {_RECORDED}", not_recorded=True)
    if query.ask == "paper":
        return _paper_answer(query, papers, topic_ids)
    pool = sorted(_on_topic(papers, topic_ids), key=_chronological)
    about = f' on "{query.topic}"' if query.topic and topic_ids is not None else ""
    if query.ask == "per_year":
        return _per_year_answer(pool, about)
    matched, unknown = _split(pool, _tests(query))
    if query.ask in ("count", "list"):
        return _count_answer(query, matched, unknown, len(pool), about)
    field_name = "authors" if query.ask.endswith("authors") else "year"
    unknown += [(p, field_name) for p in matched if not _KNOWN[field_name](p)]
    unknown.sort(key=lambda pair: _chronological(pair[0]))
    known = [p for p in matched if _KNOWN[field_name](p)]
    if query.ask == "average_authors":
        return _average_answer(query, known, unknown, about)
    return _top_answer(query, known, unknown, about)


_RECORDED = "it records each paper's title, abstract, date (when known), number of authors (when known) and, for a few papers, an organisation."


def _on_topic(papers: Iterable[Paper], topic_ids: Collection[str] | None) -> list[Paper]:
    if topic_ids is None:
        return list(papers)
    wanted = set(topic_ids)
    return [p for p in papers if p.paper_id in wanted]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _cite(papers: list[Paper], detail: Callable[[Paper], str]) -> str:
    return "; ".join(f"{_name(p)} ({detail(p)}) [{i}]" for i, p in enumerate(papers, 1))


def _name(p: Paper) -> str:
    """The title to cite by, without a closing full stop (untitled papers show their opening words)."""
    return p.display_title.rstrip(".")


def _dated(p: Paper) -> str:
    return _when(p) or "undated"


def _with_authors(p: Paper) -> str:
    return _plural(p.authors or 0, "author") if p.authors is not None else "author count unknown"


def _credited(p: Paper) -> str:
    return f"{p.organisation or 'no organisation'}, {_dated(p)}"


def _detail(query: MetaQuery) -> Callable[[Paper], str]:
    """What to show beside each listed paper: the field the question is about."""
    fields = {query.missing, query.recorded}
    if query.organisation or "organisation" in fields:
        return _credited
    if query.authors or "authors" in fields:
        return _with_authors
    return _dated


def _scope(query: MetaQuery, about: str) -> str:
    """ 'on "RLHF" from 2023 with 5 or more authors': the question's conditions in words."""
    parts = [about.strip()]
    if query.missing:
        parts.append(f"with no {_FIELD_WORDS[query.missing]}")
    if query.recorded:
        parts.append(f"with a recorded {_FIELD_WORDS[query.recorded]}")
    if query.period:
        parts.append(query.period.label())
    if query.organisation:
        parts.append(f"credited to {query.organisation}")
    if query.authors:
        parts.append(query.authors.label())
    return " ".join(p for p in parts if p)


def _unknown_text(unknown: list[tuple[Paper, str]], compared: bool = False) -> str:
    """ ' 2 more may match but have no year: A; B.' (titles only when there are few)."""
    if not unknown:
        return ""
    counts = Counter(f for _, f in unknown)
    fields = " or ".join(_FIELD_WORDS[f] for f in sorted(counts, key=lambda f: (-counts[f], f)))
    have = "has" if len(unknown) == 1 else "have"
    names = ": " + "; ".join(_name(p) for p, _ in unknown) if len(unknown) <= NAME_UNKNOWN else ""
    if compared:
        return f" {len(unknown)} more {have} no {fields} and could not be compared{names}."
    return f" {len(unknown)} more may match but {have} no {fields}{names}."


def _count_answer(query: MetaQuery, matched: list[Paper], unknown: list[tuple[Paper, str]], pool: int, about: str) -> MetaAnswer:
    limit = EXAMPLES if query.ask == "count" else LIST_MAX
    cited = matched[:limit]
    conditions = _scope(query, "")
    if conditions:
        head = f"{len(matched) or 'No'} {'paper' if len(matched) == 1 else 'papers'}{about} {conditions} (of the {pool} papers{about})"
    else:
        head = f"{len(matched)} papers{about}" if about else f"The corpus holds {len(matched)} papers"
    more = f"; and {len(matched) - limit} more" if len(matched) > limit else ""
    listing = f": {_cite(cited, _detail(query))}{more}" if cited else ""
    text = f"{head}{listing}." + _unknown_text(unknown)
    return MetaAnswer(
        text=text, papers=cited, value=len(matched), unknown=[p for p, _ in unknown], not_recorded=not matched and bool(unknown)
    )


_SUPERLATIVE = {"most_authors": "the most authors", "fewest_authors": "the fewest authors", "earliest": "earliest", "latest": "latest"}


def _top_answer(query: MetaQuery, known: list[Paper], unknown: list[tuple[Paper, str]], about: str) -> MetaAnswer:
    """The top `query.n` papers by author count or date, plus any tied with the last of them."""
    by_authors = query.ask.endswith("authors")
    scope = _scope(query, about)
    if not known:
        field_name = "author count" if by_authors else "year"
        text = f"No paper{' ' + scope if scope else ''} has a known {field_name}." + _unknown_text(unknown, compared=True)
        return MetaAnswer(text=text, unknown=[p for p, _ in unknown], not_recorded=True)
    sign = -1 if query.ask in ("most_authors", "latest") else 1

    def score(p: Paper) -> tuple[int, ...]:
        """Smaller is better: the ranking value, negated when the question wants the largest."""
        return tuple(sign * x for x in ((p.authors or 0,) if by_authors else _date_key(p)))

    ranked = sorted(known, key=lambda p: (score(p), _chronological(p)))
    cutoff = score(ranked[min(query.n, len(ranked)) - 1])
    top = [p for p in ranked if score(p) <= cutoff]
    cited, first = top[:LIST_MAX], top[0]
    word = _SUPERLATIVE[query.ask]
    among = f" among the papers {scope}" if scope else ""
    if by_authors:
        value: Value = first.authors
        if len(top) == 1:
            text = f"{_name(first)} has {word}{among}: {first.authors} [1]."
        elif query.n == 1:
            text = f"{len(top)} papers share {word}{among}, {first.authors} each: {_cite(cited, _with_authors)}."
        else:
            text = f"The papers with {word}{among}: {_cite(cited, _with_authors)}."
    else:
        value = _when(first)
        if len(top) == 1:
            text = f"The {word} paper{among} is {_name(first)}, dated {_when(first)} [1]."
        elif query.n == 1:
            text = f"{len(top)} papers share the {word} date{among}, {_when(first)}: {_cite(cited, _dated)}."
        else:
            text = f"The {word} papers{among}: {_cite(cited, _dated)}."
    text += _unknown_text(unknown, compared=True)
    return MetaAnswer(text=text, papers=cited, value=value, unknown=[p for p, _ in unknown])


def _per_year_answer(pool: list[Paper], about: str) -> MetaAnswer:
    counts = Counter(p.year for p in pool if p.year is not None)
    years = sorted(counts, reverse=True)
    unknown = [p for p in pool if p.year is None]
    text = f"Papers per year{about}: " + (", ".join(f"{y}: {counts[y]}" for y in years) or "none has a known year") + "."
    if unknown:
        text += f" {len(unknown)} more have no year."
    value: dict[str, int | str] = {str(y): counts[y] for y in years}
    return MetaAnswer(text=text, value=value, unknown=unknown, not_recorded=not counts and bool(unknown))


def _average_answer(query: MetaQuery, known: list[Paper], unknown: list[tuple[Paper, str]], about: str) -> MetaAnswer:
    scope = _scope(query, about)
    counts = [p.authors or 0 for p in known]
    if not counts:
        text = f"No paper{' ' + scope if scope else ''} has a known author count." + _unknown_text(unknown)
        return MetaAnswer(text=text, unknown=[p for p, _ in unknown], not_recorded=True)
    average = round(mean(counts), 1)
    text = (
        f"The {_plural(len(counts), 'paper')}{' ' + scope if scope else ''} with a known author count have {average} "
        f"authors on average (median {median(counts):g}, from {min(counts)} to {max(counts)})."
    )
    if unknown:
        text += f" {len(unknown)} more have no author count."
    return MetaAnswer(text=text, value=average, unknown=[p for p, _ in unknown])


# (field, what a gap is called, the value or None, how a value is said), in the order answers state them
_PAPER_FIELDS: tuple[tuple[str, str, Callable[[Paper], Any], Callable[[Any], str]], ...] = (
    ("date", "date", lambda p: p.date_raw or None, lambda v: f"is dated {v}"),
    ("organisation", "organisation", lambda p: p.organisation or None, lambda v: f"is credited to {v}"),
    ("authors", "number of authors", lambda p: p.authors, lambda v: f"lists {_plural(v, 'author')}"),
)


def _paper_answer(query: MetaQuery, papers: Sequence[Paper], topic_ids: Collection[str] | None) -> MetaAnswer:
    paper = _named(query.topic, papers, topic_ids)
    if paper is None:
        return MetaAnswer(text=f'No paper in the corpus matches "{query.topic}".')
    facts, gaps = [], []
    value: dict[str, int | str] = {}
    for name, gap, get, say in _PAPER_FIELDS:
        if name not in query.fields:
            continue
        if (found := get(paper)) is None:
            gaps.append(gap)
        else:
            facts.append(say(found))
            value[name] = found
    title = _name(paper)
    parts = [f"The corpus does not record {query.unrecorded}."] if query.unrecorded else []
    if facts:
        parts.append(f"{title} {' and '.join(facts)} [1].")
    if gaps:
        parts.append(f"The corpus does not record the {' or '.join(gaps)} of {title} [1].")
    single: Value = next(iter(value.values())) if len(value) == 1 else (value or None)
    return MetaAnswer(text=" ".join(parts), papers=[paper], value=single, not_recorded=bool(gaps or query.unrecorded))


def _named(topic: str, papers: Sequence[Paper], topic_ids: Collection[str] | None) -> Paper | None:
    """The named paper among the first three candidates (in `topic_ids` order; a set is sorted)."""
    if topic_ids is None:
        return None
    by_id = {p.paper_id: p for p in papers}
    ordered = list(topic_ids) if isinstance(topic_ids, Sequence) else sorted(topic_ids)
    candidates = [by_id[pid] for pid in ordered if pid in by_id][:3]
    if not candidates:
        return None
    names = NAME.findall(topic)
    found = [sum(bool(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", f"{p.title} {p.abstract}")) for n in names) for p in candidates]
    return candidates[found.index(max(found))]
