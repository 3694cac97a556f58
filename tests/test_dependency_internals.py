"""What the package reads of its dependencies beyond their public API, pinned here so that an upgrade
which changes it fails these tests instead of quietly changing answers:

- `re._parser` (rag/cuegate.py): the parse tree of the injection patterns, to derive their must-contain strings;
- the openai client's `_prepare_options` and `_calculate_retry_timeout` (rag/llm.py): the hooks that bound
  every attempt and retry of a call by one time budget;
- bm25s's `scores` CSC arrays and `vocab_dict` (rag/lexicon.py): document frequencies and the papers holding a term;
- bm25s's saved files and scoring functions (rag/bm25_write.py): it writes the index bm25s loads;
- Chroma's sqlite tables and HNSW file header (rag/store_faults.py): damage checks and `rag ingest --repair`.

bibtexparser's `_transform_python_value_string` (rag/formats.py, a bare `%` kept) is pinned by its
behaviour in tests/test_formats.py.
"""

from __future__ import annotations

import inspect
import json
import sqlite3
import threading
from array import array
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_re_parser_gives_the_tree_the_injection_gate_reads():
    from re import _parser

    parsed = list(_parser.parse(r"(?<=_)\bignore|rules?(?:x)+"))
    assert len(parsed) == 1 and str(parsed[0][0]) == "BRANCH"
    first, second = parsed[0][1][1]
    (look, (direction, inner)), (at, where) = list(first)[:2]
    assert str(look) == "ASSERT" and direction == -1 and list(inner) == [(_parser.LITERAL, ord("_"))]
    assert str(at) == "AT" and str(where) == "AT_BOUNDARY"
    repeats = [av for op, av in second if str(op) == "MAX_REPEAT"]
    assert repeats and repeats[0][0] == 0 and repeats[0][1] == 1  # (min, max, subpattern)


class _TooManyRequestsOnce(BaseHTTPRequestHandler):
    calls = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        type(self).calls += 1
        status, body = (
            (429, b'{"error": {"message": "slow down"}}')
            if self.calls == 1
            else (200, b'{"object": "list", "data": []}')
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_the_openai_client_calls_the_retry_hooks_the_llm_budget_overrides():
    import openai

    seen: list[str] = []

    class Recording(openai.OpenAI):
        def _prepare_options(self, options):  # type: ignore[override]
            seen.append("prepare")
            return super()._prepare_options(options)

        def _calculate_retry_timeout(self, remaining_retries, options, response_headers=None):  # type: ignore[override]
            seen.append("retry")
            return super()._calculate_retry_timeout(remaining_retries, options, response_headers)

    params = list(inspect.signature(openai.OpenAI._calculate_retry_timeout).parameters)
    assert params == ["self", "remaining_retries", "options", "response_headers"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TooManyRequestsOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Recording(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="x", max_retries=1)
        assert list(client.models.list()) == []
    finally:
        server.shutdown()
    assert seen.count("retry") == 1 and seen.count("prepare") >= 1


def test_bm25s_keeps_document_frequencies_in_its_csc_scores(tmp_path: Path):
    import bm25s

    vocab: dict[str, int] = {}
    docs = [
        [vocab.setdefault(t, len(vocab)) for t in doc.split()]
        for doc in ("fp8 training speedup", "fp8 memory", "lora adapters")
    ]
    bm25 = bm25s.BM25()
    bm25.index((docs, vocab), show_progress=False)  # ids and vocabulary of our own, as the lexicon builds them
    bm25.save(str(tmp_path / "bm25"), show_progress=False)
    for index in (bm25, bm25s.BM25.load(str(tmp_path / "bm25"), mmap=True)):
        indptr = np.asarray(index.scores["indptr"])
        frequency = np.diff(indptr)
        assert frequency[index.vocab_dict["fp8"]] == 2 and frequency[index.vocab_dict["lora"]] == 1
        fp8 = index.vocab_dict["fp8"]
        assert sorted(np.asarray(index.scores["indices"][indptr[fp8] : indptr[fp8 + 1]]).tolist()) == [0, 1]


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def test_chroma_keeps_the_sqlite_tables_and_hnsw_header_the_index_reads(tmp_path: Path):
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp_path))
    papers = client.create_collection("papers", metadata={"hnsw:space": "cosine", "stamp": "v1"})
    vectors = np.random.default_rng(0).random((20, 8)).tolist()
    papers.add(
        ids=[f"p{i}" for i in range(20)],
        embeddings=vectors,
        documents=[f"abstract {i}" for i in range(20)],
        metadatas=[{"year": 2020 + i % 3, "tags": ["a", "b"]} for i in range(20)],
    )
    assert papers.query(query_embeddings=[vectors[3]], n_results=1)["ids"] == [["p3"]]
    with sqlite3.connect(tmp_path / "chroma.sqlite3") as db:
        assert {"id", "scope", "collection"} <= _columns(db, "segments") and {"id", "name"} <= _columns(
            db, "collections"
        )
        assert {"segment_id", "seq_id"} <= _columns(db, "max_seq_id") and {"seq_id", "topic"} <= _columns(
            db, "embeddings_queue"
        )
        assert {"collection_id", "key", "str_value", "int_value", "float_value", "bool_value"} <= _columns(
            db, "collection_metadata"
        )
        assert {"id", "segment_id", "embedding_id"} <= _columns(db, "embeddings")
        scopes = dict(
            db.execute(
                "SELECT s.scope, s.id FROM segments s JOIN collections c ON s.collection = c.id WHERE c.name = 'papers'"
            )
        )
        stamp = db.execute("SELECT str_value FROM collection_metadata WHERE key = 'stamp'").fetchone()
        rows = db.execute(
            "SELECT m.key, m.string_value, m.int_value FROM embedding_metadata m JOIN embeddings e ON e.id = m.id "
            "WHERE e.segment_id = ? AND e.embedding_id = 'p1'",
            (scopes["METADATA"],),
        ).fetchall()
        tags = db.execute(
            "SELECT string_value FROM embedding_metadata_array m JOIN embeddings e ON e.id = m.id "
            "WHERE e.embedding_id = 'p1' ORDER BY m.rowid"
        ).fetchall()
    assert stamp == ("v1",) and ("chroma:document", "abstract 1", None) in rows and ("year", None, 2021) in rows
    assert tags == [("a",), ("b",)]
    segment = tmp_path / scopes["VECTOR"]
    header = (segment / "header.bin").read_bytes()
    capacity, per_element = (int.from_bytes(header[at : at + 8], "little") for at in (12, 28))
    assert len(header) == 100 and int.from_bytes(header[:4], "little") == 1  # layout 1, as rag/store_faults.py reads it
    assert per_element >= 8 * 4 and (segment / "data_level0.bin").stat().st_size == capacity * per_element
    assert (segment / "length.bin").stat().st_size == 4 * capacity and (segment / "link_lists.bin").exists()


