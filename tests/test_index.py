"""The Chroma index: first and incremental ingest, chunk storage, damaged files, pruning, both Chroma modes."""

from __future__ import annotations

import codecs
import json
import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import LANG_FILE, SCI_FILE, SMALL, SMALL_PAPERS, TXT_FILE, free_port

from rag import corpus as corpus_mod
from rag.chunk import chunk_paper, embed_text
from rag.errors import StoreError
from rag.ingest import ingest
from rag.retrieve import Retriever
from rag.store import connect, open_store

# ---------------------------------------------------------------- helpers


class RecordingEmbedder:
    """The real embedder, noting every text `ingest` sends it (so a test can see what was embedded)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.texts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def get_text_embedding_batch(self, texts, **kwargs):
        self.texts.extend(texts)
        return self.inner.get_text_embedding_batch(texts, **kwargs)


def stored_chunks(store) -> tuple[list[str], list[str], list[dict]]:
    """Ids, texts and metadata of every stored chunk (paged, as Chroma needs beyond ~32k records).
    A chunk's text is its record's abstract[start:end]: chunks store no document."""
    abstracts = {pid: abstract for pid, _, abstract in store.records(include_documents=True)}
    ids, docs, metas = [], [], []
    while (got := store.chunks.get(limit=1000, offset=len(ids), include=["documents", "metadatas"]))["ids"]:
        assert got["documents"] == [None] * len(got["ids"])
        ids += got["ids"]
        docs += [abstracts[m["paper_id"]][m["start"] : m["end"]] for m in got["metadatas"]]
        metas += got["metadatas"]
    return ids, docs, metas


def by_paper(store) -> dict[str, dict[str, tuple[str, dict]]]:
    """paper_id -> {chunk_id: (text, metadata)} of everything stored."""
    ids, docs, metas = stored_chunks(store)
    out: dict[str, dict[str, tuple[str, dict]]] = {}
    for cid, doc, meta in zip(ids, docs, metas):
        out.setdefault(meta["paper_id"], {})[cid] = (doc, meta)
    return out


def vectors(store, ids: list[str]) -> dict[str, np.ndarray]:
    got = store.chunks.get(ids=ids, include=["embeddings"])
    return {cid: np.asarray(vec, dtype=np.float64) for cid, vec in zip(got["ids"], got["embeddings"])}


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def papers_of(path: Path):
    papers, problems = corpus_mod.read_file(path)
    assert not problems
    return papers


def counts(report) -> dict[str, int]:
    return {k: getattr(report, k) for k in ("added", "updated", "relabelled", "deleted", "unchanged", "embedded")}


def expected_chunks(papers, embedder, settings) -> int:
    return sum(len(chunk_paper(p, embedder.count_tokens, settings.chunk_tokens)) for p in papers)


@pytest.fixture
def lang_index(tmp_path, settings, embedder):
    """A private copy of one fixture file (5 short papers), ingested into a private index."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(SMALL / LANG_FILE, folder / LANG_FILE)
    store = open_store(settings)
    report = ingest([folder], settings, embedder, store=store)
    assert report.added == 5 and report.embedded == 5
    return SimpleNamespace(folder=folder, file=folder / LANG_FILE, store=store, settings=settings)


# ---------------------------------------------------------------- first ingest and re-ingest


def test_first_ingest_embeds_every_chunk(shared_index, small_corpus, embedder):
    report, store = shared_index.report, shared_index.store
    n_chunks = expected_chunks(small_corpus.papers, embedder, shared_index.settings)
    assert n_chunks > SMALL_PAPERS  # the long abstract really is split
    assert counts(report) == {
        "added": SMALL_PAPERS,
        "updated": 0,
        "relabelled": 0,
        "deleted": 0,
        "unchanged": 0,
        "embedded": n_chunks,
    }
    assert store.chunks.count() == n_chunks
    assert set(by_paper(store)) == {p.paper_id for p in small_corpus.papers}


def test_reingest_unchanged_embeds_and_deletes_nothing(shared_index, embedder):
    store = shared_index.store
    before_ids = set(stored_chunks(store)[0])
    spy = RecordingEmbedder(embedder)
    report = ingest([SMALL], shared_index.settings, spy, store=store)
    assert counts(report) == {
        "added": 0,
        "updated": 0,
        "relabelled": 0,
        "deleted": 0,
        "unchanged": SMALL_PAPERS,
        "embedded": 0,
    }
    assert spy.texts == []
    assert store.chunks.count() == len(before_ids)
    assert set(stored_chunks(store)[0]) == before_ids


