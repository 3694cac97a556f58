"""Tests for `rag.corpus`: the three scraped layouts, JSONL and CSV, bad and hostile input, text
cleanup, stable paper ids that never collide, damaged files, and the real default corpus.

Fixtures live in tests/fixtures/corpus/: `good/` holds one small file per format (loaded
together as a folder), `edge/` holds files that exercise a single oddity each.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from rag import corpus
from rag.corpus import CorpusError, clean_text, paper_id, read_file
from rag.types import Corpus, Paper

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures" / "corpus"
GOOD = FIXTURES / "good"
EDGE = FIXTURES / "edge"
REAL = TESTS.parent / "data" / "corpus"

CARBON_TITLE = "Carbon Accounting for Large Language Model Training"
CARBON_ID = "c86d9b4d27758ad2"  # pinned: see test_paper_id_is_pinned_across_runs

# A made-up abstract long enough for `_looks_like_abstract` (> 150 chars, ends with '.').
ABSTRACT = (
    "We describe a small experiment on a made-up benchmark and report that the proposed method "
    "improves accuracy over a strong baseline while using less memory and less training time overall."
)


def by_title(papers: list[Paper]) -> dict[str, Paper]:
    return {p.title: p for p in papers}


def load_or_fail(paths: list[Path], what: str) -> Corpus:
    """Load, turning an exception into a failed assertion: the module promises never to raise for a bad file."""
    try:
        return corpus.load(paths)
    except Exception as e:  # noqa: BLE001 - any exception here is the bug being reported
        pytest.fail(
            f"corpus.load raised {type(e).__name__}({e}) for {what}; a bad input must give a Problem (or still load), never an exception"
        )


def listing(*blocks: str) -> str:
    """A layout-3 page: the scraped header, then the given blocks separated by blank lines."""
    header = [
        "new",
        "Get trending papers in your email inbox!",
        "Subscribe",
        "byAK and the research community",
        "Oct 28",
    ]
    return "\n\n".join(header + list(blocks)) + "\n"


@pytest.fixture(scope="module")
def good() -> Corpus:
    return corpus.load([GOOD])


@pytest.fixture(scope="module")
def good_papers(good: Corpus) -> dict[str, Paper]:
    return by_title(good.papers)


# ---------------------------------------------------------------- layout 1: `Abstract:` lines


def test_abstract_lines_become_untitled_papers_in_file_order():
    papers, problems = read_file(GOOD / "000_abstracts.txt")
    assert problems == []
    assert [p.title for p in papers] == ["", "", ""]
    assert [p.positions for p in papers] == [[1], [2], [3]]
    assert [p.abstract.split()[:3] for p in papers] == [
        ["We", "study", "how"],
        ["We", "propose", "σ-Mix,"],
        ["Serving", "mixture-of-experts", "models"],
    ]
    assert not any("Abstract:" in p.abstract for p in papers)


def test_stray_line_in_abstract_file_is_one_problem_with_line_number(tmp_path):
    f = tmp_path / "stray.txt"
    f.write_text(f"Abstract:{ABSTRACT}\nthis line is not an abstract\nAbstract:Another {ABSTRACT}\n")
    papers, problems = read_file(f)
    assert len(papers) == 2
    assert [(p.file, p.line) for p in problems] == [("stray.txt", 2)]
    assert "title with no abstract" in problems[0].message


def test_abstracts_from_file_are_cleaned():
    """LaTeX remnants and the Cloudflare e-mail placeholder are cleaned at load time, not only by clean_text."""
    latex, mail = read_file(GOOD / "000_abstracts.txt")[0][1:]
    assert "σ-Mix" in latex.abstract
    assert "Fréchet inception distance by 6.25% relative" in latex.abstract
    assert "cost of ε = 0.67 it" in latex.abstract
    assert "\\" not in latex.abstract and "$" not in latex.abstract
    assert "sent to […] and" in mail.abstract
    assert "protected" not in mail.abstract


# ---------------------------------------------------------------- layout 2: title + abstract listing


def test_listing_skips_page_header_and_pairs_titles_with_abstracts():
    papers, problems = read_file(GOOD / "001_listing.txt")
    assert problems == []
    assert [p.title for p in papers] == [
        "Scaling Data-Parallel Training to Ten Thousand Accelerators",
        CARBON_TITLE,
        "Cross-Lingual Transfer for Low-Resource Language Models",
    ]
    assert papers[0].abstract.startswith("We present the design and operation")
    assert [p.positions for p in papers] == [[1], [2], [3]]
    # No metadata in this layout; the page date "Mar 11" must not leak into a paper.
    assert {(p.date_raw, p.year, p.authors, p.organisation) for p in papers} == {("", None, None, "")}


# ---------------------------------------------------------------- layout 3: listing with metadata blocks


def test_metadata_block_with_author_count_and_full_date(good_papers):
    p = good_papers["Masked Decoders Revisited for Encoder Pretraining"]
    assert (p.authors, p.organisation) == (2, "")
    assert (p.date_raw, p.date, p.year) == ("Jun 18, 2024", "2024-06-18", 2024)


def test_run_of_papers_metadata_belongs_to_last_paper_only(good_papers):
    first = good_papers["First Paper of a Run Without Metadata"]
    second = good_papers["Second Paper of the Same Run"]
    third = good_papers["Third Paper Closing the Run"]
    for p in (first, second):
        assert (p.authors, p.date_raw, p.date, p.year, p.organisation) == (None, "", "", None, "")
    assert third.authors == 7
    assert (third.date_raw, third.date, third.year) == ("Oct 30, 2024", "2024-10-30", 2024)  # upvotes "5" dropped


def test_organisation_line_and_date_without_year_with_upvotes(good_papers):
    p = good_papers["Front-Loading Curriculum Data for Reasoning Models"]
    assert p.organisation == "NVIDIA"  # from "nvidia NVIDIA"
    assert p.authors is None
    assert (p.date_raw, p.date, p.year) == ("Sep 26", "", None)  # upvotes "4" dropped, no year -> no ISO date


def test_date_without_year_or_upvotes_and_single_author():
    papers, problems = read_file(GOOD / "002_listing_meta.txt")
    assert problems == []
    assert len(papers) == 6
    last = papers[-1]
    assert last.title == CARBON_TITLE
    assert (last.authors, last.date_raw, last.date, last.year) == (1, "Nov 8", "", None)


def test_organisation_with_multi_word_display_name(tmp_path):
    """The handle before a two-word display name ("google Google DeepMind") is dropped, not kept."""
    f = tmp_path / "org.txt"
    f.write_text(listing("Some Title", ABSTRACT, "google Google DeepMind\n·\nJun 18, 2024"))
    (paper,), problems = read_file(f)
    assert problems == []
    assert paper.organisation == "Google DeepMind", (
        f"handle 'google' should be dropped from 'google Google DeepMind', got {paper.organisation!r}"
    )


# ---------------------------------------------------------------- titles with no abstract


def test_title_with_no_abstract_at_end_of_file_is_reported():
    papers, problems = read_file(EDGE / "orphan_title_end.txt")
    assert [p.title for p in papers] == ["A Complete Paper Before the Orphan"]
    assert [(p.file, p.line) for p in problems] == [("orphan_title_end.txt", 11)]
    assert "title with no abstract" in problems[0].message


def test_title_with_no_abstract_before_metadata_is_reported():
    papers, problems = read_file(EDGE / "orphan_title_meta.txt")
    assert [p.title for p in papers] == ["A Complete Paper With Its Own Metadata"]
    assert [(p.file, p.line) for p in problems] == [("orphan_title_meta.txt", 15)]
    assert "title with no abstract" in problems[0].message


def test_metadata_of_skipped_title_does_not_overwrite_previous_paper():
    """The metadata block of a title with no abstract is dropped with it, never applied to the paper before."""
    (paper,), _ = read_file(EDGE / "orphan_title_meta.txt")
    assert (paper.authors, paper.date_raw) == (3, "Jun 18, 2024"), (
        f"previous paper's own metadata (3 authors, Jun 18, 2024) was overwritten by the skipped "
        f"title's block: got ({paper.authors}, {paper.date_raw!r})"
    )


def test_title_with_no_abstract_in_plain_listing_does_not_swallow_next_title():
    """Without a metadata block, a title with no abstract is skipped, not paired with the next title as its abstract."""
    papers, problems = read_file(EDGE / "orphan_title_listing.txt")
    pairs = [(p.title, p.abstract[:30]) for p in papers]
    assert pairs == [
        ("A Complete Paper Before the Orphan", "This complete abstract comes f"),
        ("An Ordinary Paper After the Orphan", "This ordinary abstract follows"),
    ], f"orphan title mis-paired: {pairs}"
    assert [(p.file, p.line) for p in problems] == [("orphan_title_listing.txt", 11)]


# ---------------------------------------------------------------- merging across files


def test_folder_is_read_in_sorted_order_with_counts_per_file(good):
    assert list(good.per_file.items()) == [
        ("000_abstracts.txt", 3),
        ("001_listing.txt", 3),
        ("002_listing_meta.txt", 6),
        ("003_papers.jsonl", 3),
        ("004_papers.csv", 3),
    ]
    assert good.merged == 1
    assert len(good.papers) == 18 - 1


def test_same_paper_in_two_files_is_one_paper_with_both_sources(good):
    carbon = [p for p in good.papers if p.title == CARBON_TITLE]
    assert len(carbon) == 1
    assert carbon[0].sources == ["001_listing.txt", "002_listing_meta.txt"]
    assert carbon[0].positions == [2, 6]
    assert carbon[0].source == "001_listing.txt"


def test_merged_paper_takes_metadata_missing_from_first_sighting(good_papers):
    """001 has no metadata for the paper, 002 does: the merged record should carry 002's."""
    p = good_papers[CARBON_TITLE]
    assert (p.authors, p.date_raw) == (1, "Nov 8")


