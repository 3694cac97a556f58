"""`rag ingest` SIGKILLed at many points, before and in the middle of each Chroma write, and at
random moments: the next ingest must leave an index equal to a clean build (same paper records,
same chunks with the same text, metadata and vectors, same version stamp, same search results),
and the one after that must find nothing to do.

The killed ingests are real `rag ingest` processes; the kill is a real SIGKILL sent from inside,
counted by Chroma write calls so that every write boundary is hit.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import build_settings

import rag
from rag.embed import HashingEmbedding
from rag.ingest import ingest
from rag.retrieve import Retriever
from rag.store import Store, open_store

ROOT = Path(rag.__file__).resolve().parent.parent  # the checkout whose `rag` is under test
CORPUS = ROOT / "data" / "corpus"  # 305 papers: three write batches of 128 papers
QUESTIONS = ["FP8 training speedup", "mixture of experts routing", "speech recognition", "diffusion image generation"]

# Counts Chroma write calls and SIGKILLs its own process at call N: `before` it starts, or `during`
# it (a timer fires a few milliseconds in), or at a wall-clock moment (`at`, seconds after start).
RUNNER = r"""
import os, signal, sys, threading, time
import chromadb.api.models.Collection as collection

point, mode, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
writes = 0

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

def counted(name):
    real = getattr(collection.Collection, name)
    def call(self, *args, **kwargs):
        global writes
        writes += 1
        if writes == point and mode == "before":
            kill()
        if writes == point and mode == "during":
            threading.Timer(delay, kill).start()
        return real(self, *args, **kwargs)
    setattr(collection.Collection, name, call)

for name in ("add", "upsert", "update", "delete", "modify"):
    counted(name)
if mode == "at":
    threading.Timer(delay, kill).start()
import atexit
atexit.register(lambda: print(f"writes={writes}", file=sys.stderr))
sys.argv = ["rag", "ingest", *sys.argv[4:]]
from rag.cli import main
main()
"""


def run_ingest(data_dir: Path, point: int, mode: str, delay: float = 0.0, *options: str) -> subprocess.CompletedProcess:
    """`rag ingest CORPUS OPTIONS` (hashing embedder), killed where `point`, `mode` and `delay` say."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env.update(PYTHONPATH=str(ROOT), RAG_DATA_DIR=str(data_dir), RAG_EMBED_BACKEND="hashing")
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(point), mode, str(delay), str(CORPUS), *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def snapshot(store: Store) -> dict:
    """Everything stored that a search or answer reads, in a form two indexes can be compared by."""
    records = {pid: (meta, abstract) for pid, meta, abstract in store.records(include_documents=True)}
    chunks: dict[str, tuple] = {}
    offset = 0
    while (got := store.chunks.get(limit=500, offset=offset, include=["documents", "metadatas", "embeddings"]))["ids"]:
        for cid, doc, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"]):
            chunks[cid] = (doc, meta, np.round(np.asarray(vec, dtype=np.float64), 5).tobytes())
        offset += len(got["ids"])
    stamp = {k: v for k, v in store.stamp().items() if k in ("version", "embedder", "dimension", "schema")}
    return {"records": records, "chunks": chunks, "stamp": stamp}