def test_ingest_records_last_sync(shared_index):
    from rag.ingest import last_ingest

    record = last_ingest(shared_index.settings)
    assert record is not None
    assert record["collection"] == shared_index.settings.collection
    assert set(record["files"]) == {LANG_FILE, SCI_FILE, TXT_FILE}


# ---------------------------------------------------------------- incremental ingest


def test_edited_abstract_is_a_new_paper_and_the_old_one_is_removed(lang_index, embedder):
    rows = read_rows(lang_index.file)
    old_id = corpus_mod.paper_id(rows[1]["title"], rows[1]["abstract"])
    rows[1]["abstract"] += " Code and data are available to every participating community."
    write_rows(lang_index.file, rows)
    new_paper = next(p for p in papers_of(lang_index.file) if p.title == rows[1]["title"])
    assert new_paper.paper_id != old_id

    spy = RecordingEmbedder(embedder)
    report = ingest([lang_index.folder], lang_index.settings, spy, store=lang_index.store)

    # paper_id is a content hash: the edit is one paper added and one deleted, nothing "updated"
    assert counts(report) == {"added": 1, "updated": 0, "relabelled": 0, "deleted": 1, "unchanged": 4, "embedded": 1}
    assert spy.texts == [embed_text(new_paper, new_paper.abstract)]  # only the edited paper was embedded
    stored = by_paper(lang_index.store)
    assert old_id not in stored
    assert f"{old_id}:0" not in stored_chunks(lang_index.store)[0]
    assert [doc for doc, _ in stored[new_paper.paper_id].values()] == [new_paper.abstract]
    assert set(stored) == {p.paper_id for p in papers_of(lang_index.file)}
    assert lang_index.store.chunks.count() == 5


def test_changed_date_is_relabelled_without_embedding(lang_index, embedder):
    rows = read_rows(lang_index.file)
    pid = corpus_mod.paper_id(rows[0]["title"], rows[0]["abstract"])
    old_vec = vectors(lang_index.store, [f"{pid}:0"])[f"{pid}:0"]
    assert rows[0]["date"] == "2023-10-12"
    rows[0]["date"] = "2021-03-04"
    write_rows(lang_index.file, rows)

    spy = RecordingEmbedder(embedder)
    report = ingest([lang_index.folder], lang_index.settings, spy, store=lang_index.store)

    assert counts(report) == {"added": 0, "updated": 0, "relabelled": 1, "deleted": 0, "unchanged": 4, "embedded": 0}
    assert spy.texts == []
    ((doc, meta),) = by_paper(lang_index.store)[pid].values()
    paper = lang_index.store.get_papers([pid])[pid]
    assert (meta["year"], paper.year, paper.date, paper.date_raw) == (2021, 2021, "2021-03-04", "2021-03-04")
    assert doc == rows[0]["abstract"] == paper.abstract
    np.testing.assert_allclose(vectors(lang_index.store, [f"{pid}:0"])[f"{pid}:0"], old_vec, atol=1e-6)
    assert lang_index.store.chunks.count() == 5
    # and the next run sees nothing to do
    again = ingest([lang_index.folder], lang_index.settings, spy, store=lang_index.store)
    assert (again.unchanged, again.relabelled, again.embedded) == (5, 0, 0)


def test_removed_entry_is_deleted_with_its_chunks(lang_index, embedder):
    rows = read_rows(lang_index.file)
    gone = rows.pop(3)
    gone_id = corpus_mod.paper_id(gone["title"], gone["abstract"])
    write_rows(lang_index.file, rows)

    report = ingest([lang_index.folder], lang_index.settings, embedder, store=lang_index.store)

    # the last entry moved up one place (its stored position changed): relabelled, not re-embedded
    assert counts(report) == {"added": 0, "updated": 0, "relabelled": 1, "deleted": 1, "unchanged": 3, "embedded": 0}
    assert gone_id not in by_paper(lang_index.store)
    assert lang_index.store.chunks.get(ids=[f"{gone_id}:0"])["ids"] == []
    assert lang_index.store.chunks.count() == 4