# ---------------------------------------------------------------- JSONL and CSV


def test_jsonl_fields_and_formats():
    papers, _ = read_file(GOOD / "003_papers.jsonl")
    got = [(p.paper_id == "user-0001", p.authors, p.date_raw, p.date, p.year) for p in papers]
    assert got == [
        (True, 3, "2024-06-18", "2024-06-18", 2024),  # authors as int, ISO date, own id
        (False, 2, "2023", "", 2023),  # authors as list, bare year
        (False, 3, "Jun 18, 2024", "2024-06-18", 2024),  # authors "A; B; C", listing-style date
    ]
    assert papers[1].title == "Tokenizer-Free Language Modelling with Byte Patches"


def test_jsonl_line_that_is_not_json_is_one_problem_and_other_lines_load():
    papers, problems = read_file(GOOD / "003_papers.jsonl")
    assert len(papers) == 3
    assert [p.positions for p in papers] == [[1], [2], [3]]
    assert [(p.file, p.line) for p in problems] == [("003_papers.jsonl", 3)]
    assert str(problems[0]).startswith("003_papers.jsonl:3: not valid JSON")


def test_csv_fields_and_formats():
    papers, problems = read_file(GOOD / "004_papers.csv")
    assert problems == []
    got = [(p.paper_id == "csv-0001", p.authors, p.date, p.year) for p in papers]
    assert got == [
        (True, 4, "2024-06-18", 2024),
        (False, 3, "", 2022),  # "Ada Lovelace; Alan Turing; Grace Hopper"
        (False, 2, "2024-06-18", 2024),  # "Ada Lovelace and Alan Turing", "Jun 18, 2024"
    ]
    assert papers[0].abstract.startswith("We adapt block-sparse attention to streaming speech recognition, keeping")