def answers(settings, store: Store) -> dict[str, list[str]]:
    retriever = Retriever(settings, HashingEmbedding(), store)
    return {q: [h.paper.paper_id for h in retriever.search(q, k=5)] for q in QUESTIONS}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A build that nothing interrupted, and how many Chroma writes it makes."""
    data = tmp_path_factory.mktemp("clean") / "index"
    started = time.monotonic()
    result = run_ingest(data, 0, "count")
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    writes = int(result.stderr.rsplit("writes=", 1)[1].split()[0])
    settings = build_settings(data_dir=data, embed_backend="hashing")
    store = open_store(settings)
    return {"snapshot": snapshot(store), "answers": answers(settings, store), "writes": writes, "seconds": seconds}


def repaired_equals_clean(data: Path, clean: dict) -> None:
    """One ingest finishes the interrupted one; the index then equals the clean build; another ingest does nothing."""
    settings = build_settings(data_dir=data, embed_backend="hashing")
    embedder = HashingEmbedding()
    ingest([CORPUS], settings, embedder)
    store = open_store(settings)
    got = snapshot(store)
    want = clean["snapshot"]
    assert set(got["records"]) == set(want["records"]), "paper records differ"
    assert got["records"] == want["records"], "a paper record differs"
    assert set(got["chunks"]) == set(want["chunks"]), f"{len(set(want['chunks']) - set(got['chunks']))} chunks missing"
    assert got["chunks"] == want["chunks"], "a chunk's text, metadata or vector differs"
    assert got["stamp"] == want["stamp"]
    assert answers(settings, store) == clean["answers"]
    again = ingest([CORPUS], settings, embedder)
    assert (again.embedded, again.added, again.updated, again.deleted, again.repaired) == (0, 0, 0, 0, 0)
    assert again.unchanged == len(want["records"])
    assert again.corpus is None, "the run after a completed one read the corpus again"


@pytest.mark.slow
def test_the_runner_counts_every_write(clean: dict) -> None:
    assert clean["writes"] >= 12  # three batches of four writes, then the stamp
    assert (
        len(clean["snapshot"]["records"]) == 305 and len(clean["snapshot"]["chunks"]) > 305
    )  # long abstracts: several chunks


POINTS = [(n, mode) for n in range(1, 14) for mode in ("before", "during")]


@pytest.mark.slow
@pytest.mark.parametrize("point, mode", POINTS, ids=[f"{mode}-write-{n}" for n, mode in POINTS])
def test_kill_at_a_write_then_ingest_equals_a_clean_build(tmp_path: Path, clean: dict, point: int, mode: str) -> None:
    data = tmp_path / "index"
    killed = run_ingest(data, point, mode, delay=0.003)
    assert point > clean["writes"] or killed.returncode == -9, (killed.returncode, killed.stderr[-1500:])
    repaired_equals_clean(data, clean)


@pytest.mark.slow
@pytest.mark.parametrize("kills, seed", [(3, 13), (5, 7), (10, 29)], ids=["3-kills", "5-kills", "10-kills"])
def test_kills_in_series_at_random_moments_then_ingest_equals_a_clean_build(
    tmp_path: Path, clean: dict, kills: int, seed: int
) -> None:
    """Ingests killed one after another at random (seeded) moments of the run, each resuming the last, then one
    that finishes: whatever the kills cut short, the index it leaves equals a clean build."""
    data = tmp_path / "index"
    rng = random.Random(seed)
    codes = [run_ingest(data, 0, "at", delay=rng.uniform(1.0, clean["seconds"])).returncode for _ in range(kills)]
    assert codes.count(-9) >= kills // 2, codes  # most runs were cut short, not finished before their moment
    repaired_equals_clean(data, clean)


@pytest.mark.slow
def test_kill_of_a_rebuild_mid_write_then_ingest_equals_a_clean_build(tmp_path: Path, clean: dict) -> None:
    """A full index, then `--rebuild`, which drops it and embeds everything again, killed mid-write."""
    data = tmp_path / "index"
    assert run_ingest(data, 0, "count").returncode == 0
    killed = run_ingest(
        data, 3, "during", 0.003, "--rebuild"
    )  # the drop is not counted: 3 is the first batch's chunk write
    assert killed.returncode == -9, killed.stderr[-1500:]
    repaired_equals_clean(data, clean)


# ---------------------------------------------------------------- vector files cut short
# Chroma rewrites a collection's HNSW files in place once it holds over 1000 vectors; a kill in the middle
# leaves one cut short, which a kill in a 305-paper ingest never reaches. These tests cut the files themselves.


def cli(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env.update(PYTHONPATH=str(ROOT), RAG_DATA_DIR=str(data), RAG_EMBED_BACKEND="hashing")
    command = [sys.executable, "-m", "rag.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def persisted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An index of 1100 papers (over 1000 records in each collection, so Chroma has written both collections'
    HNSW files) and its snapshot."""
    from rag import corpus
    from rag.dev import bench

    root = tmp_path_factory.mktemp("persisted")
    sentences, titles = bench.sentence_pool(corpus.load([CORPUS]).papers)
    bench.write_jsonl(root / "papers.jsonl", bench.synth_rows(1100, 3, sentences, titles))
    result = cli(root / "index", "ingest", str(root / "papers.jsonl"))
    assert result.returncode == 0, result.stderr[-2000:]
    store = open_store(build_settings(data_dir=root / "index", embed_backend="hashing"))
    return {"index": root / "index", "corpus": root / "papers.jsonl", "snapshot": snapshot(store)}


