"""Read abstract files (three scraped text layouts, JSONL/JSON, CSV, and the bibliography formats of
`rag.formats`) into deduplicated `Paper` records.

Nothing here raises for a bad file: each problem becomes a `Problem` line and the rest is read,
because one broken file, line or byte must not keep a user's other papers out of the index.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from rag import ids
from rag.errors import CorpusError
from rag.types import Corpus, Paper, Problem

if TYPE_CHECKING:
    from rag.formats import Entry

MAX_ENTRY_CHARS = 100_000
MAX_ID_CHARS = 200
BIBLIOGRAPHY_SUFFIXES = {".bib", ".ris", ".nbib"}  # `rag.formats`, imported only when needed (bibtexparser: 50 ms)
TEXT_SUFFIXES = {".txt", ".jsonl", ".json", ".csv", *BIBLIOGRAPHY_SUFFIXES}
csv.field_size_limit(2**31 - 1)  # an oversized field becomes a Problem below, not a csv.Error

_BOILERPLATE = {
    "new",
    "Get trending papers in your email inbox!",
    "Subscribe",
    "Daily Papers",
    "byAK and the research community",
}
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_DATE_LINE = re.compile(r"^(%s) ([0-9]{1,2})(?:, ([0-9]{4}))?(?: ([0-9]+))?$" % "|".join(_MONTHS))
_AUTHORS_LINE = re.compile(r"^•\s*([0-9]{1,5}) authors?$")
_LONE_DATE = re.compile(r"^(%s)[a-z]* ([0-9]{1,2})(?:,? ([0-9]{4}))?$" % "|".join(_MONTHS), re.I)
_ABSTRACT_PREFIX = "Abstract:"
_NEWLINE = re.compile(r"\r\n|\r|\n")
_NEWLINE_BYTES = re.compile(rb"\r\n|\r|\n")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _windows_1252(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: read bytes that are not UTF-8 as Windows-1252 (Latin-1 where it has no character)."""
    assert isinstance(err, UnicodeDecodeError)  # registered for decoding only
    bad = err.object[err.start : err.end]
    return "".join(_CP1252[b] for b in bad), err.end