@pytest.mark.parametrize("block", [7, 1 << 22])  # many blocks (a common term holds more pairs than one), or one
def test_our_bm25s_files_are_those_bm25s_writes(tmp_path: Path, monkeypatch, block: int):
    """rag/bm25_write.py writes bm25s's saved index without bm25s's in-memory build: the same arrays, dtypes,
    vocabulary and parameters, and bm25s loads them and scores a query the same."""
    import bm25s

    from rag import bm25_write
    from rag.corpus import load
    from rag.text import terms

    vocab: dict[str, int] = {}
    papers = load([ROOT / "data" / "corpus"]).papers[:80]
    ids = [array("I", [vocab.setdefault(t, len(vocab)) for t in terms(p.abstract)]) for p in papers]
    reference = bm25s.BM25()
    reference.index((ids, dict(vocab)), show_progress=False)
    reference.save(str(tmp_path / "bm25s"), show_progress=False)
    spill = bm25_write.Spill(tmp_path)
    for doc in ids:
        spill.add(doc)
    spill.close()
    monkeypatch.setattr(bm25_write, "BLOCK", block)
    bm25_write.write(tmp_path / "ours", spill, vocab)
    for name in ("data", "indices", "indptr"):
        theirs, ours = (np.load(tmp_path / d / f"{name}.csc.index.npy") for d in ("bm25s", "ours"))
        assert theirs.dtype == ours.dtype and np.array_equal(theirs, ours), name
    for name in ("vocab", "params"):
        theirs, ours = (json.loads((tmp_path / d / f"{name}.index.json").read_text()) for d in ("bm25s", "ours"))
        assert theirs == ours, name
    loaded = bm25s.BM25.load(str(tmp_path / "ours"), mmap=True)
    query = terms("memory of the KV cache during long context inference")
    assert (
        np.array_equal(loaded.get_scores(query), reference.get_scores(query)) and reference.get_scores(query).max() > 0
    )
