"""Answers to metadata questions: counts, earliest/latest, most authors, a paper's date.

A text search sees only its top hits, so "how many papers are from 2023?" or "which paper has the
most authors?" cannot be answered from retrieval. `rag.question_meta` reads such a question into a
`MetaQuery`; `answer` computes it over every paper it is given, citing the papers it names. Papers
whose needed field is unknown (most of the default corpus has no year) are never dropped silently:
the answer says how many there are. Pure code: no I/O, no models; the same input gives the same output.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from statistics import mean, median
from typing import Any

from rag.question_dates import MONTH, Period, month_number
from rag.question_meta import AuthorRange, MetaQuery, plural
from rag.text import NAME
from rag.types import Paper

EXAMPLES = 10  # papers a count answer cites
LIST_MAX = 30  # papers a list or superlative answer cites
NAME_UNKNOWN = 5  # papers with an unknown field are named when there are at most this many


Value = int | float | str | dict[str, int | str] | None


@dataclass
class MetaAnswer:
    """A computed answer: `text` cites `papers` as [1]..[n]; `unknown` holds papers whose needed field is unknown."""

    text: str
    papers: list[Paper] = field(default_factory=list)
    value: Value = None  # the count, author count, date, average or {year: count}
    unknown: list[Paper] = field(default_factory=list)
    not_recorded: bool = False  # the answer rests on metadata the corpus lacks, so no citation can back it


# ---------------------------------------------------------------- paper fields


def month_of(paper: Paper) -> int | None:
    """The month of a paper's date, also when its year is unknown ("Jul 14" -> 7)."""
    if paper.date:
        return int(paper.date[5:7])
    raw = paper.date_raw.strip()
    if m := re.match(r"^\d{4}-(\d{2})", raw):
        return int(m.group(1)) if 1 <= int(m.group(1)) <= 12 else None
    if m := re.match(rf"^({MONTH})(?![a-z])", raw, re.I):
        return month_number(m.group(1))
    return None


def _day_of(paper: Paper) -> int:
    if paper.date:
        return int(paper.date[8:10])
    m = re.match(rf"^{MONTH} (\d{{1,2}})\b", paper.date_raw, re.I)
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
_FIELD_WORDS = {
    "year": "year",
    "date": "date",
    "month": "month",
    "authors": "author count",
    "organisation": "organisation",
}


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


def _cite(papers: list[Paper], detail: Callable[[Paper], str]) -> str:
    return "; ".join(f"{_name(p)} ({detail(p)}) [{i}]" for i, p in enumerate(papers, 1))


def _name(p: Paper) -> str:
    """The title to cite by, without a closing full stop (untitled papers show their opening words)."""
    return p.display_title.rstrip(".")


def _dated(p: Paper) -> str:
    return _when(p) or "undated"


def _with_authors(p: Paper) -> str:
    return plural(p.authors or 0, "author") if p.authors is not None else "author count unknown"


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
    """'on "RLHF" from 2023 with 5 or more authors': the question's conditions in words."""
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
    """' 2 more may match but have no year: A; B.' (titles only when there are few)."""
    if not unknown:
        return ""
    counts = Counter(f for _, f in unknown)
    fields = " or ".join(_FIELD_WORDS[f] for f in sorted(counts, key=lambda f: (-counts[f], f)))
    have = "has" if len(unknown) == 1 else "have"
    names = ": " + "; ".join(_name(p) for p, _ in unknown) if len(unknown) <= NAME_UNKNOWN else ""
    if compared:
        return f" {len(unknown)} more {have} no {fields} and could not be compared{names}."
    return f" {len(unknown)} more may match but {have} no {fields}{names}."


def _count_answer(
    query: MetaQuery, matched: list[Paper], unknown: list[tuple[Paper, str]], pool: int, about: str
) -> MetaAnswer:
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
        text=text,
        papers=cited,
        value=len(matched),
        unknown=[p for p, _ in unknown],
        not_recorded=not matched and bool(unknown),
    )


_SUPERLATIVE = {
    "most_authors": "the most authors",
    "fewest_authors": "the fewest authors",
    "earliest": "earliest",
    "latest": "latest",
}


def _top_answer(query: MetaQuery, known: list[Paper], unknown: list[tuple[Paper, str]], about: str) -> MetaAnswer:
    """The top `query.n` papers by author count or date, plus any tied with the last of them."""
    by_authors = query.ask.endswith("authors")
    scope = _scope(query, about)
    if not known:
        field_name = "author count" if by_authors else "year"
        text = f"No paper{' ' + scope if scope else ''} has a known {field_name}." + _unknown_text(
            unknown, compared=True
        )
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
    text = (
        f"Papers per year{about}: " + (", ".join(f"{y}: {counts[y]}" for y in years) or "none has a known year") + "."
    )
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
        f"The {plural(len(counts), 'paper')}{' ' + scope if scope else ''} with a known author count have {average} "
        f"authors on average (median {median(counts):g}, from {min(counts)} to {max(counts)})."
    )
    if unknown:
        text += f" {len(unknown)} more have no author count."
    return MetaAnswer(text=text, value=average, unknown=[p for p, _ in unknown])


# (field, what a gap is called, the value or None, how a value is said), in the order answers state them
_PAPER_FIELDS: tuple[tuple[str, str, Callable[[Paper], Any], Callable[[Any], str]], ...] = (
    ("date", "date", lambda p: p.date_raw or None, lambda v: f"is dated {v}"),
    ("organisation", "organisation", lambda p: p.organisation or None, lambda v: f"is credited to {v}"),
    ("authors", "number of authors", lambda p: p.authors, lambda v: f"lists {plural(v, 'author')}"),
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
    found = [
        sum(bool(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", f"{p.title} {p.abstract}")) for n in names)
        for p in candidates
    ]
    return candidates[found.index(max(found))]
