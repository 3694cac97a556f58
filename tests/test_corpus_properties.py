"""Property tests for `rag.corpus`: no input makes it raise, a good entry survives any garbage
around it, and the same bytes always give the same papers.

Examples are derandomized (a fixed seed), so every run checks the same inputs and a failure
reproduces; the budget keeps this file well under 30 s on two cores.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag import corpus
from rag.corpus import paper_id, read_file

TESTS = Path(__file__).resolve().parent
GOOD = TESTS / "fixtures" / "corpus" / "good"
SUFFIXES = [".txt", ".jsonl", ".json", ".csv"]

BUDGET = settings(
    max_examples=80,
    deadline=2000,  # ms per example: generous for a shared machine, still catches a pathological slowdown
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Pieces of the formats the parser knows, so random text reaches its branches, not only its first check.
FRAGMENTS = [
    "Abstract:",
    "\n",
    "\r\n",
    "\r",
    "\n\n",
    "·",
    "• 3 authors",
    "Jun 18, 2024",
    "Oct 28",
    "Sep 26 4",
    "nvidia NVIDIA",
    "Subscribe",
    "new",
    "{",
    "}",
    "[",
    "]",
    '"',
    ",",
    ";",
    "\t",
    ":",
    "\\",
    '\\"',
    '{"title": "T", "abstract": "',
    '"abstract"',
    '"id": "X"',
    "title,abstract\n",
    "id,title,abstract\r\n",
    "\ufeff",
    "\x00",
    "\u2028",
    "\x85",
    "$\\sigma$",
    "\\color[",
    "{it ",
    "~",
    "9" * 40,
    "2024-02-30",
    "[" * 3000,
]
hostile_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=40)), max_size=40).map("".join)

# A well-formed entry: words of letters, so no layout rule (dates, boilerplate, prefixes) applies,
# separated by any whitespace, which cleanup turns into one space. U+2028 and U+0085 are line
# breaks to str.splitlines() but legal inside a JSON string, a CSV field or a scraped line.
SPACES = [" ", "  ", "\t", "\u00a0", "\u2028", "\u2029", "\x85"]
word = st.text(st.characters(categories=("L",)), min_size=3, max_size=10)


def spaced(min_words: int, max_words: int, end: str = "") -> st.SearchStrategy[tuple[str, str]]:
    """(raw text as written, text as it must be read back)."""
    pairs = st.lists(st.tuples(word, st.sampled_from(SPACES)), min_size=min_words, max_size=max_words)
    return pairs.map(
        lambda ps: ("".join(w + s for w, s in ps[:-1]) + ps[-1][0] + end, " ".join(w for w, _ in ps) + end)
    )


titles = spaced(3, 8)
abstracts = spaced(40, 80, end=".")
user_ids = st.none() | st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)

# Garbage around it: format-like text without NUL (a NUL in the first 8 KB rightly makes the file binary).
garbage_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=80)
garbage_line = st.lists(
    st.one_of(st.sampled_from([f for f in FRAGMENTS if "\x00" not in f]), garbage_text), max_size=4
).map("".join)
garbage_lines = st.lists(garbage_line, max_size=6)
garbage_cells = st.lists(st.lists(garbage_line, max_size=4), max_size=6)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def summary(papers: list, problems: list) -> tuple:
    return [(p.paper_id, p.title, p.abstract, p.date, p.authors, p.positions) for p in papers], [
        str(p) for p in problems
    ]


# ---------------------------------------------------------------- never raises


@BUDGET
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=3000))
def test_read_file_never_raises_on_arbitrary_bytes(workdir, suffix, data):
    papers, problems = read_file(write(workdir, "bytes" + suffix, data))
    assert all(p.abstract for p in papers)
    assert all(str(p) for p in problems)


@BUDGET
@given(suffix=st.sampled_from(SUFFIXES), text=hostile_text)
def test_read_file_never_raises_on_format_like_text(workdir, suffix, text):
    papers, problems = read_file(write(workdir, "text" + suffix, text.encode("utf-8", "surrogatepass")))
    assert all(p.abstract and p.paper_id for p in papers)
    assert len({p.positions[0] for p in papers}) == len(papers)


@BUDGET
@given(suffix=st.sampled_from(SUFFIXES), text=hostile_text)
def test_a_hostile_file_never_costs_another_files_papers(workdir, suffix, text):
    hostile = write(workdir, "000_hostile" + suffix, text.encode("utf-8", "surrogatepass"))
    loaded = corpus.load([hostile, GOOD / "001_listing.txt"])
    titles = {p.title for p in loaded.papers if "001_listing.txt" in p.sources}
    assert len(titles) == 3
    assert len({p.paper_id for p in loaded.papers}) == len(loaded.papers)


# ---------------------------------------------------------------- a good entry survives garbage


def expected(title: tuple[str, str], abstract: tuple[str, str], user_id: str | None) -> tuple[str, str, str]:
    return (user_id or paper_id(title[1], abstract[1]), title[1], abstract[1])


def found(path: Path) -> list[tuple[str, str, str]]:
    return [(p.paper_id, p.title, p.abstract) for p in read_file(path)[0]]


@BUDGET
@given(
    before=garbage_lines,
    after=garbage_lines,
    title=titles,
    abstract=abstracts,
    user_id=user_ids,
    suffix=st.sampled_from([".jsonl", ".json"]),
)
def test_jsonl_entry_among_garbage_lines_is_never_lost(workdir, before, after, title, abstract, user_id, suffix):
    record = {"title": title[0], "abstract": abstract[0]} | ({"id": user_id} if user_id else {})
    text = "\n".join(before + [json.dumps(record, ensure_ascii=False)] + after)
    assert expected(title, abstract, user_id) in found(write(workdir, "entry" + suffix, text.encode()))


@BUDGET
@given(before=garbage_cells, after=garbage_cells, title=titles, abstract=abstracts, user_id=user_ids)
def test_csv_entry_among_garbage_rows_is_never_lost(workdir, before, after, title, abstract, user_id):
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["id", "title", "abstract"], *before, [user_id or "", title[0], abstract[0]], *after])
    assert expected(title, abstract, user_id) in found(write(workdir, "entry.csv", buffer.getvalue().encode()))


@BUDGET
@given(before=garbage_lines, after=garbage_lines, title=titles, abstract=abstracts, untitled=st.booleans())
def test_text_entry_among_garbage_paragraphs_is_never_lost(workdir, before, after, title, abstract, untitled):
    entry = f"Abstract:{abstract[0]}" if untitled else f"{title[0]}\n{abstract[0]}"
    text = "\n\n".join(before + [entry] + after)
    want = expected(("", "") if untitled else title, abstract, None)
    assert want in found(write(workdir, "entry.txt", text.encode()))


# ---------------------------------------------------------------- deterministic


@BUDGET
@given(suffix=st.sampled_from(SUFFIXES), text=hostile_text)
def test_parsing_the_same_bytes_twice_gives_the_same_result(workdir, suffix, text):
    path = write(workdir, "twice" + suffix, text.encode("utf-8", "surrogatepass"))
    assert summary(*read_file(path)) == summary(*read_file(path))


def test_ids_and_problems_do_not_depend_on_the_hash_seed(tmp_path):
    """Two interpreters with different PYTHONHASHSEED must give the same papers, ids and problems."""
    clash = tmp_path / "clash.jsonl"
    clash.write_text(
        "".join(
            json.dumps({"id": "user-0001", "title": f"Clash {i}", "abstract": f"Paper number {i} reuses an id."}) + "\n"
            for i in range(5)
        )
    )
    script = (
        "import json, sys; from pathlib import Path; from rag import corpus\n"
        "c = corpus.load([Path(a) for a in sys.argv[1:]])\n"
        "print(json.dumps([[(p.paper_id, p.sources) for p in c.papers], [str(p) for p in c.problems], sorted(c.damaged_paths)]))\n"
    )
    outputs = []
    for seed in ("1", "2"):
        env = os.environ | {"PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", script, str(GOOD), str(clash)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outputs.append(json.loads(run.stdout))
    assert outputs[0] == outputs[1]
    ids = [pid for pid, _ in outputs[0][0] if pid.startswith("user-0001")]
    assert len(ids) == len(set(ids)) == 6  # one keeps the id, five (four clashes + the good file's) are renamed
    assert len([m for m in outputs[0][1] if "is also used by a different paper" in m]) == 5


# Text without markup characters (the shortcut's case), spaced and with percent signs, or with any fragment.
plain_text = st.lists(
    st.sampled_from([" %", "%", " ", "  ", "\t", "\u00a0", "\x85", "\n", "word", "9"]), max_size=30
).map("".join)
markup_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS + [" %", "[email protected]", "\\'e", "_{x}"]), st.text(max_size=20)),
    max_size=30,
).map("".join)


@BUDGET
@given(plain_text | markup_text)
def test_clean_text_skips_only_steps_that_change_nothing(text: str) -> None:
    """The shortcut for text without markup characters gives what every cleaning step would."""
    assert corpus.clean_text(text) == corpus._undo_markup(text)


@BUDGET
@given(st.text(alphabet=st.characters(max_codepoint=127)) | st.text())
def test_paper_ids_do_not_depend_on_the_ascii_fast_path(text: str) -> None:
    """The ASCII byte-table path of `_normalise` gives what the Unicode regex gives, so ids stay the same."""
    assert corpus._normalise(text) == re.sub(r"\W+", " ", text.lower()).strip()