def test_authors_in_last_first_form_are_counted_once(tmp_path):
    """ "Last, First; Last, First" (Zotero style) counts each author once: a semicolon list is not split on commas."""
    f = tmp_path / "zotero.jsonl"
    f.write_text(json.dumps({"title": "T", "abstract": ABSTRACT, "authors": "Lovelace, Ada; Turing, Alan"}) + "\n")
    (paper,), _ = read_file(f)
    assert paper.authors == 2, f"'Lovelace, Ada; Turing, Alan' is two authors, got {paper.authors}"


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.txt", b"\n   \n\t\n", "empty file"),
        ("binary.txt", bytes(range(256)) * 8, "binary file"),
    ],
    ids=["empty", "whitespace-only", "binary"],
)
def test_unreadable_file_is_one_problem_and_other_files_still_load(tmp_path, name, content, message):
    bad = tmp_path / name
    bad.write_bytes(content)
    c = corpus.load([bad, GOOD / "001_listing.txt"])
    assert [(p.file, p.line) for p in c.problems] == [(name, None)]
    assert message in c.problems[0].message
    assert c.per_file == {name: 0, "001_listing.txt": 3}
    assert len(c.papers) == 3


def test_file_holding_only_a_bom_is_reported_as_empty(tmp_path):
    """A file holding only a UTF-8 BOM (or other non-ASCII whitespace) is an empty file, reported, not a crash."""
    bad = tmp_path / "bom.txt"
    bad.write_bytes(b"\xef\xbb\xbf\n")
    c = load_or_fail([bad, GOOD / "001_listing.txt"], "a file holding only a UTF-8 BOM")
    assert [(p.file, p.line) for p in c.problems] == [("bom.txt", None)]
    assert "empty file" in c.problems[0].message
    assert len(c.papers) == 3


def test_csv_without_abstract_column_is_one_problem_naming_its_columns():
    c = corpus.load([EDGE / "no_abstract.csv", GOOD / "001_listing.txt"])
    assert [(p.file, p.line) for p in c.problems] == [("no_abstract.csv", None)]
    assert "no 'abstract' column (columns: title, date, authors)" in c.problems[0].message
    assert len(c.papers) == 3


NOTHING_READ = "no paper found in this file"
TEN_MB = 10 * 1024 * 1024


@pytest.mark.parametrize("name", ["huge.txt", "huge.jsonl"])
def test_ten_megabyte_line_is_one_problem_and_other_files_still_load(tmp_path, name):
    bad = tmp_path / name
    if name.endswith(".jsonl"):
        bad.write_text(json.dumps({"title": "Huge", "abstract": "x" * TEN_MB}))
    else:
        bad.write_text("word " * (TEN_MB // 5))
    c = corpus.load([bad, GOOD / "001_listing.txt"])
    assert [(p.file, p.line) for p in c.problems] == [(name, 1), (name, None)]
    assert "longer than the 100,000" in c.problems[0].message
    assert NOTHING_READ in c.problems[1].message
    assert len(c.papers) == 3


def test_ten_megabyte_csv_row_is_one_problem(tmp_path):
    """A field beyond csv's default field_size_limit (131,072) is one problem for its row, not a crash of load."""
    bad = tmp_path / "huge.csv"
    bad.write_text("title,abstract\nHuge," + "x" * TEN_MB + "\n")
    c = load_or_fail([bad, GOOD / "001_listing.txt"], "a CSV with a 10 MB abstract field")
    assert [(p.file, p.line) for p in c.problems] == [("huge.csv", 2), ("huge.csv", None)]
    assert len(c.papers) == 3


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("feb30.jsonl", json.dumps({"title": "T", "abstract": ABSTRACT, "date": "Feb 30, 2024"}) + "\n"),
        ("feb30.txt", listing("Some Title", ABSTRACT, "  • 2 authors\n·\nFeb 30, 2024")),
    ],
    ids=["jsonl", "listing"],
)
def test_impossible_calendar_date_does_not_crash_load(tmp_path, name, content):
    """An impossible date ("Feb 30, 2024") leaves the paper undated; it still loads."""
    f = tmp_path / name
    f.write_text(content)
    c = load_or_fail([f], "the date 'Feb 30, 2024'")
    assert len(c.papers) == 1
    assert c.papers[0].date == ""


def test_missing_path_raises_corpus_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "papers.txt"
    with pytest.raises(CorpusError, match=re.escape(str(missing))):
        corpus.load([GOOD / "001_listing.txt", missing])


