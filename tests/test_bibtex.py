"""Citations out (rag.references): BibTeX and Markdown for an answer, and links shown for cited papers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bibtexparser
import pytest
from bibtexparser.middlewares import LatexDecodingMiddleware

from rag import corpus
from rag.api import sources_of
from rag.references import bibtex, cite_keys, markdown, md_escape
from rag.types import Answer, Citation, Hit, Paper

FORMATS = Path(__file__).parent / "fixtures" / "formats"
MOSS_Q = "How quickly does glacier moss respiration recover after thawing?"
MOSS_LINK = "https://arxiv.org/abs/2104.05678"


def parse_back(text: str) -> list[dict]:
    library = bibtexparser.parse_string(text, append_middleware=[LatexDecodingMiddleware()])
    assert not library.failed_blocks
    return [{f.key: f.value for f in e.fields} | {"key": e.key} for e in library.entries]


def fixture_papers() -> list[Paper]:
    return corpus.load([FORMATS]).papers


def test_bibtex_of_every_fixture_paper_parses_back_to_the_same_titles_dois_and_years():
    papers = fixture_papers()
    entries = parse_back(bibtex(papers))
    assert [e["title"] for e in entries] == [p.title for p in papers]
    assert [e.get("doi", "") for e in entries] == [p.doi for p in papers]
    assert [e.get("year") for e in entries] == [str(p.year) if p.year else None for p in papers]
    assert [e.get("url") for e in entries] == [p.link for p in papers]
    assert len({e["key"] for e in entries}) == len(entries)


def test_bibtex_escapes_awkward_titles_and_keeps_identifiers_verbatim():
    title = "Öl {unbalanced 50% & $x_1$ #tag ~ \\end under_score"
    paper = Paper(paper_id="p1", title=title, abstract="a", year=2020, doi="10.1000/a_b(1)", venue="J. of {X} & Y")
    (entry,) = parse_back(bibtex([paper]))
    assert (entry["title"], entry["journal"]) == (title, "J. of {X} & Y")
    assert (entry["doi"], entry["key"]) == ("10.1000/a_b(1)", "ol2020")


def test_cite_keys_are_stable_and_get_a_hash_only_when_shared():
    a = Paper(paper_id="aaa", title="Deep Sea Vents", abstract="x", year=2021)
    b = Paper(paper_id="bbb", title="Deep Learning", abstract="y", year=2021)
    c = Paper(paper_id="ccc", title="¿¡", abstract="Élan vital", year=None)
    keys = cite_keys([a, b, c])
    assert keys[0].startswith("deep2021-") and keys[1].startswith("deep2021-") and keys[0] != keys[1]
    assert keys[2] == "elan"
    assert cite_keys([b, a, c]) == [keys[1], keys[0], keys[2]]  # not order dependent
    assert cite_keys([a]) == ["deep2021"]


def test_markdown_references_escape_titles_and_link_only_identifiers():
    evil = Paper(paper_id="e", title="[click](javascript:alert(1)) <b>x</b>", abstract="a.", url="javascript:alert(1)")
    good = Paper(paper_id="g", title="Good *Paper*", abstract="b.", year=2020, pmid="12345")
    answer = Answer(
        question="q",
        text="Claim [2]. Other [1].",
        mode="extractive",
        model="m",
        citations=[_citation(2, good), _citation(1, evil)],
        sources=[Hit(evil, 1.0), Hit(good, 0.5)],
    )
    text = markdown(answer)
    assert "- \\[1\\] \\[click\\](javascript:alert(1)) \\<b\\>x\\</b\\>." in text
    assert "- \\[2\\] Good \\*Paper\\* (2020). <https://pubmed.ncbi.nlm.nih.gov/12345/>" in text
    assert text.count("](") == text.count("\\](") and text.startswith("Claim \\[2\\]. Other \\[1\\].")
    assert md_escape("# x\n2023. y\n- z_") == "\\# x\n2023\\. y\n\\- z\\_"


def _citation(n: int, paper: Paper) -> Citation:
    return Citation(n, paper.paper_id, paper.title, "claim", "", 0, 0, 1.0, True)


def test_bib_to_an_unwritable_path_is_a_one_line_error(tmp_path):
    from rag.cli import _write_bib
    from rag.errors import UserError

    answer = Answer(question="q", text="t", mode="extractive", model="m")
    message = r"^cannot write .*x\.bib \(No such file or directory\); give a writable --bib path$"
    with pytest.raises(UserError, match=message):
        _write_bib(tmp_path / "missing" / "x.bib", answer)
    _write_bib(tmp_path / "empty.bib", answer)  # an answer that cites nothing: an empty file
    assert (tmp_path / "empty.bib").read_text() == ""


@pytest.fixture(scope="module")
def formats_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The format fixtures ingested with the hashing embedder (no model to load)."""
    data = tmp_path_factory.mktemp("formats") / "index"
    proc = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ingest", str(FORMATS)],
        env=_env(data),
        cwd=data.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr  # stored, with the skipped entries listed
    assert "entry 'nobody2020empty' has no abstract; skipped" in proc.stderr
    return data


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env.update(
        RAG_DATA_DIR=str(data),
        RAG_EMBED_BACKEND="hashing",
        ANONYMIZED_TELEMETRY="False",
        RAG_CORPUS_PATHS=json.dumps([str(FORMATS)]),
    )
    return env


