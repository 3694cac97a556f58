"""The metadata half of the question grammar: counts, lists by date or author count, superlatives, a
named paper's date or authors ("how many papers are from 2023?", "which paper has the most authors?").

`parse` reads such a question into a `MetaQuery`, or returns None for a content question (also "papers
from 2019 about X", a topic search with a year filter). `rag.metadata` computes the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from rag.question_dates import MONTH, PAPER, Period, find_period

_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "single": 1,
    "a single": 1,
}
_NUM_WORDS = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty"
_NUM = rf"(?:\d{{1,3}}|{_NUM_WORDS})"


@dataclass(frozen=True)
class AuthorRange:
    """An author-count condition with inclusive bounds: "single author" is 1..1, "more than 10" 11..None."""

    low: int | None = None
    high: int | None = None

    def label(self) -> str:
        if self.low == self.high:
            return f"with exactly {plural(self.low or 0, 'author')}"
        if self.high is None:
            return f"with {self.low} or more authors"
        if self.low is None:
            return f"with at most {plural(self.high, 'author')}"
        return f"with {self.low} to {self.high} authors"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


ASKS = (
    "count",
    "list",
    "most_authors",
    "fewest_authors",
    "earliest",
    "latest",
    "paper",
    "per_year",
    "average_authors",
    "unrecorded",
)


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
    (
        "citation counts",
        re.compile(
            r"\b(?:most|fewest|least|highest|lowest|how many) (?:citations|cited)\b|\bmost[- ]cited\b|\bcitation counts?\b"
            r"|\bhow (?:often|many times) (?:was|is|has) .{1,80}? (?:been )?cited\b",
            re.I,
        ),
    ),
    (
        "venues",
        re.compile(
            r"\b(?:which|what) (?:venue|conference|journal)s? (?:was|were|is|did)\b.*\b(?:published|appear|accepted|presented)\b"
            r"|\b(?:published|appeared|accepted|presented) (?:in|at) (?:which|what) (?:venue|conference|journal)",
            re.I,
        ),
    ),
]


def _unrecorded(text: str) -> MetaQuery | None:
    return next((MetaQuery(ask="unrecorded", unrecorded=what) for what, p in _UNRECORDED if p.search(text)), None)


# --- per-year breakdown, average author count


_PER_YEAR = re.compile(
    rf"\b(?:per|each|every|by) year\b(?=.*\b{PAPER}\b)|\b{PAPER}\b.*\b(?:per|each|every|by) year\b"
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
    rf"|\b{PAPER} (?:ranked |sorted |ordered )?by (?:the )?(?:number of |count of )?authors\b",
    re.I,
)
_DATE_WORDS = r"earliest|oldest|latest|newest|most recent(?:ly published)?|least recent"
_SUPER_DATE = [
    re.compile(
        r"\b(?P<w>earliest|oldest|latest|newest|most recent)(?: full| known)? (?:publication |release )?date\b", re.I
    ),
    re.compile(rf"\b(?P<w>{_DATE_WORDS})(?=\s+(?:[\w-]+\s+){{0,4}}?(?:{PAPER}|ones?)\b)", re.I),
    re.compile(
        rf"\b(?:is|was|are|were) the (?P<w>{_DATE_WORDS})\b(?= *[?.!]* *$)", re.I
    ),  # "which paper is the oldest?"
    re.compile(
        r"\b(?:published|dated|released|came out|appeared) (?P<w>first|earliest|last|latest|most recently)\b", re.I
    ),
]
_TOP_N = re.compile(
    rf"\b(?:top|the) (?P<n>{_NUM}) (?:[\w-]+ ){{0,2}}?{PAPER}\b|\b(?:{_DATE_WORDS}) (?P<n2>{_NUM}) {PAPER}\b",
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
    rf" (?:published|released|wrote|authored|produced|is behind|was behind)(?= (?:the |this |that )?{PAPER}\b)",
    re.I,
)
_WHO_WROTE = re.compile(
    r"\bwho (?:wrote|authored|are the authors of|were the authors of|is the author of)\b|\bnames? of the authors\b",
    re.I,
)
_PUBLISHED = r"(?:published|released|written|posted|submitted|dated|introduced|proposed|presented|come out|came out|appear|appeared)"
_PAPER_DATE = [
    re.compile(
        rf"\b(?:in )?(?:what|which) (?:year|date|month)(?: and (?:month|year))? (?:was|were|is|did)\b(?=.*\b{_PUBLISHED}\b)",
        re.I,
    ),
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
    rf"\bhow many\b(?= (?:of (?:the|these|those) )?{_BETWEEN}{PAPER}\b)"
    rf"|\b(?:the )?(?:total )?(?:number|count) of\b(?= {_BETWEEN}{PAPER}\b)|\bcount (?:the |all )?(?={PAPER}\b)"
    r"|\bhow many\b(?= (?:were|are|was|is) (?:there|published|from|dated|released)\b)"
    r"|\bhow (?:many|large|big) is the corpus\b|\bhow many does the corpus (?:have|hold|contain)\b",
    re.I,
)
_LIST = re.compile(rf"\b(?:which|what|list|name|show|find|give|are there|any)\b|\b{PAPER}\b", re.I)


def _count_or_list(text: str) -> MetaQuery | None:
    rest = _Rest(text)
    counting = rest.take(_COUNT)
    query = _conditions(rest, MetaQuery(ask="count" if counting else "list"))
    if counting:
        return query
    if not query.has_conditions() or not _LIST.search(text):
        return None
    if (
        query.topic
        and query.period
        and query.period.whole_years
        and not (query.authors or query.organisation or query.missing or query.recorded)
    ):
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
        query,
        period=period,
        authors=authors,
        organisation=organisation,
        missing=missing,
        recorded=recorded,
        topic=rest.topic(),
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
    r"(?:,? and )?\b(?:which|what) (?:organi[sz]ations|companies|labs|affiliations) (?:are|were) (?:they|those|these)\b",
    re.I,
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
    ("year", "year"),
    ("date", "date"),
    ("undated", "date"),
    ("organ", "organisation"),
    ("affil", "organisation"),
    ("compan", "organisation"),
    ("lab", "organisation"),
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
    re.compile(
        rf"\b(?i:{PAPER}|research)(?: (?i:that|which))?(?: (?i:are|were|is|was|come|came))? (?i:from|by|at) (?i:the )?{_ORG_NAME}"
    ),
    re.compile(rf"\b(?i:did|has|have|does) {_ORG_NAME} (?i:publish|release|write|author|contribute)"),
]
_NOT_ORG = re.compile(rf"^(?:{MONTH}|Q[1-4]|H[12]|The|A|An|I)$", re.I)


def _organisation(rest: _Rest) -> str:
    for pattern in _ORG:
        m = pattern.search(rest.text)
        if m and not _NOT_ORG.match(m.group("org").split()[0]):
            rest.cut(m)
            return m.group("org").rstrip(".")
    return ""


def _period(rest: _Rest) -> Period | None:
    if found := find_period(rest.text):
        rest.cut(found[1])
        return found[0]
    return None
