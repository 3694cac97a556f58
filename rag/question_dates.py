"""Dates named in a question: what counts as a year, and the time spans ("in 2023", "from March to June
2024", "before 2020", "in Q1 2024") read as a `Period`. One grammar for both readers of the question: the
year filter of a topic search and the period of a metadata question."""

from __future__ import annotations

import re
from dataclasses import dataclass

MONTHS = "january february march april may june july august september october november december".split()
MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_VERB_MONTHS = ("may", "march", "mar")  # lower case, with no year after them, these are verbs
# A year, not a quantity: "2048 tokens", "2000 TPUs" and "12,288 GPUs" are not years. A number is a quantity when
# a unit follows it; a year read wrongly would filter out every paper, a quantity read wrongly only widens the search.
_UNITS = r"tokens?|parameters?|GPUs?|TPUs?|chips?|steps?|samples?|words?|images?|dimensions?"
YEAR = rf"(?<![\d,.])(?:19[5-9]\d|20[0-3]\d)(?!\d|[,.]\d|\s*(?:{_UNITS})\b)"
PAPER = r"(?:papers?|works?|stud(?:y|ies)|articles?|publications?|abstracts?)"
ORDINAL = {"first": 1, "second": 2, "third": 3, "fourth": 4, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4}


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
            return f"from {month_name(a)}" + (f" to {month_name(b)}" if a != b else "") + " (any year)"
        if self.start and self.end:
            (y1, m1), (y2, m2) = self.start, self.end
            if y1 == y2 and (m1, m2) != (1, 12):
                return f"from {month_name(m1)}" + (f" to {month_name(m2)}" if m1 != m2 else "") + f" {y1}"
            if y1 == y2:
                return f"from {y1}"
            return f"from {_bound(self.start, first=True)} to {_bound(self.end, first=False)}"
        if self.end:
            return f"from {_bound(self.end, first=False)} or earlier"
        assert self.start is not None
        return f"from {_bound(self.start, first=True)} or later"


_POINT = (
    r"(?:(?:Q(?P<q>[1-4])|(?:the )?(?P<qw>first|second|third|fourth|1st|2nd|3rd|4th) quarter(?: of)?"
    r"|H(?P<h>[12])|(?:the )?(?P<hw>first|second) half(?: of)?"
    rf"|(?P<m>{MONTH})(?: \d{{1,2}}(?:st|nd|rd|th)?)?)(?:,? (?P<y>{YEAR}))?|(?P<yy>{YEAR}))"
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
    (
        "before",
        re.compile(rf"\b(?<!\bno ){_ON}(?:before|prior to|earlier than|older than) {_A}(?!\w)", re.I),
    ),  # not "no earlier than"
    ("until", re.compile(rf"\b{_ON}(?:until|up to|up until|through|no later than|in or before) {_A}(?!\w)", re.I)),
    ("after", re.compile(rf"\b{_ON}(?:after|later than|newer than) {_A}(?!\w)", re.I)),
    ("since", re.compile(rf"\b{_ON}(?:since|in or after|no earlier than|starting (?:in|from)) {_A}(?!\w)", re.I)),
    ("since", re.compile(rf"\b{_ON}from {_A} on(?:wards?)?(?=\s*(?:[,.;?!]|$))", re.I)),
    ("in", re.compile(rf"\b{_ON}(?:in|from|during|dated) {_A}(?!\w)", re.I)),
    ("in", re.compile(rf"(?<![\w-]){_A}(?= {PAPER}\b)", re.I)),
]


def find_period(text: str) -> tuple[Period, re.Match[str]] | None:
    """The first time span `text` names (ranges before single points), with the phrase that names it."""
    for kind, pattern in _PERIODS:
        for m in pattern.finditer(text):
            if period := _make_period(kind, m):
                return period, m
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
        spans = {
            "in": (first, last),
            "before": (1, first - 1),
            "until": (1, last),
            "after": (last + 1, 12),
            "since": (first, 12),
        }
        lo, hi = spans[kind]
        return Period(months=(lo, hi)) if 1 <= lo <= hi <= 12 else None
    bounds = {
        "in": ((year, first), (year, last)),
        "before": (None, _previous(year, first)),
        "until": (None, (year, last)),
        "after": (_next(year, last), None),
        "since": ((year, first), None),
    }
    start, end = bounds[kind]
    return Period(start=start, end=end)


def _read_point(m: re.Match[str], prefix: str) -> _Point | None:
    """(year, first month, last month) of one matched point; None when it names no real time."""
    g = {k[len(prefix) :]: v for k, v in m.groupdict().items() if k.startswith(prefix) and v}
    year = int(g.get("y") or g.get("yy") or 0) or None
    if "q" in g or "h" in g or "qw" in g or "hw" in g:
        if ("qw" in g or "hw" in g) and year is None:
            return None  # "the first half" of what? only with a year
        if "q" in g or "qw" in g:
            q = int(g["q"]) if "q" in g else ORDINAL[g["qw"].lower()]
            return (year, 3 * q - 2, 3 * q)
        h = int(g["h"]) if "h" in g else ORDINAL[g["hw"].lower()]
        return (year, 6 * h - 5, 6 * h)
    if "m" in g:
        word = g["m"].rstrip(".")
        if year is None and word in _VERB_MONTHS:
            return None  # "papers that may ..."
        month = month_number(word)
        return (year, month, month)
    return (year, 1, 12) if year else None


def month_number(word: str) -> int:
    return next(i for i, name in enumerate(MONTHS, 1) if name.startswith(word.lower()[:3]))


def month_name(month: int) -> str:
    return MONTHS[month - 1].title()


def _bound(ym: tuple[int, int], first: bool) -> str:
    """(2024, 3) -> "March 2024"; a bound on a year's first (or last) month prints as the year."""
    year, month = ym
    return str(year) if month == (1 if first else 12) else f"{month_name(month)} {year}"


def _previous(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _next(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)