def test_folder_without_corpus_files_raises_corpus_error(tmp_path):
    (tmp_path / "notes.md").write_text("# not a corpus file\n")
    (tmp_path / "figure.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(CorpusError, match=r"no \.txt, \.jsonl, \.json, \.csv, \.bib, \.ris or \.nbib files") as err:
        corpus.load([tmp_path])
    assert str(tmp_path) in str(err.value)


# ---------------------------------------------------------------- clean_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (r"we develop $\sigma$-VAE to", "we develop σ-VAE to"),
        (r"available at \url{https://aka.ms/x}.", "available at https://aka.ms/x."),
        (r"this (6.25~\% of the k-space) before", "this (6.25% of the k-space) before"),
        (r"the Fr\'echet inception distance", "the Fréchet inception distance"),
        (r"privacy cost {\epsilon} = 0.67, significant", "privacy cost ε = 0.67, significant"),
        (r"achieves a \(7\times\) speedup", "achieves a 7× speedup"),
        ("write to [email protected] today", "write to […] today"),
        ("write to [email\xa0protected] today", "write to […] today"),
        ("costs $20 and $7,800 in total", "costs $20 and $7,800 in total"),  # money, not maths
        ("  extra   spaces\nand newlines  ", "extra spaces and newlines"),
    ],
)
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


# ---------------------------------------------------------------- paper ids


def test_paper_id_is_the_same_in_every_file():
    in_listing = by_title(read_file(GOOD / "001_listing.txt")[0])[CARBON_TITLE]
    in_meta = by_title(read_file(GOOD / "002_listing_meta.txt")[0])[CARBON_TITLE]
    assert in_listing.paper_id == in_meta.paper_id == CARBON_ID


def test_paper_id_is_pinned_across_runs(good_papers):
    """A fixed value catches any change to the hash (e.g. Python's salted hash()), which would re-embed every paper."""
    p = good_papers[CARBON_TITLE]
    assert paper_id(p.title, p.abstract) == CARBON_ID
    assert [q.paper_id for q in corpus.load([GOOD]).papers] == [q.paper_id for q in corpus.load([GOOD]).papers]


def test_paper_id_changes_with_abstract_but_not_with_case_or_spacing():
    base = paper_id("A Title", ABSTRACT)
    assert paper_id("A Title", ABSTRACT + " One more sentence.") != base
    assert paper_id("A Title", "") != paper_id("", ABSTRACT)
    assert paper_id("a  title", ABSTRACT.upper()) == base


def test_user_supplied_id_is_kept(good):
    ids = {p.paper_id for p in good.papers}
    assert {"user-0001", "csv-0001"} <= ids


# ---------------------------------------------------------------- display_title


def test_display_title_of_untitled_paper_is_the_abstracts_opening_words():
    untitled = read_file(GOOD / "000_abstracts.txt")[0][0]
    assert untitled.title == ""
    assert untitled.display_title == "We study how the order in which pretraining data is ..."


def test_display_title_prefers_the_real_title_and_skips_ellipsis_for_short_text():
    assert Paper("id", "Real Title", ABSTRACT).display_title == "Real Title"
    assert Paper("id", "", "Only five words in here.").display_title == "Only five words in here."


# ---------------------------------------------------------------- the real default corpus


@pytest.fixture(scope="module")
def real() -> Corpus:
    return corpus.load([REAL])


@pytest.mark.slow
def test_real_corpus_counts(real):
    """Counts checked by hand with grep: abstract lines in 000/004, title+abstract pairs in 001-003."""
    assert sorted(real.per_file) == list(real.per_file)
    assert list(real.per_file.values()) == [10, 101, 129, 57, 10]
    assert real.problems == []
    assert real.merged == 2
    assert len(real.papers) == 305 == len({p.paper_id for p in real.papers})


@pytest.mark.slow
def test_real_corpus_known_papers(real):
    papers = by_title(real.papers)
    coat = papers["COAT: Compressing Optimizer states and Activation for Memory-Efficient FP8 Training"]
    assert coat.abstract.startswith("FP8 training has emerged as a promising method")
    green = papers[
        "Green AI: Exploring Carbon Footprints, Mitigation Strategies, and Trade Offs in Large Language Model Training"
    ]
    assert green.sources == ["001_f03929b4b116ac50.txt", "003_48a1b423d80b1307.txt"]
    assert green.positions == [14, 41]
    nvidia = papers["Front-Loading Reasoning: The Synergy between Pretraining and Post-Training Data"]
    assert (nvidia.organisation, nvidia.date_raw, nvidia.year) == ("NVIDIA", "Sep 26", None)
    drbert = papers["DrBERT: Unveiling the Potential of Masked Language Modeling Decoder in BERT pretraining"]
    assert (drbert.authors, drbert.date) == (2, "2024-01-28")


@pytest.mark.slow
def test_real_corpus_is_clean(real):
    """No LaTeX backslash or e-mail placeholder survives cleanup anywhere in the real corpus."""
    texts = [t for p in real.papers for t in (p.title, p.abstract)]
    assert not [t for t in texts if "\\" in t]
    assert not [t for t in texts if "protected]" in t]
    assert all(p.abstract for p in real.papers)


# ---------------------------------------------------------------- hostile input: JSON


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_deeply_nested_json_line_is_one_problem_and_other_files_still_load(tmp_path):
    """json.loads raises RecursionError (not JSONDecodeError) for 100,000 nested arrays."""
    deep = "[" * 100_000 + "]" * 100_000
    bad = tmp_path / "deep.jsonl"
    bad.write_text(deep + "\n" + jsonl({"title": "Kept", "abstract": ABSTRACT}))
    array = tmp_path / "deep.json"
    array.write_text(deep)
    c = load_or_fail([bad, array, GOOD / "001_listing.txt"], "a JSON line nested 100,000 deep")
    assert [(p.file, p.line) for p in c.problems] == [("deep.json", None), ("deep.jsonl", 1)]
    assert all("nested too deeply" in p.message for p in c.problems)
    assert sorted(c.per_file.items()) == [("001_listing.txt", 3), ("deep.json", 0), ("deep.jsonl", 1)]


