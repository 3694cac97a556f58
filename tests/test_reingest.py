"""Re-ingesting files that did not change: the index's record of what its last clean ingest read lets
such a run skip parsing the files and reading the stored records. Anything else (an edited, added or
removed file, other settings, an interrupted ingest, a file with problems) reads everything again."""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from conftest import LANG_FILE, SCI_FILE, SMALL
from rich.console import Console

from rag import console, write
from rag import corpus as corpus_mod
from rag import ingest as ingest_mod
from rag import store as store_mod
from rag.embed import HashingEmbedding
from rag.ingest import INGEST_KEY, ingest
from rag.lexicon import Lexicon, cache_dir
from rag.safety import CLASSIFIER
from rag.store import open_store

PAPERS = 9  # LANG_FILE (5) and SCI_FILE (4)


@pytest.fixture
def hashing() -> HashingEmbedding:
    return HashingEmbedding()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A private copy of two fixture files."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in (LANG_FILE, SCI_FILE):
        shutil.copy(SMALL / name, folder / name)
    return folder


class Reads:
    """Counts what a re-ingest reads: corpus parses and full passes over the stored records."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.parses = self.records = 0
        scan, records = corpus_mod.scan, store_mod.Store.records

        def counted_scan(*args, **kwargs):
            self.parses += 1
            return scan(*args, **kwargs)

        def counted_records(store, *args, **kwargs):
            self.records += 1
            return records(store, *args, **kwargs)

        monkeypatch.setattr(corpus_mod, "scan", counted_scan)
        monkeypatch.setattr(store_mod.Store, "records", counted_records)

    @property
    def none(self) -> bool:
        return (self.parses, self.records) == (0, 0)


def edit_abstract(path: Path, keep_stat: bool) -> None:
    """Change one letter of the first abstract; with `keep_stat` the size and mtime stay as they were."""
    stat = path.stat()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    abstract = rows[0]["abstract"]
    rows[0]["abstract"] = abstract[:-2] + ("X" if abstract[-2] != "X" else "Y") + abstract[-1]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if keep_stat:
        assert path.stat().st_size == stat.st_size
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_unchanged_files_are_neither_parsed_nor_compared(folder, settings, hashing, monkeypatch):
    ingest([folder], settings, hashing)
    reads = Reads(monkeypatch)
    again = ingest([folder], settings, hashing)
    assert reads.none, (reads.parses, reads.records)
    assert again.corpus is None and (again.unchanged, again.added, again.embedded, again.deleted) == (PAPERS, 0, 0, 0)


def test_the_summary_line_counts_the_unread_papers_as_unchanged(folder, settings, hashing, monkeypatch):
    ingest([folder], settings, hashing)
    out = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=out, width=200))
    assert console.run_ingest(settings, [folder], hashing) == 0
    assert f"{PAPERS} papers: 0 added, 0 changed, 0 relabelled, 0 deleted, {PAPERS} unchanged" in out.getvalue()


@pytest.mark.parametrize("keep_stat", [False, True], ids=["edited", "edited-same-size-and-mtime"])
def test_an_edited_file_is_read_again(folder, settings, hashing, monkeypatch, keep_stat):
    ingest([folder], settings, hashing)
    edit_abstract(folder / LANG_FILE, keep_stat)
    reads = Reads(monkeypatch)
    report = ingest([folder], settings, hashing)
    assert reads.parses == 1
    assert (report.added, report.deleted, report.unchanged) == (1, 1, PAPERS - 1)  # the id is a hash of the text
    assert ingest([folder], settings, hashing).corpus is None  # and the next run is quick again


def test_an_added_file_is_read_and_a_removed_one_is_pruned(folder, settings, hashing, monkeypatch):
    ingest([folder], settings, hashing)
    shutil.copy(SMALL / "abstracts.txt", folder / "abstracts.txt")
    added = ingest([folder], settings, hashing)
    assert added.corpus is not None and (added.added, added.unchanged) == (3, PAPERS)
    (folder / "abstracts.txt").unlink()
    kept = ingest([folder], settings, hashing)  # an unread file's papers stay without --prune
    assert kept.corpus is not None and (kept.deleted, kept.unchanged) == (0, PAPERS)
    pruned = ingest([folder], settings, hashing, prune=True)  # the last run read fewer files than are stored
    assert pruned.corpus is not None and (pruned.deleted, pruned.unchanged) == (3, PAPERS)
    reads = Reads(monkeypatch)
    assert ingest([folder], settings, hashing, prune=True).unchanged == PAPERS and reads.none


def test_other_settings_or_files_read_everything_again(folder, settings, hashing, monkeypatch):
    ingest([folder], settings, hashing)
    reads = Reads(monkeypatch)
    ingest([folder], settings.model_copy(update={"chunk_tokens": 64}), hashing)
    ingest([folder / LANG_FILE], settings, hashing)  # a subset: its papers' paths may change
    assert reads.parses == 2


def test_a_file_read_with_problems_is_read_and_reported_every_time(folder, settings, hashing):
    with (folder / LANG_FILE).open("a") as f:
        f.write("{not json\n")
    for _ in range(2):
        report = ingest([folder], settings, hashing)
        assert report.corpus is not None and len(report.corpus.problems) == 1
    assert open_store(settings).stamp()[INGEST_KEY] == ""


def test_an_ingest_that_stops_before_its_stamp_leaves_no_record(folder, settings, hashing, monkeypatch):
    """Killed after its writes: restoring the old file must not let the next run trust the old record."""
    ingest([folder], settings, hashing)
    original = (folder / LANG_FILE).read_bytes()
    edit_abstract(folder / LANG_FILE, keep_stat=False)

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(ingest_mod, "_stamp", killed)
        with pytest.raises(KeyboardInterrupt):
            ingest([folder], settings, hashing)
    (folder / LANG_FILE).write_bytes(original)
    report = ingest([folder], settings, hashing)
    assert report.corpus is not None and (report.added, report.deleted) == (1, 1)
    fresh = settings.model_copy(update={"data_dir": settings.data_dir.parent / "fresh"})
    ingest([folder], fresh, hashing)
    assert open_store(settings).stamp()["version"] == open_store(fresh).stamp()["version"]


def test_records_missing_since_the_last_ingest_are_noticed(folder, settings, hashing):
    """Another writer (say an older rag) deleted a paper without touching the record: the counts differ."""
    ingest([folder], settings, hashing)
    store = open_store(settings)
    gone = store.papers.get(limit=1)["ids"]
    store.papers.delete(ids=gone)
    report = ingest([folder], settings, hashing)
    assert report.corpus is not None and report.added == 1


def test_chunk_ids_are_read_only_when_their_total_disagrees_with_the_records(folder, settings, hashing, monkeypatch):
    ingest([folder], settings, hashing)
    edit_abstract(folder / LANG_FILE, keep_stat=False)
    with monkeypatch.context() as mp:
        mp.setattr(
            store_mod.Store, "chunk_counts", lambda _store: pytest.fail("chunk ids read though the totals agree")
        )
        assert ingest([folder], settings, hashing).added == 1
    store = open_store(settings)
    several = next(pid for pid, meta, _ in store.records() if meta["n_chunks"] > 1)
    store.chunks.delete(ids=[f"{several}:1"])  # damage: a record that lacks a chunk
    repaired = ingest([folder], settings, hashing)
    assert (repaired.repaired, repaired.embedded) == (1, store.papers.get(ids=[several])["metadatas"][0]["n_chunks"])


def test_records_of_an_older_version_get_spans_and_verdicts_without_embedding(folder, settings, hashing, monkeypatch):
    """An index built by an older classifier, before sentence spans and clean marks were stored: the
    next ingest rewrites those records only, so searches then neither split nor classify them."""
    with monkeypatch.context() as mp:
        for module in (ingest_mod, write):  # what the records say, and what the ingest key says
            mp.setattr(module, "CLASSIFIER", "older")
        ingest([folder], settings, hashing)
    store = open_store(settings)
    got = store.papers.get(include=["metadatas", "documents", "embeddings"])
    bare = [{k: v for k, v in m.items() if k not in ("spans", "clean")} for m in got["metadatas"]]
    store.papers.upsert(ids=got["ids"], documents=got["documents"], metadatas=bare, embeddings=got["embeddings"])
    chunks = store.chunks.get(include=["metadatas"])
    report = ingest([folder], settings, hashing)
    assert (report.refreshed, report.embedded, report.unchanged, report.relabelled) == (PAPERS, 0, 0, 0)
    metas = store.papers.get(include=["metadatas"])["metadatas"]
    assert all(m["classified"] == CLASSIFIER and m["spans"] and m["clean"] for m in metas)
    assert store.chunks.get(include=["metadatas"]) == chunks  # the chunks were not touched
    again = ingest([folder], settings, hashing)
    assert (again.unchanged, again.refreshed) == (PAPERS, 0)


def test_the_quick_path_still_rebuilds_a_missing_lexical_cache(folder, settings, hashing, monkeypatch):
    ingest([folder], settings, hashing)
    shutil.rmtree(cache_dir(settings))
    assert ingest([folder], settings, hashing).corpus is None
    reads = Reads(monkeypatch)
    assert len(Lexicon.open(settings, open_store(settings))) == PAPERS and reads.none


def two_machines(chroma_server, make_settings, tmp_path: Path) -> tuple:
    """Settings of two clients of one Chroma server and collection, each with its own data folder."""
    host, port = chroma_server
    collection = f"test_{uuid.uuid4().hex[:8]}"
    return tuple(
        make_settings(data_dir=tmp_path / name, chroma_host=host, chroma_port=port, collection=collection)
        for name in ("machine-a", "machine-b")
    )


@pytest.mark.slow
def test_two_clients_of_one_server_share_the_record(
    chroma_server, make_settings, folder, hashing, tmp_path, monkeypatch
):
    """B re-ingesting the files A ingested reads nothing; once A ingests more, B reads its files again."""
    a, b = two_machines(chroma_server, make_settings, tmp_path)
    ingest([folder], a, hashing)
    reads = Reads(monkeypatch)
    assert ingest([folder], b, hashing).unchanged == PAPERS and reads.parses == 0
    assert reads.records == 1  # only to build B's own lexical cache
    extra = tmp_path / "extra.txt"
    shutil.copy(SMALL / "abstracts.txt", extra)
    assert ingest([folder, extra], a, hashing).added == 3
    again = ingest([folder], b, hashing)
    assert reads.parses == 2 and again.corpus is not None  # A's ingest, then B's
    assert (again.unchanged, again.deleted) == (PAPERS, 0)  # A's extra papers stay
    assert len(Lexicon.open(b, open_store(b))) == PAPERS + 3


@pytest.mark.slow
def test_a_long_running_server_answers_from_what_another_machine_ingested(
    chroma_server, make_settings, folder, hashing, tmp_path
):
    """B's API engine, opened before A ingests more, finds A's new papers by their words on the next request."""
    from rag.answer import Engine
    from rag.app import EngineHolder
    from rag.retrieve import Retriever

    a, b = two_machines(chroma_server, make_settings, tmp_path)
    ingest([folder], a, hashing)
    holder = EngineHolder(b, Engine(b, Retriever(b, hashing, open_store(b)), None))
    before = holder.get()
    assert holder.get() is before  # nothing changed: the same engine, nothing reopened
    extra = tmp_path / "extra.txt"
    shutil.copy(SMALL / "abstracts.txt", extra)
    new = corpus_mod.load([extra]).papers[0]
    words = " ".join(new.abstract.split()[:15])
    assert ingest([folder, extra], a, hashing).added == 3
    assert new.paper_id not in [h.paper.paper_id for h in before.retriever.search(words, method="bm25")]
    after = holder.get()
    assert after is not before and len(after.retriever) == PAPERS + 3
    assert after.retriever.search(words, method="bm25")[0].paper.paper_id == new.paper_id
    assert holder.get() is after