def test_user_id_column_edit_is_an_update_and_stale_chunks_go(tmp_path, settings, embedder):
    """With an `id` column the id survives an edit: `updated` 1, and a long -> short abstract leaves no stale chunk."""
    sci = read_rows(SMALL / SCI_FILE)
    lang = read_rows(SMALL / LANG_FILE)
    long_abstract = next(r["abstract"] for r in sci if "MRI" in r["title"])
    rows = [
        {"id": "p1", "title": lang[0]["title"], "abstract": lang[0]["abstract"], "date": "2023"},
        {"id": "p2", "title": "Low-field MRI enhancement", "abstract": long_abstract, "date": "2024-02-03"},
        {"id": "p3", "title": lang[2]["title"], "abstract": lang[2]["abstract"]},
    ]
    folder = tmp_path / "corpus"
    folder.mkdir()
    path = folder / "mine.jsonl"
    write_rows(path, rows)
    store = open_store(settings)
    first = ingest([folder], settings, embedder, store=store)
    p2_chunks = sorted(by_paper(store)["p2"])
    assert first.added == 3 and len(p2_chunks) >= 2
    assert first.embedded == store.chunks.count() == 2 + len(p2_chunks)

    rows[1]["abstract"] = "A short replacement abstract about portable scanners. It fits in one chunk."
    write_rows(path, rows)
    spy = RecordingEmbedder(embedder)
    report = ingest([folder], settings, spy, store=store)

    assert counts(report) == {"added": 0, "updated": 1, "relabelled": 0, "deleted": 0, "unchanged": 2, "embedded": 1}
    assert spy.texts == [f"Low-field MRI enhancement\n{rows[1]['abstract']}"]
    stored = by_paper(store)
    assert list(stored["p2"]) == ["p2:0"]
    assert stored["p2"]["p2:0"][0] == rows[1]["abstract"]
    assert store.chunks.get(ids=p2_chunks[1:])["ids"] == []
    assert store.chunks.count() == 3


# ---------------------------------------------------------------- chunks


def test_long_abstract_is_stored_as_exact_sentence_chunks(shared_index, small_corpus, embedder):
    paper = next(p for p in small_corpus.papers if "MRI" in p.title)
    chunks = by_paper(shared_index.store)[paper.paper_id]
    assert len(chunks) >= 3
    assert sorted(chunks) == [f"{paper.paper_id}:{i}" for i in range(len(chunks))]
    spans = []
    for cid in sorted(chunks, key=lambda c: int(c.rsplit(":", 1)[1])):
        text, meta = chunks[cid]
        start, end = meta["start"], meta["end"]
        assert paper.abstract[start:end] == text
        assert embedder.count_tokens(embed_text(paper, text)) <= 256
        assert text[-1] in ".!?"  # whole sentences
        spans.append((start, end))
    assert spans[0][0] == 0 and spans[-1][1] == len(paper.abstract)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start and paper.abstract[end:start].strip() == ""  # in order, nothing lost, no overlap
    # chunks carry what a dense search filters on; the paper record carries the rest
    assert {meta["year"] for _, meta in chunks.values()} == {2024}
    assert shared_index.store.get_papers([paper.paper_id])[paper.paper_id].title == paper.title


# ---------------------------------------------------------------- damaged files never lose indexed papers


GARBAGE = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00" * 20,
    "bad-utf16": codecs.BOM_UTF16_LE + b"\x00\xd8",
    "empty": b"",
}


def _two_file_folder(tmp_path: Path) -> tuple[Path, Path, Path]:
    folder = tmp_path / "corpus"
    folder.mkdir()
    keep = folder / "keep.jsonl"
    write_rows(keep, read_rows(SMALL / LANG_FILE)[:3])
    victim = folder / "victim.txt"
    victim.write_text("".join(line + "\n" for line in (SMALL / TXT_FILE).read_text().splitlines()[:2]))
    return folder, keep, victim


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_unreadable_file_keeps_its_indexed_papers(tmp_path, settings, embedder, kind):
    folder, keep, victim = _two_file_folder(tmp_path)
    store = open_store(settings)
    ingest([folder], settings, embedder, store=store)
    victim_ids = {p.paper_id for p in papers_of(victim)}
    victim_chunks = {cid for pid in victim_ids for cid in by_paper(store)[pid]}
    rows = read_rows(keep)
    dropped = corpus_mod.paper_id(rows[-1]["title"], rows[-1]["abstract"])
    write_rows(keep, rows[:-1])  # the good file changes at the same time
    victim.write_bytes(GARBAGE[kind])

    report = ingest([folder], settings, embedder, store=store)

    problems = [p for p in report.corpus.problems if p.file == "victim.txt"]
    assert len(problems) == 1 and problems[0].line is None, [str(p) for p in report.corpus.problems]
    stored = by_paper(store)
    assert victim_ids <= set(stored)  # nothing of the damaged file is lost
    assert {cid for pid in victim_ids for cid in stored[pid]} == victim_chunks
    assert dropped not in stored  # ... while the good file is still synced
    assert counts(report) == {"added": 0, "updated": 0, "relabelled": 0, "deleted": 1, "unchanged": 2, "embedded": 0}
    assert store.chunks.count() == 4


