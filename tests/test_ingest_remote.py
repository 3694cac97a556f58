"""Ingest through an OpenAI-compatible embeddings endpoint: a real local HTTP server (`rag.dev.bench.FakeEmbeddings`)
that answers each request after a random pause, so requests finish out of order, counts how many are in
flight at once, and turns the first ones away with HTTP 429."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, build_settings

from rag.chunk import embed_text
from rag.dev.bench import FakeEmbeddings
from rag.embed import make_embedder
from rag.ingest import ingest
from rag.store import Store, open_store


@pytest.fixture
def endpoints() -> Iterator[list[FakeEmbeddings]]:
    made: list[FakeEmbeddings] = []
    yield made
    for server in made:
        server.close()


def remote_ingest(server: FakeEmbeddings, data_dir: Path, concurrency: int) -> tuple[Store, int]:
    settings = build_settings(
        data_dir=data_dir,
        corpus_paths=[SMALL],
        embed_backend="openai-compatible",
        embed_base_url=server.base_url,
        embed_api_key="test-key",
        embed_model="fake-embed",
        embed_batch_size=2,
        embed_concurrency=concurrency,
    )
    report = ingest([SMALL], settings, make_embedder(settings))
    return open_store(settings), report.added


def vectors(store: Store) -> dict[str, np.ndarray]:
    got = store.chunks.get(include=["embeddings"])
    return dict(zip(got["ids"], np.asarray(got["embeddings"])))


def sent_text(store: Store, cid: str) -> str:
    """What the embedder was sent for one chunk, rebuilt from the stored record."""
    _, metas, _ = store.chunks_by_id([cid])
    paper = store.get_papers([metas[0]["paper_id"]])[metas[0]["paper_id"]]
    return embed_text(paper, paper.abstract[metas[0]["start"] : metas[0]["end"]])


def test_requests_overlap_a_429_is_retried_and_the_vectors_do_not_depend_on_the_finishing_order(endpoints, tmp_path):
    busy = FakeEmbeddings(jitter=0.05, throttle=2)
    calm = FakeEmbeddings()
    endpoints += [busy, calm]
    store, added = remote_ingest(busy, tmp_path / "four", concurrency=4)
    assert added == store.count() > 0
    assert busy.throttled == 2  # turned away twice, then served: the ingest retried
    assert busy.max_in_flight >= 2, busy.max_in_flight
    serial, _ = remote_ingest(calm, tmp_path / "one", concurrency=1)
    assert calm.max_in_flight == 1
    concurrent, alone = vectors(store), vectors(serial)
    assert concurrent.keys() == alone.keys() and len(concurrent) == store.chunk_count()
    for cid, vector in concurrent.items():
        np.testing.assert_allclose(vector, alone[cid], atol=1e-6)
        np.testing.assert_allclose(vector, busy.vectors.vector(sent_text(store, cid)), atol=1e-6)