def test_number_too_long_for_python_is_one_problem(tmp_path):
    """Python refuses to parse integers of more than 4,300 digits with a ValueError."""
    f = tmp_path / "digits.jsonl"
    f.write_text('{"title": "T", "abstract": "A", "authors": ' + "9" * 5000 + "}\n" + jsonl({"abstract": ABSTRACT}))
    papers, problems = read_file(f)
    assert [p.abstract for p in papers] == [ABSTRACT]
    assert [(p.line, p.message) for p in problems] == [(1, "not valid JSON (a number with too many digits); skipped")]


@pytest.mark.parametrize(
    ("authors", "expected"),
    [("²", 1), ("9" * 5000, 1), (7, 7), (-2, None), (True, None), ({"n": 3}, None), ("Ada; Alan", 2)],
    ids=["superscript-digit", "5000-digits", "int", "negative", "bool", "object", "names"],
)
def test_authors_of_any_shape_never_crash(tmp_path, authors, expected):
    """`'²'.isdigit()` is True but int('²') raises; a 5,000-digit string is over Python's int limit."""
    f = tmp_path / "authors.jsonl"
    f.write_text(jsonl({"title": "T", "abstract": ABSTRACT, "authors": authors}))
    (paper,), problems = read_file(f)
    assert (paper.authors, problems) == (expected, [])


def test_fields_that_are_not_text_are_reported_and_the_paper_kept_when_it_can_be(tmp_path):
    f = tmp_path / "shapes.jsonl"
    f.write_text(
        jsonl(
            {"title": ["a", "list"], "abstract": ABSTRACT, "id": {"an": "object"}, "date": ["2024"]},
            {"title": "Abstract Is A List", "abstract": [ABSTRACT]},
            {"Title": "Upper Case Keys", " ABSTRACT ": "Keys are matched without case or spaces."},
            {"title": 1984, "abstract": "A title that is a number.", "id": 42, "date": 2023},
        )
    )
    papers, problems = read_file(f)
    assert [(p.title, p.paper_id, p.year) for p in papers] == [
        ("", paper_id("", ABSTRACT), None),
        ("Upper Case Keys", paper_id("Upper Case Keys", "Keys are matched without case or spaces."), None),
        ("1984", "42", 2023),
    ]
    assert [(p.line, p.message.split(";")[0]) for p in problems] == [
        (1, "record has a 'title' that is not text"),
        (1, "id is not usable (it must be text of at most 200 characters, no control characters)"),
        (2, "record has an 'abstract' that is not text"),
    ]


def test_json_file_may_hold_one_object_or_json_lines(tmp_path):
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"title": "Pretty Printed", "abstract": ABSTRACT}, indent=2))
    lines = tmp_path / "lines.json"
    lines.write_text(jsonl({"title": "First", "abstract": ABSTRACT}, {"title": "Second", "abstract": ABSTRACT}))
    assert [(p.title, p.positions) for p in read_file(one)[0]] == [("Pretty Printed", [1])]
    assert [p.title for p in read_file(lines)[0]] == ["First", "Second"]