def vector_segment(data: Path, collection: str) -> Path:
    """The folder of a collection's HNSW files."""
    import sqlite3

    with sqlite3.connect(data / "chroma" / "chroma.sqlite3") as db:
        (segment,) = db.execute(
            "SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id "
            "WHERE s.scope = 'VECTOR' AND c.name = ?",
            (collection,),
        ).fetchone()
    return data / "chroma" / segment


def cut_short(persisted: dict, tmp_path: Path, name: str, collection: str = "abstracts") -> Path:
    data = tmp_path / "index"
    shutil.copytree(persisted["index"], data)
    file = vector_segment(data, collection) / name
    assert file.stat().st_size > 0
    os.truncate(file, file.stat().st_size // 3)
    return data


def assert_equals(data: Path, persisted: dict) -> None:
    settings = build_settings(data_dir=data, embed_backend="hashing")
    got, want = snapshot(open_store(settings)), persisted["snapshot"]
    assert got["records"] == want["records"], "a paper record differs or is missing"
    assert set(got["chunks"]) == set(want["chunks"]), f"{len(set(want['chunks']) - set(got['chunks']))} chunks missing"
    assert got["chunks"] == want["chunks"] and got["stamp"] == want["stamp"]
    assert cli(data, "search", "--json", "-k", "3", "training speedup").returncode == 0


CUTS = [("abstracts", name) for name in ("index_metadata.pickle", "header.bin", "data_level0.bin", "length.bin")]
CUTS += [("abstracts-papers", "index_metadata.pickle")]


@pytest.mark.slow
@pytest.mark.parametrize("collection, name", CUTS, ids=[f"{c}-{n}" for c, n in CUTS])
def test_vector_files_cut_short_are_refused_then_restored_from_the_paper_records(
    persisted: dict, tmp_path: Path, collection: str, name: str
) -> None:
    """A search names the damage and `rag ingest --repair`; the repair needs no corpus file and loses no paper."""
    data = cut_short(persisted, tmp_path, name, collection)
    search = cli(data, "search", "speech recognition")
    assert search.returncode == 1 and "Traceback" not in search.stderr, (search.returncode, search.stderr[-2000:])
    line = search.stderr.strip()
    assert "\n" not in line and "is damaged" in line and "rag ingest --repair" in line and name in line, line
    persisted["corpus"].rename(persisted["corpus"].with_suffix(".away"))  # no corpus file to read
    try:
        repair = cli(data, "ingest", "--repair")
    finally:
        persisted["corpus"].with_suffix(".away").rename(persisted["corpus"])
    assert repair.returncode == 0, repair.stderr[-2000:]
    assert_equals(data, persisted)


@pytest.mark.slow
def test_the_next_ingest_repairs_cut_short_vector_files(persisted: dict, tmp_path: Path) -> None:
    data = cut_short(persisted, tmp_path, "index_metadata.pickle")
    result = cli(data, "ingest", str(persisted["corpus"]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "repaired" in result.stderr
    assert_equals(data, persisted)


@pytest.mark.slow
def test_a_restore_killed_between_its_steps_is_completed_by_the_next_command(
    persisted: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The damaged records are deleted only once their copy is complete; a kill right after that deletion
    leaves the copy alone, which the next command puts in place."""
    from rag import store as store_mod

    data = cut_short(persisted, tmp_path, "index_metadata.pickle", "abstracts-papers")
    settings = build_settings(data_dir=data, embed_backend="hashing")
    store = store_mod.open_store(settings, repairing=True)
    monkeypatch.setattr(store_mod, "_finish_restore", lambda *args: None)  # the kill: after the copy, before the swap
    client = store_mod.connect(settings)
    store_mod._restore_papers(client, store)
    client.delete_collection(store.papers.name)
    monkeypatch.undo()
    assert cli(data, "search", "--json", "speech recognition").returncode == 0
    assert_equals(data, persisted)