def _cp1252_char(b: int) -> str:
    try:
        return bytes([b]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(b)


_CP1252 = [_cp1252_char(b) for b in range(256)]
codecs.register_error("rag-windows-1252", _windows_1252)


# ---------------------------------------------------------------- entry points


def load(
    paths: Iterable[Path],
    stored: Mapping[str, tuple[str, Iterable[str]]] | None = None,
    skipped: Iterable[Problem] = (),
    identities: Mapping[str, str] | None = None,
) -> Corpus:
    """Read every file under `paths` in sorted order, merging papers that appear in more than one place.

    `stored` maps ids already in an index to (content hash, source paths); such an id counts as
    taken when none of its paths is read now, so a file ingested on its own cannot reuse the id
    of a different paper stored from another file. `identities` maps the DOIs and arXiv ids of
    stored papers (`identity_keys`) to their ids: an entry sharing one with a paper stored from
    files not read now takes that paper's id, so two ingests keep one paper, and a notice says
    which entry it now holds. `skipped`: what an earlier `expand` of the paths left out, reported
    with the rest.
    """
    corpus = Corpus(papers=[], problems=list(skipped))
    files = expand(paths, corpus.problems)
    merger = _Merger(files, stored, identities, hold=lambda slot: True)
    for file in files:
        for paper in _entries(file, corpus):
            merger.add(paper, corpus)
    corpus.papers = list(merger.held.values())
    corpus.distinct = len(corpus.papers)
    return corpus


def scan(
    files: list[Path],
    corpus: Corpus,
    stored: Mapping[str, tuple[str, Iterable[str]]] | None = None,
    identities: Mapping[str, str] | None = None,
) -> Iterator[Paper]:
    """The papers `load` would give, one at a time, in memory that does not grow with the corpus: for ingest.

    The files are read twice. The first pass only learns which ids are seen more than once; the second
    yields every other paper as soon as it is read, and holds back the papers seen again until the end,
    when each has every sighting folded in. Each pass keeps an id's content hash, not its paper.
    `corpus` gets the problems, notices and counts (its `papers` stays empty).
    """
    first = _Merger(files, stored, identities, hold=lambda slot: False)
    for file in files:
        for paper in _entries(file, Corpus(papers=[])):
            first.add(paper, None)
    twice, corpus.distinct = first.twice, len(first.seen)
    del first
    merger = _Merger(files, stored, identities, hold=twice.__contains__)
    for file in files:
        for paper in _entries(file, corpus):
            slot, duplicate = merger.add(paper, corpus)
            if not duplicate and slot not in twice:
                yield paper
    yield from merger.held.values()


def _entries(file: Path, corpus: Corpus) -> Iterator[Paper]:
    """One file's papers, each knowing its path; what the file held is counted in `corpus` once it is read."""
    path = str(file.resolve())
    found: list[Problem] = []
    count = 0
    for paper in read_entries(file, found):
        paper.paths = [path]
        count += 1
        yield paper
    problems = [p for p in found if not p.notice]
    corpus.problems.extend(problems)
    corpus.notices.extend(p for p in found if p.notice)
    corpus.per_file[file.name] = count
    (corpus.read_paths if count else corpus.unread_paths).add(path)
    if count and problems:
        corpus.damaged_paths.add(path)


def _replaced(paper: Paper, was: str) -> Problem:
    """An entry that took the place of a paper stored from another file, by a shared DOI or arXiv id."""
    keys = ", ".join(identity_keys(paper.doi, paper.arxiv_id))
    message = (
        f"the same paper ({keys}) was stored from {was}; it is now stored once, with the title, abstract "
        f"and metadata of entry {paper.positions[0]} of this file"
    )
    return Problem(paper.source, message, notice=True)


def read_file(path: Path) -> tuple[list[Paper], list[Problem]]:
    """Parse one file by its suffix; a file that cannot be read yields one Problem and no papers."""
    problems: list[Problem] = []
    papers = list(read_entries(path, problems))
    return papers, problems


def read_entries(path: Path, problems: list[Problem]) -> Iterator[Paper]:
    """The papers of one file as they are read; its problems are added to `problems` once it is read through.

    JSON Lines (an arXiv or OpenAlex dump may be gigabytes) are read a line at a time; other files whole.
    """
    found: list[Problem] = []
    count = 0
    stream = _jsonl_stream(path, found) if path.suffix.lower() == ".jsonl" else _whole_file(path, found)
    for paper in stream:
        count += 1
        yield paper
    if not count and all(p.line is not None for p in found):
        found.append(
            Problem(path.name, "no paper found in this file (each entry needs an abstract); nothing read from it")
        )
    problems.extend(found)


def _whole_file(path: Path, problems: list[Problem]) -> Iterator[Paper]:
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as e:
        problems.append(_unreadable(name, e))
        return
    lines, found = _decode(name, raw)
    del raw  # a large file is held once, as lines, while it is parsed
    problems += found
    if lines is None:
        return
    if not any(line.strip() for line in lines):
        problems.append(Problem(name, "empty file; nothing to ingest"))
        return
    papers, more = _parse(name, path.suffix.lower(), lines)
    problems += more
    yield from papers


def _unreadable(name: str, e: OSError) -> Problem:
    return Problem(name, f"cannot read file ({e.strerror}); check its permissions")


def _jsonl_stream(path: Path, problems: list[Problem]) -> Iterator[Paper]:
    """A JSON Lines file read a line at a time, with what `_decode` does for a whole file done line by line."""
    name = path.name
    try:
        handle = open(path, "rb")
    except OSError as e:
        problems.append(_unreadable(name, e))
        return
    with handle:
        head = handle.read(8192)
        handle.seek(0)
        if any(head.startswith(bom) for bom, _ in _BOMS) or b"\x00" in head:
            yield from _whole_file(path, problems)  # UTF-16/32, or binary: decoded (or refused) as a whole
            return
        lines = _Lines(name, handle)
        parsing: list[Problem] = []
        yield from _rows_papers(name, _json_rows(name, lines, parsing), parsing)
    problems += lines.problems()
    if not lines.text:
        problems.append(Problem(name, "empty file; nothing to ingest"))
    problems += sorted(parsing, key=lambda p: p.line or 0)


def _parse(name: str, suffix: str, lines: list[str]) -> tuple[list[Paper], list[Problem]]:
    if suffix == ".json":
        return _read_json(name, lines)
    if suffix == ".jsonl":
        return _read_jsonl(name, lines)
    if suffix == ".csv":
        return _read_csv(name, lines)
    if suffix in BIBLIOGRAPHY_SUFFIXES:
        from rag import formats

        entries, problems = formats.read(name, suffix, lines)
        papers = [p for p in (_entry_paper(name, n, e, problems) for n, e in enumerate(entries, 1)) if p]
        return papers, sorted(problems, key=lambda p: p.line or 0)
    return _read_text(name, lines)


def expand(paths: Iterable[Path], skipped: list[Problem] | None = None) -> list[Path]:
    """Corpus files under `paths`, each once, sorted by full path so every run reads them in one order.
    Anything else in a folder (another format, a pipe or device) is added to `skipped` with the reason,
    and never opened: reading a named pipe would wait forever, a device could be endless."""
    files: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.is_dir():
            found = []
            for entry in sorted(path.rglob("*")):
                if entry.is_dir():
                    continue
                if (why := _not_corpus_file(entry)) is None:
                    found.append(entry)
                elif skipped is not None and not _hidden(entry.relative_to(path)):
                    skipped.append(Problem(str(entry.relative_to(path)), why))
            if not found:
                raise CorpusError(f"{path}: no .txt, .jsonl, .json, .csv, .bib, .ris or .nbib files in this folder")
        elif path.is_file():
            found = [path]
        elif path.exists():
            raise CorpusError(f"{path}: not a regular file: {_special(path)}; give a file")
        else:
            raise CorpusError(f"{path}: no such file or folder; give a corpus file or folder that exists")
        files.update((str(p.resolve()), p) for p in found)
    return [files[key] for key in sorted(files)]


def _hidden(relative: Path) -> bool:
    """A dot file or anything in a dot folder (.git, .DS_Store): not the user's corpus, not worth a line."""
    return any(part.startswith(".") for part in relative.parts)


def _not_corpus_file(entry: Path) -> str | None:
    """Why a file found in a folder is not read (None: it is a corpus file)."""
    if not entry.is_file():
        return f"not a regular file: {_special(entry)}; skipped" if entry.exists() else "a link to nothing; skipped"
    if entry.suffix.lower() not in TEXT_SUFFIXES:
        return f"not a corpus file ({entry.suffix or 'no extension'}); give .txt, .jsonl, .json or .csv files"
    return None


def _special(path: Path) -> str:
    """What a path that exists but is neither a file nor a folder is, in words."""
    if path.is_fifo():
        return "a named pipe"
    if path.is_socket():
        return "a socket"
    return "a device" if path.is_char_device() or path.is_block_device() else "not a file or folder"


# ---------------------------------------------------------------- bytes to lines


def _decode(name: str, raw: bytes) -> tuple[list[str] | None, list[Problem]]:
    """The file's lines (split on any newline convention), or None with the reason it is not text.

    UTF-8 is expected; a UTF-16/32 file with a BOM is decoded too. Lines in another encoding are
    read as Windows-1252 and lines holding NUL bytes are dropped, each with one Problem for the
    file, so a few bad bytes never cost the whole file.
    """
    codec = next((codec for bom, codec in _BOMS if raw.startswith(bom)), None)
    if codec:
        try:
            lines, problems = _NEWLINE.split(raw.decode(codec)), list[Problem]()
        except UnicodeDecodeError as e:
            return None, [
                Problem(
                    name, f"not valid {codec.upper()} text (bad bytes at offset {e.start}); re-save the file as UTF-8"
                )
            ]
    elif b"\x00" in raw[:8192]:
        return None, [Problem(name, "binary file, not text; give .txt, .jsonl or .csv files")]
    else:
        try:
            lines, problems = _NEWLINE.split(raw.decode("utf-8")), []
        except UnicodeDecodeError:
            lines, problems = _decode_mixed(name, raw)
    lines[0] = lines[0].lstrip("\ufeff")
    kept, more = _drop_nul_lines(name, lines)
    return kept, problems + more


def _decode_mixed(name: str, raw: bytes) -> tuple[list[str], list[Problem]]:
    """Decode line by line: UTF-8 where valid, the rest as Windows-1252 (one Problem naming the first such line)."""
    lines, bad = [], []
    for lineno, line in enumerate(_NEWLINE_BYTES.split(raw), 1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("utf-8", errors="rag-windows-1252"))
            bad.append(lineno)
    return lines, [_latin_notice(name, bad)]


def _latin_notice(name: str, bad: list[int]) -> Problem:
    message = f"{len(bad)} line(s) not UTF-8, read as Windows-1252; re-save the file as UTF-8 if accents look wrong"
    return Problem(name, message, bad[0], notice=True)


def _drop_nul_lines(name: str, lines: list[str]) -> tuple[list[str], list[Problem]]:
    """Blank out lines holding NUL bytes (binary debris); blanking keeps every other line's number."""
    bad = [n for n, line in enumerate(lines, 1) if "\x00" in line]
    if not bad:
        return lines, []
    kept = ["" if "\x00" in line else line for line in lines]
    return kept, [_nul_problem(name, bad)]


def _nul_problem(name: str, bad: list[int]) -> Problem:
    return Problem(name, f"{len(bad)} line(s) hold NUL bytes (binary data); skipped", bad[0])


class _Lines:
    """A binary file's non-blank lines as (line number, text), decoded as `_decode` decodes a whole file:
    split on any newline convention, UTF-8 or else Windows-1252 line by line, lines with NUL bytes dropped."""

    def __init__(self, name: str, handle: io.BufferedReader) -> None:
        self.name, self.handle = name, handle
        self.text = False  # a non-blank line was read
        self.latin: list[int] = []  # first line not UTF-8, and how many
        self.nul: list[int] = []

    def __iter__(self) -> Iterator[tuple[int, str]]:
        lineno = 0
        for raw in self.handle:
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            for part in raw.split(b"\r"):
                lineno += 1
                line = self._decode(part, lineno)
                if "\x00" in line:
                    self.nul.append(lineno)
                elif line.strip():
                    self.text = True
                    yield lineno, line.lstrip("\ufeff") if lineno == 1 else line

    def _decode(self, part: bytes, lineno: int) -> str:
        try:
            return part.decode("utf-8")
        except UnicodeDecodeError:
            self.latin.append(lineno)
            return part.decode("utf-8", errors="rag-windows-1252")

    def problems(self) -> list[Problem]:
        return ([_latin_notice(self.name, self.latin)] if self.latin else []) + (
            [_nul_problem(self.name, self.nul)] if self.nul else []
        )


# ---------------------------------------------------------------- scraped text layouts


def _read_text(name: str, text_lines: list[str]) -> tuple[list[Paper], list[Problem]]:
    """The scraped layouts, in any mix: `Abstract:...` lines (untitled), or a title line and an
    abstract line optionally closed by a metadata block.

    A metadata block (`• N authors` or an organisation, `·`, a date) describes the paper just
    before it; when the scrape ran several papers together, the earlier ones get no metadata.
    """
    lines = [(n, line.strip()) for n, line in enumerate(text_lines, 1) if line.strip()]
    papers: list[Paper] = []
    problems: list[Problem] = []
    title: tuple[int, str] | None = None
    meta: dict = {}

    def add(t: str, abstract: str, lineno: int) -> None:
        paper = _make_paper(name, len(papers) + 1, t, abstract, lineno, problems)
        if paper:
            papers.append(paper)

    for i, (lineno, line) in enumerate(lines):
        nxt = lines[i + 1][1] if i + 1 < len(lines) else ""
        if line in _BOILERPLATE or (not papers and title is None and _DATE_LINE.match(line)):
            pass  # page header, including the page's own date
        elif line.startswith(_ABSTRACT_PREFIX):
            if title:
                problems.append(Problem(name, "title with no abstract; skipped", title[0]))
                title = None
            add("", line[len(_ABSTRACT_PREFIX) :], lineno)
        elif m := _AUTHORS_LINE.match(line):
            meta["authors"] = int(m.group(1))
        elif nxt == "·" and line != "·" and not _looks_like_abstract(line):
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
            add(title[1] if title else "", line, title[0] if title else lineno)
            title = None
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


# ---------------------------------------------------------------- JSON and JSONL


def _read_json(name: str, lines: list[str]) -> tuple[list[Paper], list[Problem]]:
    """A `.json` file: an array of objects, one object, or else JSON Lines (one Problem if no line is a paper)."""
    value, error = _parse_json("\n".join(lines))
    if isinstance(value, (list, dict)):
        rows = value if isinstance(value, list) else [value]
        problems: list[Problem] = []
        return list(_rows_papers(name, enumerate(rows, 1), problems)), problems
    papers, problems = _read_jsonl(name, lines)
    if papers:
        return papers, problems
    reason = f"not valid JSON ({error})" if error else "not a JSON object or array of objects"
    return [], [Problem(name, f"{reason}; fix the file or write one object per line (JSONL)")]


def _read_jsonl(name: str, lines: list[str]) -> tuple[list[Paper], list[Problem]]:
    problems: list[Problem] = []
    papers = list(_rows_papers(name, _json_rows(name, enumerate(lines, 1), problems), problems))
    return papers, sorted(problems, key=lambda p: p.line or 0)


def _json_rows(name: str, lines: Iterable[tuple[int, str]], problems: list[Problem]) -> Iterator[tuple[int, object]]:
    """(line number, value) of each JSON line; a line that is not JSON becomes a Problem."""
    for lineno, line in lines:
        if not line.strip():
            continue
        value, error = _parse_json(line)
        if error is None:
            yield lineno, value
        else:
            problems.append(Problem(name, f"not valid JSON ({error}); skipped", lineno))


def _parse_json(text: str) -> tuple[object, str | None]:
    """(value, None), or (None, why not): json.loads also raises RecursionError and ValueError."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, e.msg
    except RecursionError:
        return None, "nested too deeply"
    except ValueError:
        return None, "a number with too many digits"


def _rows_papers(name: str, rows: Iterable[tuple[int, object]], problems: list[Problem]) -> Iterator[Paper]:
    from rag import formats

    position = 0
    for lineno, row in rows:
        if not isinstance(row, dict):
            problems.append(Problem(name, "expected a JSON object with 'title' and 'abstract'; skipped", lineno))
            continue
        fields = {str(k).strip().lstrip("\ufeff").lower(): v for k, v in row.items()}
        entry = formats.row_entry(fields, position + 1, lineno)  # CSL-JSON, arXiv, OpenAlex, Semantic Scholar
        if entry:
            paper = _entry_paper(name, position + 1, entry, problems)
        else:
            paper = _row_paper(name, position + 1, fields, lineno, problems)
        if paper:
            position += 1
            yield paper


# ---------------------------------------------------------------- CSV


def _read_csv(name: str, lines: list[str]) -> tuple[list[Paper], list[Problem]]:
    """CSV (or `;`/tab separated) with a header row naming an `abstract` column."""
    delimiter = _delimiter(lines)
    problems: list[Problem] = []
    rows = _csv_rows(name, lines, delimiter, problems)
    header = next(rows, None)
    columns = [c.strip().lstrip("\ufeff").lower() for c in header[1]] if header else []
    if "abstract" not in columns:
        return [], [Problem(name, f"CSV has no 'abstract' column (columns: {', '.join(columns) or 'none'}); add one")]
    papers: list[Paper] = []
    for lineno, values in rows:
        fields = _csv_fields(name, columns, values, delimiter, lineno, problems)
        paper = None if fields is None else _row_paper(name, len(papers) + 1, fields, lineno, problems)
        if paper:
            papers.append(paper)
    return papers, problems


def _delimiter(lines: list[str]) -> str:
    """`,` unless the header names an `abstract` column only when split on `;` or a tab."""
    header = next((line for line in lines if line.strip()), "")
    for delimiter in (",", ";", "\t"):
        if "abstract" in (c.strip().lstrip("\ufeff").lower() for c in _lenient_row(header, delimiter)):
            return delimiter
    return ","


def _csv_rows(name: str, lines: list[str], delimiter: str, problems: list[Problem]) -> Iterator[tuple[int, list[str]]]:
    """(first line, values) of each non-blank row, parsed strictly so a stray quote is noticed.

    A quote that is not closed where its field ends would swallow the rows after it; the lines
    such a row spans are instead read one row per line, with one Problem.
    """
    reader = csv.reader(io.StringIO("\n".join(lines), newline=""), delimiter=delimiter, strict=True)
    start = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            end = max(reader.line_num, start)
            where = f"line {start}" if end == start else f"lines {start}-{end}"
            problems.append(
                Problem(name, f"bad quoting ({e}) in {where}; read one row per line: check its quotes", start)
            )
            for lineno in range(start, end + 1):
                if lines[lineno - 1].strip():
                    yield lineno, _lenient_row(lines[lineno - 1], delimiter)
            start = end + 1
            continue
        if any(v.strip() for v in values):
            yield start, values
        start = reader.line_num + 1


def _lenient_row(line: str, delimiter: str) -> list[str]:
    """One line as a row: backslash-escaped quotes first, else Python's forgiving reading."""
    try:
        return next(csv.reader([line], delimiter=delimiter, escapechar="\\", strict=True), [])
    except csv.Error:
        return next(csv.reader([line], delimiter=delimiter), [])


def _csv_fields(
    name: str, columns: list[str], values: list[str], delimiter: str, lineno: int, problems: list[Problem]
) -> dict | None:
    """Row values by column; surplus values (an unquoted delimiter) rejoin a last `abstract` column."""
    fields = dict(zip(columns, values))
    if not any(v.strip() for v in values[len(columns) :]):
        return fields
    where = f"row has {len(values)} fields but the header has {len(columns)}"
    if columns[-1] != "abstract":
        problems.append(Problem(name, f"{where}; skipped: quote fields that hold a {delimiter!r}", lineno))
        return None
    fields["abstract"] = delimiter.join(values[len(columns) - 1 :])
    problems.append(
        Problem(
            name, f"{where}; the extra ones were joined to 'abstract': quote fields that hold a {delimiter!r}", lineno
        )
    )
    return fields


# ---------------------------------------------------------------- user records (JSON and CSV)


def _row_paper(name: str, position: int, row: dict, lineno: int, problems: list[Problem]) -> Paper | None:
    abstract, title = _scalar(row.get("abstract")), _scalar(row.get("title"))
    if abstract is None or not abstract.strip():
        why = "an 'abstract' that is not text" if abstract is None else f"no 'abstract' (keys: {_keys(row)})"
        problems.append(Problem(name, f"record has {why}; skipped", lineno))
        return None
    if title is None:
        problems.append(Problem(name, "record has a 'title' that is not text; read without a title", lineno))
    paper = _make_paper(name, position, title or "", abstract, lineno, problems)
    if paper is None:
        return None
    if "id" in row:
        paper.paper_id = _user_id(name, row["id"], lineno, problems) or paper.paper_id
    if date_raw := (_scalar(row.get("date")) or "").strip():
        _apply_free_date(paper, date_raw)
    _apply_authors(paper, row.get("authors"))
    _apply_ids(name, paper, row, lineno, problems)
    return paper


def _entry_paper(name: str, position: int, entry: Entry, problems: list[Problem]) -> Paper | None:
    """A paper from a bibliography or metadata record; one without an abstract is reported and skipped."""
    if not entry.abstract.strip():
        problems.append(Problem(name, f"{entry.label} has no abstract; skipped", entry.line))
        return None
    paper = _make_paper(name, position, entry.title, entry.abstract, entry.line or 0, problems)
    if paper is None:
        return None
    if entry.date:
        _apply_free_date(paper, entry.date)
    paper.authors = entry.authors
    _apply_ids(name, paper, vars(entry), entry.line, problems)
    return paper


_ID_CHECKS = (
    ("doi", ids.doi, "a DOI (10.NNNN/...)"),
    ("arxiv_id", ids.arxiv_id, "an arXiv id"),
    ("pmid", ids.pmid, "a PubMed id"),
)


def _apply_ids(name: str, paper: Paper, row: Mapping, lineno: int | None, problems: list[Problem]) -> None:
    """Identifiers (validated and normalised: a bad one is reported and left out), venue, categories and URL."""
    for key, check, what in _ID_CHECKS:
        raw = (_scalar(row.get(key)) or "").strip()
        if raw and not (value := check(raw)):
            problems.append(Problem(name, f"{key} {raw[:60]!r} is not {what}; read without it", lineno))
        elif raw:
            setattr(paper, key, value)
    url = (_scalar(row.get("url")) or "").strip()
    paper.url = url if re.fullmatch(r"https?://[^\s\x00-\x1f\x7f]{1,500}", url) else ""
    paper.venue = clean_text(_scalar(row.get("venue")) or "")[:300]
    categories = row.get("categories")
    if isinstance(categories, str):
        categories = re.split(r"[;,\s]+", categories)
    if isinstance(categories, list):
        paper.categories = list(dict.fromkeys(c.strip() for c in categories if isinstance(c, str) and c.strip()))


def _scalar(value: object) -> str | None:
    """A field's text: strings as they are, numbers written out, nothing as ""; None for lists and objects."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _keys(row: dict) -> str:
    keys = sorted(row)
    shown = ", ".join(k[:40] for k in keys[:8])
    return (shown + ", ...") if len(keys) > 8 else (shown or "none")


def _user_id(name: str, value: object, lineno: int, problems: list[Problem]) -> str | None:
    """The record's own `id` when it is usable: short text without control characters."""
    text = _scalar(value)
    if text is None or len(text.strip()) > MAX_ID_CHARS or any(ord(c) < 32 or c == "\x7f" for c in text.strip()):
        problems.append(
            Problem(
                name,
                f"id is not usable (it must be text of at most {MAX_ID_CHARS} characters, no control characters); the content hash is used",
                lineno,
            )
        )
        return None
    return text.strip() or None


def _apply_free_date(paper: Paper, raw: str) -> None:
    """Accept ISO dates (2024-06-18), bare years, and the listing style (Jun 18, 2024)."""
    paper.date_raw = raw
    if m := re.match(r"^([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?", raw):
        paper.year = int(m.group(1))
        paper.date = _iso(paper.year, int(m.group(2)), int(m.group(3))) if m.group(3) else ""
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
    elif isinstance(value, int) and not isinstance(value, bool):
        paper.authors = value if value >= 0 else None
    elif isinstance(value, str) and value.strip():
        names = value.strip()
        if re.fullmatch(r"[0-9]{1,6}", names):
            paper.authors = int(names)
        else:
            separators = r";" if ";" in names else r",| and "  # "Last, First; Last, First"
            paper.authors = len([a for a in re.split(separators, names) if a.strip()])


# ---------------------------------------------------------------- records and ids


def _make_paper(
    name: str, position: int, title: str, abstract: str, lineno: int, problems: list[Problem]
) -> Paper | None:
    size = len(title) + len(abstract)
    if size > MAX_ENTRY_CHARS:
        problems.append(
            Problem(
                name,
                f"entry of {size:,} characters is longer than the {MAX_ENTRY_CHARS:,} an abstract may be; skipped",
                lineno,
            )
        )
        return None
    title, abstract = clean_text(title), clean_text(abstract)
    if not abstract:
        problems.append(Problem(name, "entry has an empty abstract; skipped", lineno))
        return None
    return Paper(
        paper_id=paper_id(title, abstract), title=title, abstract=abstract, sources=[name], positions=[position]
    )


class _Merger:
    """Gives each entry the id it is stored under, and folds a later sighting of a paper into the first.

    The same paper is the same text, or a shared DOI or arXiv id, since a bibliography and a metadata
    dump rarely carry exactly the same title and abstract. Per id it keeps the content hash, the file
    and which identifiers the paper has; the paper itself only where `hold` says (every id for `load`,
    the ids seen twice for `scan`), so that a streaming read holds no paper it has passed on.
    """

    def __init__(
        self,
        files: list[Path],
        stored: Mapping[str, tuple[str, Iterable[str]]] | None,
        identities: Mapping[str, str] | None,
        hold: Callable[[str], bool],
    ) -> None:
        read_now = {str(f.resolve()) for f in files}
        stored = stored or {}
        self.taken = {pid: content for pid, (content, where) in stored.items() if not read_now.intersection(where)}
        self.known = {key: pid for key, pid in (identities or {}).items() if pid in self.taken}  # key -> its paper's id
        self.elsewhere = {
            pid: Path(next(iter(where), "")).name for pid, (_, where) in stored.items() if pid in self.known.values()
        }
        self.seen: dict[str, tuple[str, str, int]] = {}  # id -> (content hash, file name, identifiers it has)
        self.held: dict[str, Paper] = {}
        self.twice: set[str] = set()
        self.hold = hold

    def add(self, paper: Paper, corpus: Corpus | None) -> tuple[str, bool]:
        """(the id `paper` is stored under, whether it is a later sighting of a paper seen before).

        `corpus` (None: say nothing) gets the problems and notices, and the count of merged entries."""
        keys = _identity(paper)
        slot = next((self.known[key] for key in keys if key in self.known), None) or self._slot(paper, corpus)
        duplicate = slot in self.seen
        if duplicate:
            self.twice.add(slot)
            keys = self._fold(slot, paper, corpus)
        else:
            paper.paper_id = slot
            self.seen[slot] = (_content(paper), paper.source, _has(paper))
            if self.hold(slot):
                self.held[slot] = paper
            if corpus is not None and slot in self.elsewhere:
                corpus.notices.append(_replaced(paper, self.elsewhere[slot]))
        for key in keys:
            self.known.setdefault(key, slot)
        if corpus is not None:
            corpus.merged += duplicate
        return slot, duplicate

    def _fold(self, slot: str, paper: Paper, corpus: Corpus | None) -> list[str]:
        """Fold `paper` into the one first seen under `slot`; return the identity keys that paper now has."""
        content, source, has = self.seen[slot]
        first = self.held.get(slot)
        if first is None:  # not held: only which identifiers the folded paper has is known
            gained = [key for key, bit in zip(_identity(paper), _bits(paper)) if not has & bit]
            self.seen[slot] = (content, source, has | _has(paper))
            return gained
        if corpus is not None:
            if content != _content(paper):
                corpus.notices.append(_kept(first, paper))  # the first one's date too: no second notice about it
            elif conflict := _other_date(first, paper):
                corpus.notices.append(conflict)
        _fold(first, paper)
        return _identity(first)

    def _slot(self, paper: Paper, corpus: Corpus | None) -> str:
        """The id to store `paper` under, by its content.

        Ids from users are not trusted to be unique: a different paper under an id already taken
        (here or in `taken`, id -> content hash) is stored as `<id>~<content hash>`, so no paper
        ever replaces another.
        """
        content = _content(paper)
        wanted = paper.paper_id

        def free(slot: str) -> bool:
            holder = self.seen[slot][0] if slot in self.seen else self.taken.get(slot, content)
            return holder == content

        slot = next(i for i in _candidate_ids(wanted, content) if free(i))
        if slot != wanted and corpus is not None:
            other = self.seen[wanted][1] if wanted in self.seen else "the index"
            message = f"entry {paper.positions[0]}: id {wanted!r} is also used by a different paper (in {other}); this one is stored as {slot!r}"
            corpus.problems.append(Problem(paper.source, message))
        return slot


def _has(paper: Paper) -> int:
    """Which identifiers a paper has, as bits (DOI 1, arXiv id 2)."""
    return (1 if paper.doi else 0) | (2 if paper.arxiv_id else 0)


def _bits(paper: Paper) -> list[int]:
    """The bit of each of `_identity(paper)`'s keys, in their order."""
    return ([1] if paper.doi else []) + ([2] if paper.arxiv_id else [])


def _identity(paper: Paper) -> list[str]:
    return identity_keys(paper.doi, paper.arxiv_id)


def identity_keys(doi: str, arxiv_id: str) -> list[str]:
    """Keys that name one paper whatever its text: the DOI, the arXiv id without its version."""
    keys = [f"doi:{doi}"] if doi else []
    return keys + ([f"arxiv:{ids.arxiv_base(arxiv_id)}"] if arxiv_id else [])


def _kept(first: Paper, paper: Paper) -> Problem:
    """Two entries of one paper (a shared DOI or arXiv id) whose texts differ: which one the index keeps."""
    keys = ", ".join(identity_keys(first.doi or paper.doi, first.arxiv_id or paper.arxiv_id))
    message = (
        f"entry {paper.positions[0]} of {paper.source} is the same paper ({keys}) as entry {first.positions[0]} "
        f"of {first.source}; kept the title, abstract and metadata of {first.source}, read first "
        f"({paper.source} adds only what it lacks)"
    )
    return Problem(paper.source, message, notice=True)


def _content(paper: Paper) -> str:
    return paper_id(paper.title, paper.abstract)


def _candidate_ids(wanted: str, content: str) -> Iterator[str]:
    """The id asked for, then ids namespaced by the content hash (numbered only for ids crafted to collide)."""
    yield wanted
    yield f"{wanted}~{content[:8]}"
    yield f"{wanted}~{content}"
    for n in itertools.count(2):
        yield f"{wanted}~{content}~{n}"


def _other_date(first: Paper, paper: Paper) -> Problem | None:
    """A second sighting of a paper dated otherwise: the first date is kept (see `_fold`), which the user
    should hear, since the files disagree and only they can say which is right."""
    if not first.date_raw or not paper.date_raw or (first.date or first.date_raw) == (paper.date or paper.date_raw):
        return None
    title = first.display_title[:80]
    message = (
        f"the same paper ({title!r}) is also in {paper.source} dated {paper.date_raw}; "
        f"kept {first.date_raw} from {first.source}, the file read first"
    )
    return Problem(first.source, message, notice=True)


_LABELS = ("doi", "arxiv_id", "pmid", "url", "venue", "categories")


def _fold(first: Paper, paper: Paper) -> None:
    """Add a second sighting's sources to the first, and metadata the first lacks."""
    first.sources += paper.sources
    first.positions += paper.positions
    first.paths += paper.paths
    for attr in ("date_raw", "date", "year", "authors", "organisation", *_LABELS):
        if not getattr(first, attr) and getattr(paper, attr):
            setattr(first, attr, getattr(paper, attr))


def paper_id(title: str, abstract: str) -> str:
    """Content hash of title + abstract: the same paper gets the same id in every file and run."""
    key = _normalise(title) + "\x1f" + _normalise(abstract)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _normalise(s: str) -> str:
    """Lower-case words joined by single spaces. ASCII text (most abstracts) goes through a byte
    table at about half the regex's cost (which was a third of parsing time); the result is the same."""
    if s.isascii():
        return " ".join(s.lower().encode().translate(_ASCII_NON_WORD).decode().split())
    return _NON_WORD.sub(" ", s.lower()).strip()


_NON_WORD = re.compile(r"\W+")
_ASCII_NON_WORD = bytes(c if chr(c).isalnum() and c < 128 or c == ord("_") else ord(" ") for c in range(256))


_GREEK = {
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "delta": "δ",
    "epsilon": "ε",
    "varepsilon": "ε",
    "theta": "θ",
    "lambda": "λ",
    "mu": "μ",
    "pi": "π",
    "sigma": "σ",
    "tau": "τ",
    "phi": "φ",
    "omega": "ω",
    "times": "×",
    "cdot": "·",
    "leq": "≤",
    "geq": "≥",
    "approx": "≈",
}
_ACCENTS = {("'", "e"): "é", ("'", "a"): "á", ('"', "i"): "ï", ('"', "o"): "ö", ('"', "u"): "ü", ("`", "e"): "è"}


_MARKUP = re.compile(r"[\\$\[{}~]")  # a character that one of `_undo_markup`'s steps looks for
_SPACES = re.compile(r"\s+")


def clean_text(s: str) -> str:
    """Undo the scraping damage that hurts reading and matching: LaTeX remnants, e-mail obfuscation.

    Most abstracts hold no markup character; for them only the spacing steps change anything, and
    skipping the others saves a fifth of the time a large corpus takes to read.
    """
    if _MARKUP.search(s):
        return _undo_markup(s)
    return _SPACES.sub(" ", s.replace(" %", "%")).strip()


def _undo_markup(s: str) -> str:
    s = s.replace("[email\xa0protected]", "[…]").replace("[email protected]", "[…]")
    s = re.sub(r"\\([`'\"])\{?([a-zA-Z])\}?", lambda m: _ACCENTS.get((m.group(1), m.group(2)), m.group(2)), s)
    s = re.sub(r"\\(url|footnote|textbf|textit|emph|mathrm|text|mathbf)\{", " ", s)
    s = re.sub(r"\\color\[[^\]\\]*\]\{[^{}]*\}", "", s)  # no backslash inside: linear on hostile input
    s = re.sub(r"\\([a-zA-Z]+)", lambda m: _GREEK.get(m.group(1), m.group(1)), s)
    s = re.sub(
        r"\$([^$]{1,40})\$", lambda m: m.group(1) if re.search(r"[_^αβγδεθλμπστφω×·]", m.group(1)) else m.group(0), s
    )
    s = re.sub(r"\{(?:it|bf|em) ([^{}]*)\}", r"\1", s)
    s = s.replace("\\%", "%").replace("\\(", "").replace("\\)", "").replace("\\", "")
    s = re.sub(r"(?<=[\w.)])~(?=[\w(%])", " ", s).replace(" %", "%")
    s = re.sub(r"([_^])\{([^{}]*)\}", r"\1(\2)", s)
    s = s.replace("{", "").replace("}", "")
    return _SPACES.sub(" ", s).strip()
