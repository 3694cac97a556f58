"""Streaming ingest: `corpus.scan` gives the papers `corpus.load` gives while holding none it has passed on,
JSON Lines are read a line at a time exactly as a whole file is, and an ingest written a few papers at a
time stores the same index as one written at once."""

from __future__ import annotations

import codecs
import gc
import json
import shutil
import time
import weakref
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from conftest import build_settings

from rag import corpus, write
from rag import ingest as ingest_mod
from rag.embed import HashingEmbedding
from rag.ingest import ingest
from rag.store import open_store
from rag.types import Corpus, IngestReport

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
FOLDERS = [FIXTURES / "corpus" / "good", FIXTURES / "corpus" / "edge", FIXTURES / "formats", FIXTURES / "small"]
ABSTRACT = "We measure how a made-up method changes a made-up benchmark, and find it helps by a third in {} runs."


def row(i: int, **extra: object) -> dict:
    return {"title": f"Paper {i}", "abstract": ABSTRACT.format(i), **extra}


def lines(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture
def duplicated(tmp_path: Path) -> Path:
    """Two files sharing papers by text, by DOI, and by a user id that two different papers claim."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.jsonl").write_text(
        lines(row(1), row(2, doi="10.5555/two"), row(3, id="mine"), row(4), row(1, date="2021-02-03"))
    )
    (folder / "b.jsonl").write_text(
        lines(
            row(5),
            {**row(2, doi="10.5555/two"), "title": "Paper two, retitled", "date": "2020"},
            row(6, id="mine"),
            row(4, date="2019", authors="A. B; C. D"),
        )
    )
    return folder


def scanned(paths: list[Path]) -> tuple[list, Corpus]:
    files = corpus.expand(paths)
    read = Corpus(papers=[])
    return list(corpus.scan(files, read)), read


@pytest.mark.parametrize("where", ["duplicated", *[f.name for f in FOLDERS]])
def test_scan_gives_the_papers_problems_and_notices_of_load(where, duplicated):
    paths = [duplicated] if where == "duplicated" else [f for f in FOLDERS if f.name == where]
    loaded = corpus.load(paths)
    papers, read = scanned(paths)
    assert sorted((asdict(p) for p in papers), key=lambda p: p["paper_id"]) == sorted(
        (asdict(p) for p in loaded.papers), key=lambda p: p["paper_id"]
    )
    assert read.distinct == loaded.distinct == len(loaded.papers) > 0
    assert sorted(map(str, read.problems)) == sorted(map(str, loaded.problems))
    assert sorted(map(str, read.notices)) == sorted(map(str, loaded.notices))
    assert (read.merged, read.per_file, read.read_paths, read.damaged_paths) == (
        loaded.merged,
        loaded.per_file,
        loaded.read_paths,
        loaded.damaged_paths,
    )


def test_the_duplicated_fixture_does_merge(duplicated):
    """Guards the test above: the fixture exercises folding by text and by DOI, and a contested user id."""
    loaded = corpus.load([duplicated])
    assert loaded.merged == 3 and len(loaded.papers) == 6
    one = next(p for p in loaded.papers if p.title == "Paper 1")
    assert one.year == 2021 and one.positions == [1, 5]
    assert any("'mine' is also used by a different paper" in str(p) for p in loaded.problems)


def test_scan_holds_no_paper_it_has_passed_on(tmp_path):
    """A paper seen once is let go as soon as it is yielded; only one seen again waits for its last sighting."""
    path = tmp_path / "many.jsonl"
    path.write_text(lines(*(row(i) for i in range(200)), row(7)))
    alive: list[weakref.ref] = []
    titles = []
    for n, paper in enumerate(corpus.scan([path], Corpus(papers=[])), 1):
        alive.append(weakref.ref(paper))
        titles.append(paper.title)
        del paper
        if n % 50 == 0:  # a few collections: one per paper takes minutes in a large test process
            gc.collect()
            held = [ref().title for ref in alive[:-1] if ref() is not None]  # the last is the loop's own
            assert held in ([], ["Paper 7"]), held
    assert len(titles) == 200 and titles[-1] == "Paper 7"


def test_json_lines_read_a_line_at_a_time_as_a_whole_file_reads_them(tmp_path):
    """Every newline convention, Windows-1252 lines, NUL debris, a BOM, blank lines and bad JSON (past the
    first 8 KB, where a NUL byte would mark the whole file as binary)."""
    body = (
        codecs.BOM_UTF8
        + lines(*(row(i) for i in range(10, 90))).encode()
        + json.dumps(row(1)).encode()
        + b"\r\n"
        + json.dumps(row(2)).encode()
        + b"\r"
        + json.dumps({**row(3), "title": "Caf\u00e9"}, ensure_ascii=False).encode("cp1252")
        + b"\n\n{not json\n"
        + b'{"title": "x\x00", "abstract": "y"}\n'
        + json.dumps(row(4)).encode()
    )
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(body)
    streamed: list = []
    papers = list(corpus.read_entries(path, streamed))
    lines_, decoded = corpus._decode(path.name, body)
    whole, parsed = corpus._parse(path.name, ".jsonl", lines_)
    assert [asdict(p) for p in papers] == [asdict(p) for p in whole]
    assert [p.title for p in papers][-4:] == ["Paper 1", "Paper 2", "Café", "Paper 4"]
    assert list(map(str, streamed)) == list(map(str, decoded + parsed))
    assert len(streamed) == 3  # Windows-1252 notice, NUL line, bad JSON


@pytest.mark.parametrize(
    "body, message",
    [(b"", "empty file"), (b"\n  \n", "empty file"), (b'{"title": "t"}\n', "no paper found")],
)
def test_a_json_lines_file_with_no_paper_says_why(tmp_path, body, message):
    path = tmp_path / "nothing.jsonl"
    path.write_bytes(body)
    problems: list = []
    assert list(corpus.read_entries(path, problems)) == []
    assert any(message in str(p) for p in problems), problems


def test_an_ingest_written_a_few_papers_at_a_time_stores_the_same_index(tmp_path, duplicated, monkeypatch):
    folder = tmp_path / "both"
    shutil.copytree(duplicated, folder)
    shutil.copytree(FIXTURES / "small", folder / "small")
    hashing = HashingEmbedding()
    whole = build_settings(data_dir=tmp_path / "whole")
    at_once = ingest([folder], whole, hashing)
    monkeypatch.setattr(ingest_mod, "WINDOW", 2)
    steps = []
    few = build_settings(data_dir=tmp_path / "few")
    in_twos = ingest([folder], few, hashing, on_progress=lambda done, total: steps.append((done, total)))
    a, b = open_store(whole), open_store(few)
    assert a.stamp()["version"] == b.stamp()["version"]
    assert sorted(a.records()) == sorted(b.records())
    assert a.chunk_count() == b.chunk_count() > 0
    assert (at_once.added, at_once.corpus.merged) == (in_twos.added, in_twos.corpus.merged) == (a.count(), 3)
    assert steps[-1] == (a.count(), a.count()) and [d for d, _ in steps] == sorted(d for d, _ in steps)


class _WaitsForTheNextBatch(HashingEmbedding):
    """Embeds its first batch only once the papers of the second have been read (sentences split): the
    ingest must read ahead while it embeds, or this waits out its deadline."""

    def __init__(self, later: list) -> None:
        super().__init__(batch_size=1)
        self.later, self.read_ahead = later, None

    def get_text_embedding_batch(self, texts: list[str]) -> list[list[float]]:
        if self.read_ahead is None:
            deadline = time.monotonic() + 10
            while not all(p.spans for p in self.later) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.read_ahead = all(p.spans for p in self.later)
        return super().get_text_embedding_batch(texts)


def test_the_next_batch_is_read_while_one_is_embedded(tmp_path, duplicated):
    settings = build_settings(data_dir=tmp_path / "index", embed_batch_size=1)
    papers = sorted(corpus.load([duplicated]).papers, key=lambda p: p.paper_id)
    size = write.batch_size(settings, HashingEmbedding())
    papers = [replace(p, paper_id=f"{p.paper_id}-{i}") for i in range(size // len(papers) + 1) for p in papers]
    first, second, *_ = write._ramped(papers, size)
    assert 0 < len(first) < len(second) <= size  # the first batch is small: embedding starts early
    embedder = _WaitsForTheNextBatch(second)
    report = IngestReport()
    store = open_store(settings)
    assert write.embed_and_write(store, papers, embedder, settings, report, None) == 384
    assert embedder.read_ahead is True
    assert store.count() == len(papers) and report.embedded == store.chunk_count()


def test_batches_grow_to_their_size_and_hold_every_paper_once():
    papers = list(range(1000))
    batches = write._ramped(papers, 128)  # type: ignore[arg-type]
    assert [len(b) for b in batches[:4]] == [16, 21, 28, 37]
    assert max(map(len, batches)) == 128 and sum(batches, []) == papers
    assert write._ramped([], 128) == [] and write._ramped(papers[:3], 1) == [[0], [1], [2]]
