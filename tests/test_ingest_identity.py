"""The same paper from two sources is one paper when they share a DOI or arXiv id: in one ingest, and across
two ingests of different files; a notice says whose title, abstract and metadata the index keeps."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import build_settings

from rag.embed import HashingEmbedding
from rag.ingest import ingest
from rag.store import open_store

ABSTRACT = (
    "We measure how tidal turbines change sediment transport in a shallow estuary over two years of "
    "field surveys, and find that scour around the foundations levels off after six months."
)
ARXIV = {
    "id": "2101.01234v2",
    "title": "Tidal turbines and sediment transport",
    "abstract": ABSTRACT,
    "authors": "A. Author and B. Author",
    "categories": "physics.geo-ph",
    "doi": "10.5555/tidal.2021.4",
    "update_date": "2021-01-05",
}
LIBRARY = {
    "title": "Tidal Turbines and Sediment Transport in a Shallow Estuary",
    "abstract": ABSTRACT.replace("two years", "24 months"),
    "doi": "https://doi.org/10.5555/TIDAL.2021.4",
    "date": "2021-03-01",
}
OTHER = {
    "title": "Kelp forests and wave damping",
    "abstract": "Kelp canopies damp waves by a third in winter storms, "
    "which we show with pressure sensors deployed inside and outside three forests.",
    "date": "2020",
}


def write(path: Path, *rows: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def notices(report) -> list[str]:
    return [str(n) for n in report.corpus.notices]


def test_two_files_in_one_ingest_sharing_a_doi_are_one_paper_and_the_first_file_read_is_kept(tmp_path):
    folder = tmp_path / "corpus"
    write(folder / "a-arxiv.jsonl", ARXIV)
    write(folder / "b-library.jsonl", LIBRARY, OTHER)
    settings = build_settings(data_dir=tmp_path / "index", corpus_paths=[folder], embed_backend="hashing")
    report = ingest([folder], settings, HashingEmbedding())
    store = open_store(settings)
    assert store.count() == 2 and report.added == 2
    (paper,) = [p for p in store.all_papers() if p.doi]
    assert (paper.title, paper.abstract, paper.arxiv_id) == (ARXIV["title"], ABSTRACT, "2101.01234v2")
    assert paper.sources == ["a-arxiv.jsonl", "b-library.jsonl"]
    (said,) = [n for n in notices(report) if "same paper" in n]
    assert "doi:10.5555/tidal.2021.4" in said and "kept the title, abstract and metadata of a-arxiv.jsonl" in said


def test_a_paper_ingested_again_from_another_file_replaces_the_stored_one_and_says_so(tmp_path):
    settings = build_settings(data_dir=tmp_path / "index", embed_backend="hashing")
    arxiv = write(tmp_path / "dump" / "arxiv.jsonl", ARXIV)
    library = write(tmp_path / "zotero" / "library.jsonl", LIBRARY, OTHER)
    ingest([arxiv], settings, HashingEmbedding())
    (stored_id,) = [p.paper_id for p in open_store(settings).all_papers()]
    report = ingest([library], settings, HashingEmbedding())
    papers = {p.paper_id: p for p in open_store(settings).all_papers()}
    assert len(papers) == 2, "the library's entry was stored as a second paper"
    assert papers[stored_id].abstract == LIBRARY["abstract"] and papers[stored_id].sources == ["library.jsonl"]
    assert (report.added, report.updated) == (1, 1)
    (said,) = [n for n in notices(report) if "same paper" in n]
    assert "was stored from arxiv.jsonl" in said and "entry 1 of this file" in said
