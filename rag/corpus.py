"""Read abstract files (three scraped text layouts, JSONL, CSV) into deduplicated `Paper` records.

Nothing here raises for a bad file: each problem becomes a `Problem` line and the rest is read,
because one broken file must not keep a user's other papers out of the index.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path

from rag.errors import CorpusError
from rag.types import Corpus, Paper, Problem

MAX_ENTRY_CHARS = 100_000
csv.field_size_limit(2**31 - 1)  # an oversized field becomes a Problem below, not a csv.Error
TEXT_SUFFIXES = {".txt", ".jsonl", ".json", ".csv"}

_BOILERPLATE = {
    "new",
    "Get trending papers in your email inbox!",
    "Subscribe",
    "Daily Papers",
    "byAK and the research community",
}
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_DATE_LINE = re.compile(r"^(%s) (\d{1,2})(?:, (\d{4}))?(?: (\d+))?$" % "|".join(_MONTHS))
_AUTHORS_LINE = re.compile(r"^•\s*(\d+) authors?$")
_LONE_DATE = re.compile(r"^(%s)[a-z]* (\d{1,2})(?:,? (\d{4}))?$" % "|".join(_MONTHS), re.I)


# ---------------------------------------------------------------- entry points


def load(paths: Iterable[Path]) -> Corpus:
    """Read every file under `paths`, merging papers that appear in more than one place."""
    corpus = Corpus(papers=[])
    by_id: dict[str, Paper] = {}
    for file in _expand(paths):
        papers, problems = read_file(file)
        corpus.problems.extend(problems)
        corpus.per_file[file.name] = len(papers)
        path = str(file.resolve())
        (corpus.read_paths if papers else corpus.unread_paths).add(path)
        for paper in papers:
            paper.paths = [path]
            if _merge(by_id, paper, corpus.problems):
                corpus.merged += 1
    corpus.papers = list(by_id.values())
    return corpus


def read_file(path: Path) -> tuple[list[Paper], list[Problem]]:
    """Parse one file by its suffix; a file that cannot be read yields one Problem and no papers."""
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as e:
        return [], [Problem(name, f"cannot read file ({e.strerror}); check its permissions")]
    if b"\x00" in raw[:8192]:
        return [], [Problem(name, "binary file, not text; give .txt, .jsonl or .csv files")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return [], [Problem(name, f"not UTF-8 text (bad byte at offset {e.start}); re-save the file as UTF-8")]
    if not text.strip():
        return [], [Problem(name, "empty file; nothing to ingest")]
    suffix = path.suffix.lower()
    if suffix == ".json" and text.lstrip().startswith("["):
        return _read_json_array(name, text)
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(name, text)
    if suffix == ".csv":
        return _read_csv(name, text)
    return _read_text(name, text)


def _expand(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
            if not files:
                raise CorpusError(f"{path}: no .txt, .jsonl or .csv files in this folder")
            yield from files
        elif path.is_file():
            yield path
        else:
            raise CorpusError(f"{path}: no such file or folder; give a corpus file or folder that exists")


def _merge(by_id: dict[str, Paper], paper: Paper, problems: list[Problem]) -> bool:
    """Fold a paper seen before into the first record; return True when it was a duplicate."""
    first = by_id.get(paper.paper_id)
    if first is None:
        by_id[paper.paper_id] = paper
        return False
    if (first.title, first.abstract) != (paper.title, paper.abstract):
        problems.append(Problem(paper.source, f"id {paper.paper_id!r} already used by another paper; skipped"))
        return False
    first.sources += paper.sources
    first.positions += paper.positions
    first.paths += paper.paths
    for attr in ("date_raw", "date", "year", "authors", "organisation"):
        if not getattr(first, attr) and getattr(paper, attr):
            setattr(first, attr, getattr(paper, attr))
    return True


# ---------------------------------------------------------------- scraped text layouts


def _read_text(name: str, text: str) -> tuple[list[Paper], list[Problem]]:
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if lines[0][1].startswith("Abstract:"):
        return _read_abstract_lines(name, lines)
    return _read_listing(name, lines)


def _read_abstract_lines(name: str, lines: list[tuple[int, str]]) -> tuple[list[Paper], list[Problem]]:
    """Layout 1: one `Abstract:...` per line, no titles."""
    papers, problems = [], []
    for lineno, line in lines:
        if not line.startswith("Abstract:"):
            problems.append(Problem(name, "line does not start with 'Abstract:'; skipped", lineno))
            continue
        paper = _make_paper(name, len(papers) + 1, "", line[len("Abstract:"):], lineno, problems)
        if paper:
            papers.append(paper)
    return papers, problems


def _read_listing(name: str, lines: list[tuple[int, str]]) -> tuple[list[Paper], list[Problem]]:
    """Layouts 2 and 3: title line + abstract line, optionally closed by a metadata block.

    A metadata block (`• N authors` or an organisation, `·`, a date) describes the paper just
    before it; when the scrape ran several papers together, the earlier ones get no metadata.
    """
    papers: list[Paper] = []
    problems: list[Problem] = []
    title: tuple[int, str] | None = None
    meta: dict = {}
    i = 0
    while i < len(lines):
        lineno, line = lines[i]
        nxt = lines[i + 1][1] if i + 1 < len(lines) else ""
        if line in _BOILERPLATE or (not papers and title is None and _DATE_LINE.match(line)):
            pass  # page header, including the page's own date
        elif m := _AUTHORS_LINE.match(line):
            meta["authors"] = int(m.group(1))
        elif nxt == "·" and line != "·":
            meta["organisation"] = _organisation(line)
        elif line == "·":
            pass
        elif (m := _DATE_LINE.match(line)) and i > 0 and lines[i - 1][1] == "·":
            if title:  # the block describes the title that lost its abstract: drop both
                problems.append(Problem(name, "title with no abstract; skipped", title[0]))
                title = None
            elif papers:
                _apply_meta(papers[-1], m, meta)
            meta = {}
        elif not _looks_like_abstract(line) and (title is None or _looks_like_abstract(nxt)):
            if title:
                problems.append(Problem(name, "title with no abstract; skipped", title[0]))
            title = (lineno, line)
        else:
            t = title[1] if title else ""
            paper = _make_paper(name, len(papers) + 1, t, line, title[0] if title else lineno, problems)
            if paper:
                papers.append(paper)
            title = None
        i += 1
    if title:
        problems.append(Problem(name, "title with no abstract at end of file; skipped", title[0]))
    return papers, problems


def _looks_like_abstract(line: str) -> bool:
    return len(line) > 300 or (len(line) > 150 and line.endswith("."))


def _organisation(line: str) -> str:
    """`nvidia NVIDIA` or `google Google DeepMind` (handle, display name) -> the display name."""
    words = line.split()
    if len(words) > 1 and (words[0].islower() or words[0] == words[1]):
        return " ".join(words[1:])
    return line


def _apply_meta(paper: Paper, m: re.Match, meta: dict) -> None:
    month, day, year = m.group(1), int(m.group(2)), m.group(3)
    paper.date_raw = f"{month} {day}" + (f", {year}" if year else "")
    if year:
        paper.year = int(year)
        paper.date = _iso(paper.year, _MONTHS.index(month) + 1, day)
    paper.authors = meta.get("authors")
    paper.organisation = meta.get("organisation", "")


# ---------------------------------------------------------------- user formats


def _read_jsonl(name: str, text: str) -> tuple[list[Paper], list[Problem]]:
    rows, problems = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as e:
            problems.append(Problem(name, f"not valid JSON ({e.msg}); skipped", lineno))
    papers, more = _read_rows(name, rows)
    return papers, problems + more


def _read_rows(name: str, rows: list[tuple[int, object]]) -> tuple[list[Paper], list[Problem]]:
    papers: list[Paper] = []
    problems: list[Problem] = []
    for lineno, row in rows:
        if not isinstance(row, dict):
            problems.append(Problem(name, "expected a JSON object with 'title' and 'abstract'; skipped", lineno))
            continue
        paper = _row_paper(name, len(papers) + 1, row, lineno, problems)
        if paper:
            papers.append(paper)
    return papers, problems


def _read_json_array(name: str, text: str) -> tuple[list[Paper], list[Problem]]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        return [], [Problem(name, f"not valid JSON ({e.msg}); fix the file or write one object per line (JSONL)", e.lineno)]
    return _read_rows(name, [(i, row) for i, row in enumerate(rows, 1)])


def _read_csv(name: str, text: str) -> tuple[list[Paper], list[Problem]]:
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if "abstract" not in columns:
        return [], [Problem(name, f"CSV has no 'abstract' column (columns: {', '.join(columns) or 'none'}); add one")]
    papers, problems = [], []
    for row in reader:
        row = {(k or "").strip().lower(): v for k, v in row.items()}
        paper = _row_paper(name, len(papers) + 1, row, reader.line_num, problems)
        if paper:
            papers.append(paper)
    return papers, problems


def _row_paper(name: str, position: int, row: dict, lineno: int, problems: list[Problem]) -> Paper | None:
    if not str(row.get("abstract") or "").strip():
        problems.append(Problem(name, "record has no 'abstract'; skipped", lineno))
        return None
    paper = _make_paper(name, position, str(row.get("title") or ""), str(row["abstract"]), lineno, problems)
    if paper is None:
        return None
    if row.get("id"):
        paper.paper_id = str(row["id"]).strip()
    if row.get("date"):
        _apply_free_date(paper, str(row["date"]).strip())
    if str(row.get("authors") or "").strip():
        _apply_authors(paper, row["authors"])
    return paper


def _apply_free_date(paper: Paper, raw: str) -> None:
    """Accept ISO dates (2024-06-18), bare years, and the listing style (Jun 18, 2024)."""
    paper.date_raw = raw
    if m := re.match(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", raw):
        paper.year = int(m.group(1))
        paper.date = raw[:10] if m.group(3) else ""
    elif (m := _LONE_DATE.match(raw)) and m.group(3):
        paper.year = int(m.group(3))
        paper.date = _iso(paper.year, _MONTHS.index(m.group(1)[:3].title()) + 1, int(m.group(2)))


def _iso(year: int, month: int, day: int) -> str:
    """ISO date, or "" for an impossible one (Feb 30): the year alone still filters."""
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return ""


def _apply_authors(paper: Paper, value: object) -> None:
    """`authors` may be a count, a list of names, or a `;`/`,`-separated string of names."""
    if isinstance(value, list):
        paper.authors = len(value)
    elif str(value).strip().isdigit():
        paper.authors = int(str(value).strip())
    else:
        separators = r";" if ";" in str(value) else r",| and "  # "Last, First; Last, First"
        paper.authors = len([a for a in re.split(separators, str(value)) if a.strip()])


# ---------------------------------------------------------------- records


def _make_paper(name: str, position: int, title: str, abstract: str, lineno: int, problems: list[Problem]) -> Paper | None:
    if len(abstract) > MAX_ENTRY_CHARS:
        problems.append(Problem(name, f"entry of {len(abstract):,} characters is longer than the {MAX_ENTRY_CHARS:,} an abstract may be; skipped", lineno))
        return None
    title, abstract = clean_text(title), clean_text(abstract)
    if not abstract:
        problems.append(Problem(name, "entry has an empty abstract; skipped", lineno))
        return None
    return Paper(paper_id=paper_id(title, abstract), title=title, abstract=abstract, sources=[name], positions=[position])


def paper_id(title: str, abstract: str) -> str:
    """Content hash of title + abstract: the same paper gets the same id in every file and run."""
    key = _normalise(title) + "\x1f" + _normalise(abstract)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _normalise(s: str) -> str:
    return re.sub(r"\W+", " ", s.lower()).strip()


_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "theta": "θ", "lambda": "λ", "mu": "μ", "pi": "π", "sigma": "σ", "tau": "τ", "phi": "φ",
    "omega": "ω", "times": "×", "cdot": "·", "leq": "≤", "geq": "≥", "approx": "≈",
}
_ACCENTS = {("'", "e"): "é", ("'", "a"): "á", ('"', "i"): "ï", ('"', "o"): "ö", ('"', "u"): "ü", ("`", "e"): "è"}


def clean_text(s: str) -> str:
    """Undo the scraping damage that hurts reading and matching: LaTeX remnants, e-mail obfuscation."""
    s = s.replace("[email\xa0protected]", "[…]").replace("[email protected]", "[…]")
    s = re.sub(r"\\([`'\"])\{?([a-zA-Z])\}?", lambda m: _ACCENTS.get((m.group(1), m.group(2)), m.group(2)), s)
    s = re.sub(r"\\(url|footnote|textbf|textit|emph|mathrm|text|mathbf)\{", " ", s)
    s = re.sub(r"\\color\[[^\]]*\]\{[^{}]*\}", "", s)
    s = re.sub(r"\\([a-zA-Z]+)", lambda m: _GREEK.get(m.group(1), m.group(1)), s)
    s = re.sub(r"\$([^$]{1,40})\$", lambda m: m.group(1) if re.search(r"[_^αβγδεθλμπστφω×·]", m.group(1)) else m.group(0), s)
    s = re.sub(r"\{(?:it|bf|em) ([^{}]*)\}", r"\1", s)
    s = s.replace("\\%", "%").replace("\\(", "").replace("\\)", "").replace("\\", "")
    s = re.sub(r"(?<=[\w.)])~(?=[\w(%])", " ", s).replace(" %", "%")
    s = re.sub(r"([_^])\{([^{}]*)\}", r"\1(\2)", s)
    s = s.replace("{", "").replace("}", "")
    return re.sub(r"\s+", " ", s).strip()
