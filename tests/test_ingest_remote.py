"""Ingest through an OpenAI-compatible embeddings endpoint: a real local HTTP server that answers each request
after a random pause (so requests finish out of order), counts how many are in flight at once, and turns
the first ones away with HTTP 429."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL, build_settings
from rag.embed import HashingEmbedding, make_embedder
from rag.ingest import ingest
from rag.store import Store, open_store


class Endpoint(ThreadingHTTPServer):
    """`/v1/embeddings` answering with the hashing embedder's vectors, listed in reverse order (the `index`
    field says which is which); the first `throttle` requests get 429 with Retry-After."""

    daemon_threads = True

    def __init__(self, throttle: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.throttle = throttle
        self.throttled = self.served = self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.rng = random.Random(7)
        self.vectors = HashingEmbedding()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: Endpoint

    def log_message(self, *_args: object) -> None:
        pass

    def do_POST(self) -> None:
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["input"]
        server = self.server
        with server.lock:
            if server.throttled < server.throttle:
                server.throttled += 1
                self._send(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}}, {"Retry-After": "0.2"})
                return
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
            pause = server.rng.uniform(0.0, 0.05)
        time.sleep(pause)
        data = [{"object": "embedding", "index": i, "embedding": server.vectors._vector(t)} for i, t in enumerate(texts)]
        with server.lock:
            server.in_flight -= 1
            server.served += 1
        self._send(200, {"object": "list", "data": data[::-1], "model": "fake-embed"})

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(raw)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint(throttle=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def remote_ingest(server: Endpoint, data_dir: Path, concurrency: int) -> tuple[Store, int]:
    settings = build_settings(
        data_dir=data_dir, corpus_paths=[SMALL], embed_backend="openai-compatible", embed_base_url=server.base_url,
        embed_api_key="test-key", embed_model="fake-embed", embed_batch_size=2, embed_concurrency=concurrency,
    )
    report = ingest([SMALL], settings, make_embedder(settings))
    return open_store(settings), report.added


def vectors(store: Store) -> dict[str, np.ndarray]:
    got = store.chunks.get(include=["embeddings"])
    return dict(zip(got["ids"], np.asarray(got["embeddings"])))


def test_requests_overlap_a_429_is_retried_and_the_vectors_do_not_depend_on_the_finishing_order(endpoint, tmp_path):
    store, added = remote_ingest(endpoint, tmp_path / "four", concurrency=4)
    assert added == store.count() > 0
    assert endpoint.throttled == 2  # turned away twice, then served: the ingest retried
    assert endpoint.max_in_flight >= 2, endpoint.max_in_flight
    one_at_a_time = Endpoint(throttle=0)
    thread = threading.Thread(target=one_at_a_time.serve_forever, daemon=True)
    thread.start()
    try:
        serial, _ = remote_ingest(one_at_a_time, tmp_path / "one", concurrency=1)
    finally:
        one_at_a_time.shutdown()
        one_at_a_time.server_close()
    assert one_at_a_time.max_in_flight == 1
    concurrent, alone = vectors(store), vectors(serial)
    assert concurrent.keys() == alone.keys() and len(concurrent) == store.chunk_count()
    for cid, vector in concurrent.items():
        np.testing.assert_allclose(vector, alone[cid], atol=1e-6)
        np.testing.assert_allclose(vector, endpoint.vectors._vector(chunk_text(store, cid)), atol=1e-6)


def chunk_text(store: Store, cid: str) -> str:
    """What the embedder was sent for one chunk, rebuilt from the stored record."""
    from rag.chunk import embed_text

    _, metas, _ = store.chunks_by_id([cid])
    paper = store.get_papers([metas[0]["paper_id"]])[metas[0]["paper_id"]]
    return embed_text(paper, paper.abstract[metas[0]["start"] : metas[0]["end"]])