def _rag(data: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        env=_env(data),
        cwd=data.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_question_about_a_fixture_paper_cites_it_with_its_link(formats_index: Path):
    bib = formats_index.parent / "cited.bib"
    text = _rag(formats_index, "ask", MOSS_Q, "--bib", str(bib)).stdout
    footer = f"[1] Respiration of glacier moss under repeated freeze-thaw cycles {MOSS_LINK}"
    assert footer in " ".join(text.split())
    entries = parse_back(bib.read_text())
    moss = next(e for e in entries if e.get("eprint") == "2104.05678")
    assert (moss["year"], moss["url"], moss["journal"]) == ("2021", MOSS_LINK, "Journal of Fictional Computing")
    answer = json.loads(_rag(formats_index, "ask", MOSS_Q, "--json").stdout)
    assert parse_back(answer["bibtex"]) == entries
    cited = {c["n"] for c in answer["citations"]}
    assert any(answer["sources"][n - 1]["url"] == MOSS_LINK for n in cited)
    md = _rag(formats_index, "ask", MOSS_Q, "--markdown").stdout
    assert "## References" in md and f"<{MOSS_LINK}>" in md


@pytest.mark.slow
def test_search_json_and_api_sources_carry_identifiers(formats_index: Path):
    hits = json.loads(_rag(formats_index, "search", "--json", "coral larvae settle on textured tiles").stdout)
    coral = next(h for h in hits if h["title"].startswith("Coral Larvae"))
    assert (coral["url"], coral["doi"]) == ("https://doi.org/10.5555/coral.2024.2", "10.5555/coral.2024.2")
    assert coral["pmid"] == "38000001"
    assert (coral["venue"], coral["source_url"]) == ("Invented Marine Letters", "https://example.org/coral")


def test_api_citations_list_only_cited_papers_as_links_in_n_order():
    papers = {p.title[:12]: p for p in fixture_papers()}
    first, second, third = papers["Coral Larvae"], papers["Edge Caching"], papers["Respiration "]
    answer = Answer(
        question="q",
        text="A [3]. B [1].",
        mode="extractive",
        model="m",
        citations=[_citation(3, third), _citation(1, first)],
        sources=[Hit(first, 1.0), Hit(second, 0.9), Hit(third, 0.8)],
    )
    out = sources_of(answer)
    assert out["citations"] == ["https://doi.org/10.5555/coral.2024.2", MOSS_LINK]
    assert [r["url"] for r in out["search_results"]] == [first.link, None, MOSS_LINK]
    assert [e["title"] for e in parse_back(out["rag"]["bibtex"])] == [first.title, third.title]
