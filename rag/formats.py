"""Bibliography and metadata formats: BibTeX, RIS, PubMed/MEDLINE, CSL-JSON, arXiv, OpenAlex, Semantic Scholar.

Each reader turns its records into `Entry`s, which `rag.corpus` makes into papers the way it does for
every other file (same cleaning, ids, merging and problem reports). BibTeX and RIS are read by
bibtexparser and rispy, which know those formats' corners; MEDLINE and the JSON layouts are simple
enough to read here. Nothing raises for a bad file or record: it becomes a `Problem`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date

import bibtexparser
import rispy
from bibtexparser.middlewares import LatexDecodingMiddleware, SeparateCoAuthors
from bibtexparser.model import DuplicateBlockKeyBlock, ParsingFailedBlock

from rag.types import Problem

_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()

# bibtexparser logs each malformed block; those blocks are reported as Problems instead.
logging.getLogger("bibtexparser").setLevel(logging.CRITICAL)


@dataclass
class Entry:
    """One record of a bibliography or metadata file, before `rag.corpus` makes it a Paper."""

    label: str  # how a Problem names it: "entry 'smith2020'", "record 3"
    title: str = ""
    abstract: str = ""
    line: int | None = None
    date: str = ""  # ISO (2023-05-01), or a bare year
    authors: int | None = None
    doi: str = ""  # as written: `rag.corpus` validates the identifiers and reports bad ones
    arxiv_id: str = ""
    pmid: str = ""
    url: str = ""
    venue: str = ""
    categories: list[str] = field(default_factory=list)


def read(name: str, suffix: str, lines: list[str]) -> tuple[list[Entry], list[Problem]]:
    """The entries of a .bib, .ris or .nbib file."""
    if suffix == ".bib":
        return read_bib(name, "\n".join(lines))
    if suffix == ".ris":
        return read_ris(name, lines)
    return read_nbib(name, lines)


def _ymd(year: object, month: object = None, day: object = None) -> str:
    """ISO date from parts of any type (a month may be a name); the year alone when the rest is missing or
    impossible."""
    y = str(year or "").strip()
    if not re.fullmatch(r"[0-9]{4}", y):
        return ""
    m = str(month or "").strip().lower()[:3]
    m_num = _MONTHS.index(m) + 1 if m in _MONTHS else int(m) if m.isdigit() else 0
    d = str(day or "").strip()
    if not (m_num and d.isdigit()):
        return y
    try:
        return date(int(y), m_num, int(d)).isoformat()
    except ValueError:
        return y


# ---------------------------------------------------------------- BibTeX


class _LatexText(LatexDecodingMiddleware):
    """LaTeX to text, with a bare `%` kept as a percent sign: in an abstract it is almost never a comment,
    and pylatexenc would drop the rest of the line after it."""

    def _transform_python_value_string(self, python_string: str) -> tuple[str, str]:
        return super()._transform_python_value_string(re.sub(r"(?<!\\)%", r"\\%", python_string))


def read_bib(name: str, text: str) -> tuple[list[Entry], list[Problem]]:
    """BibTeX entries, with @string macros resolved and LaTeX accents and braces turned into text."""
    try:
        library = bibtexparser.parse_string(text, append_middleware=[_LatexText(), SeparateCoAuthors()])
    except Exception as e:  # bibtexparser raises only on its own internal errors; one file must not stop an ingest
        return [], [Problem(name, f"BibTeX could not be parsed ({type(e).__name__}); check the file's braces")]
    problems = [_bib_failure(name, block) for block in library.failed_blocks]
    strings = {key.lower(): str(s.value) for key, s in library.strings_dict.items()}
    return [_bib_entry(e, strings) for e in library.entries], problems


def _bib_failure(name: str, block: ParsingFailedBlock) -> Problem:
    line = (block.start_line or 0) + 1
    if isinstance(block, DuplicateBlockKeyBlock):
        message = f"key {block.key!r} is used earlier in the file; skipped: give the entry its own key"
        return Problem(name, message, line)
    return Problem(name, "malformed BibTeX entry (unbalanced braces or quotes?); skipped", line)


def _bib_entry(entry: bibtexparser.model.Entry, strings: dict[str, str]) -> Entry:
    f = {fld.key.lower(): fld.value for fld in entry.fields}
    text = {k: _concat(str(v), strings) for k, v in f.items() if isinstance(v, (str, int))}
    authors = f.get("author")
    archive = text.get("archiveprefix", text.get("eprinttype", "arxiv"))
    eprint = text.get("eprint", "") if archive.lower() == "arxiv" else ""
    return Entry(
        label=f"entry {entry.key!r}",
        line=(entry.start_line or 0) + 1,
        title=text.get("title", ""),
        abstract=text.get("abstract", ""),
        date=text.get("date", "")[:10] or _ymd(text.get("year"), text.get("month"), text.get("day")),
        authors=len(authors) if isinstance(authors, list) else None,
        doi=text.get("doi", ""),
        arxiv_id=eprint or text.get("arxiv", ""),
        pmid=text.get("pmid", ""),
        url=text.get("url", ""),
        venue=text.get("journal") or text.get("booktitle") or text.get("journaltitle", ""),
        categories=[text["primaryclass"]] if text.get("primaryclass") else [],
    )


def _concat(value: str, strings: dict[str, str]) -> str:
    """`acl # " 2021"`: bibtexparser replaces a lone @string name but leaves a concatenation as written."""
    parts = [p.strip() for p in value.split("#")]
    if len(parts) < 2:
        return value
    out = []
    for part in parts:
        if len(part) >= 2 and part[0] + part[-1] in ('""', "{}"):
            out.append(part[1:-1])
        elif part.lower() in strings or part.isdigit():
            out.append(strings.get(part.lower(), part))
        else:
            return value  # a `#` in ordinary text ("C# code")
    return "".join(out)


# ---------------------------------------------------------------- RIS


def read_ris(name: str, lines: list[str]) -> tuple[list[Entry], list[Problem]]:
    """RIS records (`TY  -` ... `ER  -`), continuation lines included, as rispy reads them."""
    try:
        records = rispy.loads("\n".join(lines))
    except Exception as e:  # rispy raises on some malformed tag lines
        return [], [Problem(name, f"RIS could not be parsed ({e}); check the tag lines")]
    starts: list[int | None] = [n for n, line in enumerate(lines, 1) if line.startswith("TY  -")]
    problems = []
    if len(starts) != len(records):
        problems.append(Problem(name, f"{len(starts) - len(records)} record(s) not closed by 'ER  -'; skipped"))
        starts = [None] * len(records)
    return [_ris_entry(r, n, line) for n, (r, line) in enumerate(zip(records, starts), 1)], problems


def _ris_entry(r: dict, n: int, line: int | None) -> Entry:
    date_ = str(r.get("date") or r.get("year") or r.get("publication_year") or "")
    y, m, d = (date_.split("/") + ["", "", ""])[:3]
    accession = str(r.get("accession_number", ""))
    return Entry(
        label=f"record {n}",
        line=line,
        title=str(r.get("title") or r.get("primary_title") or ""),
        abstract=str(r.get("abstract") or r.get("notes_abstract") or ""),
        date=_ymd(y, m, d),
        authors=len(r.get("authors", []) + r.get("first_authors", [])) or None,
        doi=str(r.get("doi", "")),
        pmid=accession if "pubmed" in str(r.get("name_of_database", "")).lower() else "",
        url=next(iter(r.get("urls") or []), ""),
        venue=str(r.get("journal_name") or r.get("secondary_title") or r.get("alternate_title3") or ""),
    )


# ---------------------------------------------------------------- PubMed / MEDLINE (.nbib)

_MEDLINE_TAG = re.compile(r"^([A-Z][A-Z0-9]{0,3}) *- (.*)$")


def read_nbib(name: str, lines: list[str]) -> tuple[list[Entry], list[Problem]]:
    """MEDLINE records as PubMed exports them: `TAG - value`, continuation lines indented, a blank line between."""
    records: list[tuple[int, dict[str, list[str]]]] = []
    last: list[str] | None = None
    stray = []
    for n, line in enumerate(lines, 1):
        tag = _MEDLINE_TAG.match(line)
        if tag and (tag.group(1) == "PMID" or not records or last is None):
            records.append((n, {}))
        if tag:
            values = records[-1][1].setdefault(tag.group(1), [])
            values.append(tag.group(2).strip())
            last = values
        elif line.startswith(" ") and line.strip() and last:
            last[-1] += " " + line.strip()
        elif line.strip():
            stray.append(n)
        else:
            last = None  # a blank line ends a record
    entries = [_nbib_entry(tags, n) for n, tags in records]
    if not stray:
        return entries, []
    return entries, [Problem(name, f"{len(stray)} line(s) are not MEDLINE 'TAG - value' lines; ignored", stray[0])]


def _nbib_entry(tags: dict[str, list[str]], line: int) -> Entry:
    def first(tag: str) -> str:
        return tags.get(tag, [""])[0]

    ids = [v.rsplit(" ", 1) for v in tags.get("LID", []) + tags.get("AID", []) if " " in v]
    dp = first("DP").split()
    return Entry(
        label=f"record PMID {first('PMID')}" if first("PMID") else "record",
        line=line,
        title=first("TI"),
        abstract=" ".join(tags.get("AB", [])),
        date=_ymd(*(dp + [None, None, None])[:3]),
        authors=len(tags.get("AU", []) or tags.get("FAU", [])) or None,
        doi=next((v for v, kind in ids if kind == "[doi]"), ""),
        pmid=first("PMID"),
        venue=first("JT") or first("TA"),
    )


# ---------------------------------------------------------------- JSON records (CSL-JSON, arXiv, OpenAlex, S2)


def row_entry(row: dict, n: int, line: int) -> Entry | None:
    """The row as an Entry when its fields mark a known layout; None for the plain {title, abstract} layout.

    `row` has lower-cased top-level keys (nested objects keep theirs).
    """
    if "paperid" in row:
        return _s2(row, n, line)
    if "abstract_inverted_index" in row or str(row.get("id", "")).startswith("https://openalex.org/"):
        return _openalex(row, n, line)
    if "categories" in row and "id" in row and ({"update_date", "authors_parsed", "versions"} & row.keys()):
        return _arxiv(row, n, line)
    if "issued" in row or "container-title" in row or ("type" in row and isinstance(row.get("author"), list)):
        return _csl(row, n, line)
    return None


def _text(value: object) -> str:
    """A field as text; "" for nothing, lists and objects (a record's wrong-typed field is left out)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def _get(value: object, *path: str) -> object:
    """A nested field (`primary_location.source.display_name`), None where any step is missing or not an object."""
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _count(value: object) -> int | None:
    return (len(value) or None) if isinstance(value, list) else None


def _csl(row: dict, n: int, line: int) -> Entry:
    parts = _get(row, "issued", "date-parts")
    first = parts[0] if isinstance(parts, list) and parts and isinstance(parts[0], list) else []
    return Entry(
        label=f"item {row.get('id')!r}" if _text(row.get("id")) else f"item {n}",
        line=line,
        title=_text(row.get("title")),
        abstract=_text(row.get("abstract")),
        date=_ymd(*(first + [None, None, None])[:3]),
        authors=_count(row.get("author")),
        doi=_text(row.get("doi")),
        pmid=_text(row.get("pmid")),
        url=_text(row.get("url")),
        venue=_text(row.get("container-title")),
    )


def _arxiv(row: dict, n: int, line: int) -> Entry:
    authors = row.get("authors_parsed")
    names = _text(row.get("authors"))
    return Entry(
        label=f"arXiv record {_text(row.get('id')) or n}",
        line=line,
        title=_text(row.get("title")),
        abstract=_text(row.get("abstract")),
        date=_text(row.get("update_date"))[:10],
        authors=_count(authors) or (len([a for a in re.split(r",| and ", names) if a.strip()]) or None),
        doi=(_text(row.get("doi")).split() or [""])[0],  # a few records list several DOIs
        arxiv_id=_text(row.get("id")),
        venue=_text(row.get("journal-ref")),
        categories=_text(row.get("categories")).split(),
    )


def _openalex(row: dict, n: int, line: int) -> Entry:
    return Entry(
        label=f"OpenAlex work {_text(row.get('id')) or n}",
        line=line,
        title=_text(row.get("title") or row.get("display_name")),
        abstract=_uninvert(row.get("abstract_inverted_index")),
        date=_text(row.get("publication_date"))[:10] or _ymd(row.get("publication_year")),
        authors=_count(row.get("authorships")),
        doi=_text(row.get("doi")),
        pmid=_text(_get(row, "ids", "pmid")).rstrip("/").rsplit("/", 1)[-1],  # a PubMed URL
        url=_text(_get(row, "primary_location", "landing_page_url")),
        venue=_text(_get(row, "primary_location", "source", "display_name")),
    )


def _uninvert(index: object) -> str:
    """OpenAlex's {word: [positions]} back to text in position order; missing positions are simply skipped."""
    if not isinstance(index, dict):
        return ""
    at = {p: w for w, ps in index.items() if isinstance(ps, list) for p in ps if type(p) is int}
    return " ".join(at[p] for p in sorted(at))


def _s2(row: dict, n: int, line: int) -> Entry:
    external = row.get("externalids")
    external = external if isinstance(external, dict) else {}
    studies = row.get("fieldsofstudy")
    return Entry(
        label=f"paper {_text(row.get('paperid')) or n}",
        line=line,
        title=_text(row.get("title")),
        abstract=_text(row.get("abstract")),
        date=_text(row.get("publicationdate"))[:10] or _ymd(row.get("year")),
        authors=_count(row.get("authors")),
        doi=_text(external.get("DOI")),
        arxiv_id=_text(external.get("ArXiv")),
        pmid=_text(external.get("PubMed")),
        url=_text(row.get("url")),
        venue=_text(row.get("venue")) or _text(_get(row, "journal", "name")),
        categories=[s for s in studies if isinstance(s, str)] if isinstance(studies, list) else [],
    )
