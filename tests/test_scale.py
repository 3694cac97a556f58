"""What lets the index grow: paged Chroma reads and writes, and a lexical cache that is derived from
the collection, rebuilt once when another client changed it, and otherwise opened from disk."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from conftest import SMALL, SMALL_PAPERS

from rag import lexicon
from rag import store as store_mod
from rag.ingest import ingest
from rag.retrieve import Retriever
from rag.store import open_store

NEW_PAPER = {
    "id": "tidal-kites",
    "title": "Tethered Kites Harvest Tidal Currents",
    "date": "2024-05-02",
    "abstract": "We moor an underwater kite that flies figure-eight paths in tidal streams and drives a generator, "
    "producing four times the power of a fixed turbine of the same area.",
}


def test_every_read_and_write_is_paged(tmp_path, make_settings, embedder, monkeypatch):
    """With pages of 3 records, a 12-paper corpus needs many calls; nothing may be lost between them."""
    monkeypatch.setattr(store_mod, "PAGE", 3)
    s = make_settings(data_dir=tmp_path / "index", corpus_paths=[SMALL])
    first = ingest([SMALL], s, embedder)
    store = open_store(s)
    assert first.added == SMALL_PAPERS
    assert len({pid for pid, _, _ in store.records()}) == SMALL_PAPERS
    assert len(Retriever(s, embedder)) == SMALL_PAPERS
    again = ingest([SMALL], s, embedder)
    assert (again.unchanged, again.embedded, again.deleted) == (SMALL_PAPERS, 0, 0)


@pytest.mark.slow
def test_two_clients_of_one_server_see_each_others_ingests(
    chroma_server, make_settings, embedder, tmp_path, monkeypatch
):
    """Each client keeps its own lexical cache; after the other one ingests, the stale cache is rebuilt
    once and the new paper is found; an unchanged index is opened from the cache without a rebuild."""
    host, port = chroma_server
    collection = f"test_{uuid.uuid4().hex[:8]}"
    a, b = (
        make_settings(
            data_dir=tmp_path / name, corpus_paths=[SMALL], chroma_host=host, chroma_port=port, collection=collection
        )
        for name in ("machine-a", "machine-b")
    )
    ingest([SMALL], a, embedder)
    question = "underwater kite flying figure-eight paths in tidal streams"
    assert NEW_PAPER["title"] not in [h.paper.title for h in Retriever(b, embedder).search(question, 3)]

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "kites.jsonl").write_text(json.dumps(NEW_PAPER) + "\n")
    for path in SMALL.iterdir():
        shutil.copy(path, extra / path.name)
    assert ingest([extra], a, embedder).added == 1

    found = Retriever(b, embedder).search(question, 3)
    assert found[0].paper.title == NEW_PAPER["title"]
    lexical = Retriever(b, embedder).search(question, 3, method="bm25")  # the cache, not Chroma, found it
    assert lexical[0].paper.title == NEW_PAPER["title"]

    def no_rebuild(*_args, **_kwargs):
        raise AssertionError("an unchanged index was rebuilt instead of opened from the cache")

    monkeypatch.setattr(lexicon.Lexicon, "build", classmethod(no_rebuild))
    again = Retriever(b, embedder).search(question, 3)
    assert [h.paper.paper_id for h in again] == [h.paper.paper_id for h in found]