def test_file_with_no_readable_entry_keeps_its_indexed_papers(tmp_path, settings, embedder):
    """A JSONL file overwritten with something else (here CSV text) yields only line problems and no paper.

    `ingest` promises that papers of a file that could not be read stay ("a damaged file never
    empties the index"); a file of which not a single entry could be read is such a file.
    """
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(SMALL / LANG_FILE, folder / LANG_FILE)
    store = open_store(settings)
    ingest([folder], settings, embedder, store=store)
    (folder / LANG_FILE).write_text("title,abstract\nA paper,Its abstract.\n")

    report = ingest([folder], settings, embedder, store=store)

    assert report.corpus.distinct == 0 and report.corpus.problems
    assert report.deleted == 0, "every paper of the damaged file was deleted"
    assert store.chunks.count() == 5


# ---------------------------------------------------------------- which stored papers an ingest may delete


def _split_folders(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_rows(a / "a.jsonl", read_rows(SMALL / LANG_FILE)[:2])
    (b / "b.txt").write_text("".join(line + "\n" for line in (SMALL / TXT_FILE).read_text().splitlines()[:2]))
    return a, b


def test_ingesting_other_paths_keeps_papers_unless_prune(tmp_path, settings, embedder):
    a, b = _split_folders(tmp_path)
    store = open_store(settings)
    first = ingest([a, b], settings, embedder, store=store)
    assert first.added == 4
    a_ids = {p.paper_id for p in papers_of(a / "a.jsonl")}
    b_ids = {p.paper_id for p in papers_of(b / "b.txt")}

    only_a = ingest([a], settings, embedder, store=store)
    assert counts(only_a) == {"added": 0, "updated": 0, "relabelled": 0, "deleted": 0, "unchanged": 2, "embedded": 0}
    assert set(by_paper(store)) == a_ids | b_ids

    pruned = ingest([a], settings, embedder, store=store, prune=True)
    assert (pruned.deleted, pruned.embedded) == (2, 0)
    assert set(by_paper(store)) == a_ids
    assert store.chunks.count() == 2


def test_same_file_name_in_another_folder_is_not_deleted(tmp_path, settings, embedder):
    """`2023/abstracts.txt` and `2024/abstracts.txt`: re-ingesting 2024/ must leave 2023's papers alone."""
    lines = (SMALL / TXT_FILE).read_text().splitlines()
    old, new = tmp_path / "2023", tmp_path / "2024"
    old.mkdir()
    new.mkdir()
    (old / "abstracts.txt").write_text(lines[0] + "\n")
    (new / "abstracts.txt").write_text(lines[1] + "\n")
    store = open_store(settings)
    assert ingest([old, new], settings, embedder, store=store).added == 2
    old_id = papers_of(old / "abstracts.txt")[0].paper_id

    report = ingest([new], settings, embedder, store=store)

    assert report.deleted == 0, "a paper of 2023/abstracts.txt was deleted by ingesting 2024/"
    assert old_id in by_paper(store)


def test_prune_keeps_papers_of_an_unreadable_file_among_the_paths(tmp_path, settings, embedder):
    """`--prune` deletes papers whose files are *not among PATHS*; a damaged file that is among them keeps its papers."""
    folder, keep, victim = _two_file_folder(tmp_path)
    store = open_store(settings)
    ingest([folder], settings, embedder, store=store)
    victim_ids = {p.paper_id for p in papers_of(victim)}
    victim.write_bytes(GARBAGE["binary"])

    report = ingest([folder], settings, embedder, store=store, prune=True)

    assert any(p.file == "victim.txt" for p in report.corpus.problems)
    assert victim_ids <= set(by_paper(store)), "prune deleted the papers of a file that could not be read"
    assert report.deleted == 0


# ---------------------------------------------------------------- embedded and server Chroma


QUESTIONS = {
    "protecting personal information when phones jointly build a model without uploading what users typed": "Differentially Private Federated",
    "sharpening images from cheap portable magnetic scanners": "Super-Resolution of Low-Field MRI",
    "a robotic arm that learns by trial and error to pick up things it has never seen": "Learning to Grasp",
}


@pytest.fixture(scope="module")
def server_index(chroma_server, make_settings, embedder, tmp_path_factory):
    host, port = chroma_server
    s = make_settings(
        data_dir=tmp_path_factory.mktemp("server") / "index",
        corpus_paths=[SMALL],
        chroma_host=host,
        chroma_port=port,
        store=f"test_{uuid.uuid4().hex[:8]}",
    )
    store = open_store(s)
    report = ingest([SMALL], s, embedder, store=store)
    return SimpleNamespace(settings=s, store=store, report=report, retriever=Retriever(s, embedder, store))


def test_server_mode_ingests_like_embedded_mode(server_index, shared_index, embedder):
    assert counts(server_index.report) == counts(shared_index.report)
    assert server_index.store.chunks.count() == shared_index.store.chunks.count()
    assert set(stored_chunks(server_index.store)[0]) == set(stored_chunks(shared_index.store)[0])
    assert not (server_index.settings.data_dir / "chroma").exists()  # nothing written to the embedded store
    # metadata round-trips through the server: re-ingest finds everything unchanged
    again = ingest([SMALL], server_index.settings, embedder)  # opens its own connection from the settings
    assert (again.unchanged, again.embedded, again.deleted) == (SMALL_PAPERS, 0, 0)


@pytest.mark.parametrize("question", sorted(QUESTIONS))
def test_both_chroma_modes_return_the_same_top_paper(server_index, retriever, pid_of, question):
    expected = pid_of(QUESTIONS[question])
    embedded_top = retriever.search(question, k=3)
    server_top = server_index.retriever.search(question, k=3)
    assert embedded_top[0].paper.paper_id == expected
    assert server_top[0].paper.paper_id == expected
    assert [h.paper.paper_id for h in server_top] == [h.paper.paper_id for h in embedded_top]


def test_connect_to_dead_server_names_url_and_fix(make_settings, tmp_path):
    port = free_port()
    s = make_settings(data_dir=tmp_path / "index", chroma_host="127.0.0.1", chroma_port=port)
    with pytest.raises(StoreError) as info:
        connect(s)
    message = str(info.value)
    assert f"http://127.0.0.1:{port}" in message
    assert "chroma run" in message
    with pytest.raises(StoreError):
        open_store(s)


def test_collection_name_too_short_is_a_one_line_config_error(monkeypatch):
    from rag.config import get_settings
    from rag.errors import ConfigError

    monkeypatch.setenv("RAG_COLLECTION", "ab")
    with pytest.raises(ConfigError, match="RAG_COLLECTION"):
        get_settings()


def test_rebuild_drops_the_index_and_embeds_everything_again(settings):
    from rag.embed import HashingEmbedding

    embedder = HashingEmbedding()
    first = ingest([SMALL], settings, embedder)
    again = ingest([SMALL], settings, embedder, rebuild=True)
    assert (again.added, again.unchanged, again.embedded) == (SMALL_PAPERS, 0, first.embedded)
    assert open_store(settings).count() == SMALL_PAPERS


@pytest.mark.parametrize("mode", ["embedded", "server"])
def test_a_rebuild_leaves_no_list_of_a_dropped_record_to_a_new_one(
    tmp_path: Path, make_settings, request, mode
) -> None:
    """Chroma keeps a deleted collection's list-valued metadata, and sqlite reuses its row ids: without the
    clean-up in `drop`, the first record written after a rebuild carried the dropped record's file paths."""
    from rag.store import drop, open_store

    server = {}
    if mode == "server":
        host, port = request.getfixturevalue("chroma_server")
        server = {"chroma_host": host, "chroma_port": port, "store": f"test_{uuid.uuid4().hex[:8]}"}
    settings = make_settings(data_dir=tmp_path, **server)
    store = open_store(settings)
    store.papers.add(ids=["old"], documents=["x"], embeddings=[[1.0]], metadatas=[{"paths": ["/corpus/old.bib"]}])
    store = drop(settings, store)
    store.papers.add(ids=["new"], documents=["y"], embeddings=[[1.0]], metadatas=[{"year": 2020}])
    assert store.papers.get(ids=["new"])["metadatas"] == [{"year": 2020}]
