"""Tests for `rag.corpus`: the three scraped layouts, JSONL and CSV, bad input, text cleanup,
stable paper ids, and the real default corpus.

Fixtures live in tests/fixtures/corpus/: `good/` holds one small file per format (loaded
together as a folder), `edge/` holds files that exercise a single oddity each.
"""

from __future__ import annotations

import json
import re
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
        pytest.fail(f"BUG: corpus.load raised {type(e).__name__}({e}) for {what}; a bad input must give a Problem (or still load), never an exception")


def listing(*blocks: str) -> str:
    """A layout-3 page: the scraped header, then the given blocks separated by blank lines."""
    header = ["new", "Get trending papers in your email inbox!", "Subscribe", "byAK and the research community", "Oct 28"]
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
    assert "does not start with 'Abstract:'" in problems[0].message


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
    """BUG: `_organisation` keeps the handle when the display name has two words (odd word count)."""
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
    """BUG: the metadata block of a title with no abstract is applied to the paper before it."""
    (paper,), _ = read_file(EDGE / "orphan_title_meta.txt")
    assert (paper.authors, paper.date_raw) == (3, "Jun 18, 2024"), (
        f"previous paper's own metadata (3 authors, Jun 18, 2024) was overwritten by the skipped "
        f"title's block: got ({paper.authors}, {paper.date_raw!r})"
    )


def test_title_with_no_abstract_in_plain_listing_does_not_swallow_next_title():
    """BUG: without a metadata block, the orphan title takes the next *title* as its abstract."""
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
    """BUG: "Last, First; Last, First" (Zotero-style) is split on commas too and counts each name twice."""
    f = tmp_path / "zotero.jsonl"
    f.write_text(json.dumps({"title": "T", "abstract": ABSTRACT, "authors": "Lovelace, Ada; Turing, Alan"}) + "\n")
    (paper,), _ = read_file(f)
    assert paper.authors == 2, f"'Lovelace, Ada; Turing, Alan' is two authors, got {paper.authors}"


# ---------------------------------------------------------------- bad input

LATIN1 = f"Abstract:Une méthode {ABSTRACT}".encode("latin-1")  # 'é' is byte 14


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.txt", b"\n   \n\t\n", "empty file"),
        ("binary.txt", bytes(range(256)) * 8, "binary file"),
        ("latin1.txt", LATIN1, "not UTF-8 text (bad byte at offset 14)"),
    ],
    ids=["empty", "whitespace-only", "binary", "latin-1"],
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
    """BUG: a UTF-8 BOM (or other non-ASCII whitespace) alone passes the empty check, then _read_text indexes lines[0]."""
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


TEN_MB = 10 * 1024 * 1024


@pytest.mark.parametrize("name", ["huge.txt", "huge.jsonl"])
def test_ten_megabyte_line_is_one_problem_and_other_files_still_load(tmp_path, name):
    bad = tmp_path / name
    if name.endswith(".jsonl"):
        bad.write_text(json.dumps({"title": "Huge", "abstract": "x" * TEN_MB}))
    else:
        bad.write_text("word " * (TEN_MB // 5))
    c = corpus.load([bad, GOOD / "001_listing.txt"])
    assert [(p.file, p.line) for p in c.problems] == [(name, 1)]
    assert "longer than the 100,000" in c.problems[0].message
    assert len(c.papers) == 3


def test_ten_megabyte_csv_row_is_one_problem(tmp_path):
    """BUG: csv's default field_size_limit (131,072) raises _csv.Error for a field this large, crashing load."""
    bad = tmp_path / "huge.csv"
    bad.write_text("title,abstract\nHuge," + "x" * TEN_MB + "\n")
    c = load_or_fail([bad, GOOD / "001_listing.txt"], "a CSV with a 10 MB abstract field")
    assert [(p.file, p.line) for p in c.problems] == [("huge.csv", 2)]
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
    """BUG: `date(2024, 2, 30)` raises ValueError out of load(); the paper itself is fine and should load."""
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
    with pytest.raises(CorpusError, match=r"no \.txt, \.jsonl or \.csv files") as err:
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