def test_line_separator_inside_a_json_string_does_not_split_the_record(tmp_path):
    """U+2028 is legal unescaped inside a JSON string; str.splitlines() would cut the record in two."""
    f = tmp_path / "u2028.jsonl"
    f.write_text(
        json.dumps({"title": "T", "abstract": "First part\u2028second part."}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    (paper,), problems = read_file(f)
    assert (paper.abstract, problems) == ("First part second part.", [])


# ---------------------------------------------------------------- hostile input: files with no abstract


@pytest.mark.parametrize(
    ("name", "line_problems"),
    [("metadata_only.txt", []), ("metadata_only.jsonl", [1, 2])],
)
def test_file_of_metadata_only_is_skipped_with_a_problem_saying_so(name, line_problems):
    c = corpus.load([EDGE / name, GOOD / "001_listing.txt"])
    assert [p.line for p in c.problems] == line_problems + [None]
    assert c.problems[-1].file == name
    assert "no paper found in this file" in c.problems[-1].message
    assert c.per_file[name] == 0 and len(c.papers) == 3
    assert str((EDGE / name).resolve()) in c.unread_paths


# ---------------------------------------------------------------- hostile input: bytes and encodings


def test_nul_bytes_after_the_first_8_kb_drop_only_their_lines(tmp_path):
    filler = "".join(f"Filler Title {i}\n{ABSTRACT}\n" for i in range(60))  # > 8 KB of good text
    f = tmp_path / "tail.txt"
    f.write_bytes(f"{filler}Binary Debris\x00\x00\x01\nKept After Debris\n{ABSTRACT}\n".encode())
    papers, problems = read_file(f)
    assert len(filler) > 8192 and len(papers) == 61
    assert papers[-1].title == "Kept After Debris"
    assert [(p.line, p.message) for p in problems] == [(121, "1 line(s) hold NUL bytes (binary data); skipped")]


def test_nul_byte_in_the_first_8_kb_is_a_binary_file(tmp_path):
    f = tmp_path / "head.jsonl"
    f.write_bytes(b"\x00" + jsonl({"title": "T", "abstract": ABSTRACT}).encode())
    assert read_file(f) == (
        [],
        [corpus.Problem("head.jsonl", "binary file, not text; give .txt, .jsonl or .csv files")],
    )


def test_line_in_another_encoding_is_read_as_windows_1252_not_dropped(tmp_path):
    f = tmp_path / "mixed.txt"
    f.write_bytes(
        f"Résumé of a UTF-8 Title\n{ABSTRACT}\n".encode()
        + "Titre déjà vu – en Latin-1\n".encode("cp1252")
        + f"Another {ABSTRACT}\n".encode()
    )
    papers, problems = read_file(f)
    assert [p.title for p in papers] == ["Résumé of a UTF-8 Title", "Titre déjà vu – en Latin-1"]
    assert [(p.line, p.message.split(";")[0]) for p in problems] == [(3, "1 line(s) not UTF-8, read as Windows-1252")]


def test_whole_latin_1_file_is_read_with_one_problem(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(f"Abstract:Une méthode {ABSTRACT}\nAbstract:Deuxième {ABSTRACT}\n".encode("latin-1"))
    c = corpus.load([latin1])
    assert [p.abstract[:12] for p in c.papers] == ["Une méthode ", "Deuxième We "]
    assert c.problems == [] and not c.damaged_paths  # every line was read: a notice, not a skipped entry
    assert [(p.line, "not UTF-8" in p.message) for p in c.notices] == [(1, True)]
    assert c.notices[0].message.startswith("2 line(s)")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig"])
def test_unicode_file_with_a_byte_order_mark_is_read(tmp_path, encoding):
    """Windows tools save "Unicode" text as UTF-16 with a BOM; its NUL bytes are not binary data."""
    f = tmp_path / "bom.csv"
    f.write_bytes(f"title\tabstract\r\nNaïve Title\t{ABSTRACT}\r\n".encode(encoding))
    (paper,), problems = read_file(f)
    assert (paper.title, paper.abstract, problems) == ("Naïve Title", ABSTRACT, [])


def test_huge_title_is_one_problem_like_a_huge_abstract(tmp_path):
    f = tmp_path / "title.jsonl"
    f.write_text(jsonl({"title": "T" * TEN_MB, "abstract": "short"}, {"title": "Kept", "abstract": ABSTRACT}))
    papers, problems = read_file(f)
    assert [p.title for p in papers] == ["Kept"]
    assert [p.line for p in problems] == [1] and "longer than the 100,000" in problems[0].message


def test_clean_text_stays_fast_on_hostile_latex():
    """`\\color[` repeated with no `]`: a pattern free to run past the next `\\color[` rescans the rest at each one."""
    hostile = "\\color[" * (corpus.MAX_ENTRY_CHARS // 7)
    started = time.perf_counter()
    assert clean_text(hostile) == "color[" * (corpus.MAX_ENTRY_CHARS // 7)
    assert time.perf_counter() - started < 0.5


def test_iso_date_that_does_not_exist_keeps_only_its_year(tmp_path):
    f = tmp_path / "dates.jsonl"
    f.write_text(jsonl({"abstract": ABSTRACT, "date": "2024-13-45"}))
    (paper,), _ = read_file(f)
    assert (paper.date_raw, paper.date, paper.year) == ("2024-13-45", "", 2024)


# ---------------------------------------------------------------- hostile input: CSV


def test_csv_with_bom_and_odd_quoting_loses_no_row():
    """BOM + quoted header, a backslash-escaped quote, an unquoted comma, a quote never closed."""
    papers, problems = read_file(EDGE / "odd_quoting.csv")
    assert [(p.paper_id, p.title) for p in papers] == [
        ("q-1", "Escaped Quotes"),
        ("q-2", "Unquoted Comma"),
        ("q-3", "Unclosed Quote"),
        ("q-4", "After The Unclosed Quote"),
        ("q-5", "Last Row"),
    ]
    assert papers[0].abstract.startswith('We call this the "fast path", and it halves')
    assert (
        papers[1].abstract
        == "We prune heads by saliency, then retrain the survivors for one epoch on the original data."
    )
    assert papers[2].abstract.endswith("in five datasets.")
    assert papers[4].abstract.startswith("A plain, properly quoted abstract")
    assert [(p.line, p.message.split(" (")[0].split(";")[0]) for p in problems] == [
        (2, "bad quoting"),
        (3, "row has 4 fields but the header has 3"),
        (4, "bad quoting"),
    ]
    assert "lines 4-6" in problems[2].message


def test_csv_unclosed_quote_at_the_end_keeps_the_rows_it_swallowed(tmp_path):
    f = tmp_path / "open.csv"
    f.write_text(f'title,abstract\nFirst,"{ABSTRACT}\nSecond,{ABSTRACT}\nThird,{ABSTRACT}\n')
    papers, problems = read_file(f)
    assert [(p.title, p.abstract) for p in papers] == [(t, ABSTRACT) for t in ("First", "Second", "Third")]
    assert [(p.line, "lines 2-4" in p.message) for p in problems] == [(2, True)]


def test_csv_surplus_fields_before_the_abstract_column_skip_only_that_row(tmp_path):
    f = tmp_path / "surplus.csv"
    f.write_text(f"abstract,title\n{ABSTRACT},A, title with a comma\n{ABSTRACT},Fine,\n")
    papers, problems = read_file(f)
    assert [p.title for p in papers] == ["Fine"]  # a trailing empty field is not a surplus
    assert [(p.line, p.message.split(";")[1].strip()) for p in problems] == [
        (2, "skipped: quote fields that hold a ','")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"title;abstract\nSemicolons;{ABSTRACT}\n", "Semicolons"),
        (f"title\tabstract\nTabs\t{ABSTRACT}\n", "Tabs"),
        (f"title,abstract\rOld Mac Line Ends,{ABSTRACT}\r", "Old Mac Line Ends"),
        (f"\n\ntitle,abstract\nBlank Lines First,{ABSTRACT}\n", "Blank Lines First"),
    ],
    ids=["semicolon", "tab", "bare-cr", "leading-blank-lines"],
)
def test_csv_dialects(tmp_path, text, expected):
    """Bare CR line ends make Python's csv raise "new-line character seen in unquoted field" unless split first."""
    f = tmp_path / "dialect.csv"
    f.write_bytes(text.encode())
    papers, problems = read_file(f)
    assert ([p.title for p in papers], problems) == ([expected], [])


# ---------------------------------------------------------------- hostile input: scraped layouts


def test_listing_whose_first_line_is_an_abstract_line_is_still_a_listing(tmp_path):
    """A file is not one layout: an `Abstract:` first line must not make the titled pairs after it unreadable."""
    f = tmp_path / "mixed_layout.txt"
    f.write_text(f"Abstract:Untitled {ABSTRACT}\n\nFirst Title\n{ABSTRACT}\n\nSecond Title\nSecond {ABSTRACT}\n")
    papers, problems = read_file(f)
    assert [p.title for p in papers] == ["", "First Title", "Second Title"]
    assert papers[0].abstract == f"Untitled {ABSTRACT}"
    assert problems == []


def test_abstract_before_a_lone_dot_line_is_not_taken_for_an_organisation(tmp_path):
    f = tmp_path / "dot.txt"
    f.write_text(listing("A Title", ABSTRACT, "·", "Next Title", f"Next {ABSTRACT}"))
    papers, problems = read_file(f)
    assert [(p.title, p.organisation) for p in papers] == [("A Title", ""), ("Next Title", "")]
    assert problems == []


def test_same_file_given_twice_is_read_once():
    c = corpus.load([GOOD, GOOD / "001_listing.txt", GOOD / ".." / "good" / "001_listing.txt"])
    assert c.per_file == corpus.load([GOOD]).per_file
    carbon = by_title(c.papers)[CARBON_TITLE]
    assert carbon.sources == ["001_listing.txt", "002_listing_meta.txt"]


def test_argument_order_does_not_change_the_result():
    files = sorted(GOOD.iterdir())
    forward, backward = corpus.load(files), corpus.load(files[::-1])
    assert [(p.paper_id, p.sources) for p in forward.papers] == [(p.paper_id, p.sources) for p in backward.papers]
    assert forward.problems == backward.problems


# ---------------------------------------------------------------- ids from users


def write_jsonl(path: Path, *records: dict) -> Path:
    path.write_text(jsonl(*records))
    return path


def test_id_reused_by_a_different_paper_gets_a_namespaced_id(tmp_path):
    f = write_jsonl(
        tmp_path / "ids.jsonl",
        {"id": "X", "title": "First", "abstract": ABSTRACT},
        {"id": "X", "title": "Second", "abstract": ABSTRACT},
    )
    c = corpus.load([f])
    second = f"X~{paper_id('Second', ABSTRACT)[:8]}"
    assert [(p.paper_id, p.title) for p in c.papers] == [("X", "First"), (second, "Second")]
    assert [str(p) for p in c.problems] == [
        f"ids.jsonl: entry 2: id 'X' is also used by a different paper (in ids.jsonl); this one is stored as '{second}'"
    ]
    assert c.merged == 0 and c.damaged_paths == set()


def test_id_reused_across_files_never_replaces_a_paper_and_follows_file_order(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", {"id": "X", "title": "In A", "abstract": ABSTRACT})
    b = write_jsonl(tmp_path / "b.jsonl", {"id": "X", "title": "In B", "abstract": ABSTRACT})
    c_ = write_jsonl(tmp_path / "c.jsonl", {"id": "X", "title": "In B", "abstract": ABSTRACT})  # B's paper again
    for order in ([a, b, c_], [c_, b, a]):
        c = corpus.load(order)
        ids = {p.title: (p.paper_id, p.sources) for p in c.papers}
        assert ids == {
            "In A": ("X", ["a.jsonl"]),
            "In B": (f"X~{paper_id('In B', ABSTRACT)[:8]}", ["b.jsonl", "c.jsonl"]),
        }
        assert [p.file for p in c.problems] == ["b.jsonl", "c.jsonl"]
        assert c.merged == 1


def test_same_id_and_same_paper_in_two_files_is_one_paper(tmp_path):
    record = {"id": "X", "title": "Same", "abstract": ABSTRACT, "date": "2024"}
    a = write_jsonl(tmp_path / "a.jsonl", record)
    b = write_jsonl(tmp_path / "b.csv", {})
    b.write_text(f"id,title,abstract\nX,same,{ABSTRACT.upper()}\n")  # same words, other case: same paper
    c = corpus.load([a, b])
    assert [(p.paper_id, p.sources, p.year) for p in c.papers] == [("X", ["a.jsonl", "b.csv"], 2024)]
    assert (c.problems, c.merged) == ([], 1)


def test_ids_crafted_to_collide_still_lose_no_paper(tmp_path):
    """Users may type ids that equal another paper's content hash or a namespaced id."""
    hashed = paper_id("Hashed", ABSTRACT)
    taken = f"X~{paper_id('Crafted', ABSTRACT)[:8]}"
    f = write_jsonl(
        tmp_path / "crafted.jsonl",
        {"id": hashed, "title": "Claims The Hash", "abstract": ABSTRACT},
        {"title": "Hashed", "abstract": ABSTRACT},
        {"id": taken, "title": "Claims The Slot", "abstract": ABSTRACT},
        {"id": "X", "title": "Owner", "abstract": ABSTRACT},
        {"id": "X", "title": "Crafted", "abstract": ABSTRACT},
    )
    c = corpus.load([f])
    assert sorted(p.title for p in c.papers) == ["Claims The Hash", "Claims The Slot", "Crafted", "Hashed", "Owner"]
    assert len({p.paper_id for p in c.papers}) == 5
    stored = {p.title: p.paper_id for p in c.papers}
    assert stored["Crafted"] == f"X~{paper_id('Crafted', ABSTRACT)}"  # the short slot was taken
    assert len(c.problems) == 2


# ---------------------------------------------------------------- damaged files


def test_file_with_a_corrupt_line_is_damaged_and_still_yields_its_other_papers(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    c = corpus.load([GOOD / "003_papers.jsonl", GOOD / "004_papers.csv", empty])
    jsonl_path, csv_path = (str((GOOD / n).resolve()) for n in ("003_papers.jsonl", "004_papers.csv"))
    assert c.damaged_paths == {jsonl_path}
    assert c.read_paths == {jsonl_path, csv_path}
    assert c.unread_paths == {str(empty.resolve())}
    assert sum(jsonl_path in p.paths for p in c.papers) == 3


def test_a_reused_id_does_not_mark_the_file_damaged(tmp_path):
    """A renamed id is a warning, not a read failure: nothing from the file is missing."""
    f = write_jsonl(
        tmp_path / "ids.jsonl",
        {"id": "X", "title": "A", "abstract": ABSTRACT},
        {"id": "X", "title": "B", "abstract": ABSTRACT},
    )
    c = corpus.load([f])
    assert (len(c.papers), len(c.problems), c.damaged_paths) == (2, 1, set())


def test_id_of_a_different_paper_stored_from_another_file_is_not_reused(tmp_path):
    """Ingesting one file on its own must not take over an id the index holds for another file's paper."""
    b = write_jsonl(
        tmp_path / "b.jsonl",
        {"id": "X", "title": "In B", "abstract": ABSTRACT},
        {"id": "Y", "title": "Edited", "abstract": ABSTRACT},
    )
    elsewhere = str(tmp_path / "a.jsonl")
    stored = {
        "X": (paper_id("In A", ABSTRACT), [elsewhere]),  # another file's paper: X is taken
        "Y": (paper_id("Before The Edit", ABSTRACT), [str(b.resolve())]),  # this file's own paper, edited since
        "Z": (paper_id("In B", ABSTRACT), [elsewhere]),
    }
    c = corpus.load([b], stored=stored)
    assert [(p.paper_id, p.title) for p in c.papers] == [
        (f"X~{paper_id('In B', ABSTRACT)[:8]}", "In B"),
        ("Y", "Edited"),
    ]
    assert [p.message.split(";")[0] for p in c.problems] == [
        "entry 1: id 'X' is also used by a different paper (in the index)"
    ]
    assert corpus.load([b]).papers[0].paper_id == "X"  # without the index nothing is taken


# ---------------------------------------------------------------- what a folder holds besides corpus files


def test_other_files_in_a_folder_are_listed_as_skipped_with_the_reason(tmp_path):
    (tmp_path / "papers.jsonl").write_text(jsonl({"title": "T", "abstract": ABSTRACT}))
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01")
    (tmp_path / "notes").write_text("no extension")
    (tmp_path / ".DS_Store").write_bytes(b"\x00")  # a dot file is not the user's: not worth a line
    c = corpus.load([tmp_path])
    assert len(c.papers) == 1
    assert [(p.file, p.message.split(";")[0]) for p in c.problems] == [
        ("blob.bin", "not a corpus file (.bin)"),
        ("notes", "not a corpus file (no extension)"),
    ]


def test_a_pipe_or_device_is_named_and_never_opened(tmp_path):
    """A named pipe would block a read forever and /dev/zero never ends: both are refused unread."""
    import os

    pipe = tmp_path / "papers.txt"
    os.mkfifo(pipe)
    zero = tmp_path / "zero.jsonl"
    zero.symlink_to("/dev/zero")
    for path, kind in ((pipe, "a named pipe"), (zero, "a device")):
        with pytest.raises(CorpusError) as err:
            corpus.load([path])
        assert str(err.value) == f"{path}: not a regular file: {kind}; give a file"
    (tmp_path / "good.jsonl").write_text(jsonl({"title": "T", "abstract": ABSTRACT}))
    started = time.monotonic()
    c = corpus.load([tmp_path])
    assert time.monotonic() - started < 5 and len(c.papers) == 1
    assert sorted(str(p) for p in c.problems) == [
        "papers.txt: not a regular file: a named pipe; skipped",
        "zero.jsonl: not a regular file: a device; skipped",
    ]


def test_the_same_paper_dated_otherwise_in_a_second_file_is_reported(tmp_path):
    (tmp_path / "a.jsonl").write_text(jsonl({"title": "Same Paper", "abstract": ABSTRACT, "date": "2021-03-04"}))
    (tmp_path / "b.jsonl").write_text(jsonl({"title": "Same Paper", "abstract": ABSTRACT, "date": "2023-01-02"}))
    (tmp_path / "c.jsonl").write_text(jsonl({"title": "Same Paper", "abstract": ABSTRACT, "date": "2021-03-04"}))
    c = corpus.load([tmp_path])
    assert [p.year for p in c.papers] == [2021] and c.problems == []
    assert [str(n) for n in c.notices] == [
        "a.jsonl: the same paper ('Same Paper') is also in b.jsonl dated 2023-01-02; kept 2021-03-04 from a.jsonl, the file read first"
    ]
