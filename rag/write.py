"""Writing papers into the store: chunk, embed and write a batch at a time, and the ledger each record keeps.

A batch's vectors are made before anything of it is deleted, so a failing embedder costs nothing; a
record is written after its chunks, so a kill at any point leaves papers the next ingest redoes.
Also here: restoring chunks from the paper records alone (`restore_vectors`), which repair and ingest share.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag import corpus as corpus_mod
from rag.chunk import chunk_paper, embed_text
from rag.config import Settings
from rag.safety import CLASSIFIER, clean_mark
from rag.store import Store, check_dimension, paper_to_meta, reset_damaged
from rag.text import sentence_spans
from rag.types import Chunk, IngestReport, Paper

Progress = Callable[[int, int], None]


def text_hash(paper: Paper) -> str:
    return hashlib.sha1(f"{paper.title}\x1f{paper.abstract}".encode()).hexdigest()[:16]


def meta_hash(paper: Paper) -> str:
    return hashlib.sha1(json.dumps(paper_to_meta(paper), sort_keys=True).encode()).hexdigest()[:16]


def batch_size(settings: Settings, embedder: Any) -> int:
    """Papers chunked, embedded and written together: a few requests' worth for each request the embedder
    keeps in flight (one, unless it says otherwise), few enough to bound memory."""
    return max(settings.embed_batch_size * 4, 64) * getattr(embedder, "in_flight", 1)


def embed_and_write(
    store: Store,
    papers: list[Paper],
    embedder: Any,
    settings: Settings,
    report: IngestReport,
    on_progress: Progress | None,
) -> int | None:
    """Chunk, embed and write a batch of papers at a time, so memory does not grow with the corpus;
    return the vectors' size (None when nothing was embedded). Three stages run side by side, each a batch
    ahead of the next: reading (sentences, classifier, chunks: CPU), embedding (a remote endpoint's
    waits, or ONNX outside the interpreter lock) and writing to Chroma, so no stage waits for another."""
    batches = _ramped(papers, batch_size(settings, embedder))
    dimension = None
    done = 0
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reading,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-ahead") as embedding,
    ):
        read = deque(reading.submit(_chunked, part, embedder, settings) for part in batches[:2])
        pending = [embedding.submit(_embedded, read.popleft(), embedder) for _ in batches[:1]]
        for i, part in enumerate(batches):
            flat, vectors = pending.pop().result()  # made before deleting: a failing embedder costs nothing
            if i + 2 < len(batches):
                read.append(reading.submit(_chunked, batches[i + 2], embedder, settings))
            if read:  # handed on, not kept: a batch's chunks go once written
                pending.append(embedding.submit(_embedded, read.popleft(), embedder))
            if len(vectors):
                dimension = vectors.shape[1]
                check_dimension(store, embedder, dimension)
            store.delete_papers([p.paper_id for p in part])
            store.add_chunks(flat, vectors)
            counts = _counts(flat)
            store.put_records(
                [(p, ledger(p, counts.get(p.paper_id, 0), embedder.model_name)) for p in part], fresh=True
            )
            report.embedded += len(flat)
            done += len(part)
            if on_progress:
                on_progress(done, len(papers))
    return dimension


def _ramped(papers: list[Paper], size: int) -> list[list[Paper]]:
    """Batches of `size` papers, the first ones smaller (an eighth, each a third larger than the one before):
    the embedder starts once a few papers are read, not a whole batch, and reading stays ahead of it."""
    batches, start, n = [], 0, max(size // 8, 1)
    while start < len(papers):
        batches.append(papers[start : start + n])
        start, n = start + n, min(size, n + max(n // 3, 1))
    return batches


def _chunked(papers: list[Paper], embedder: Any, settings: Settings) -> list[tuple[Paper, Chunk]]:
    """Every chunk of these papers, in order, their sentences read and classified first."""
    read_sentences(papers)
    return [(p, c) for p in papers for c in chunk_paper(p, embedder.count_tokens, settings.chunk_tokens)]


def _embedded(chunked: Future, embedder: Any) -> tuple[list[tuple[Paper, Chunk]], np.ndarray]:
    """The chunks of a batch being read, once read, with their vectors."""
    flat = chunked.result()
    return flat, _vectors(flat, embedder)


def _chunk_and_embed(
    papers: list[Paper], embedder: Any, settings: Settings
) -> tuple[list[tuple[Paper, Chunk]], np.ndarray]:
    """Every chunk of these papers, in order, with its vector."""
    flat = _chunked(papers, embedder, settings)
    return flat, _vectors(flat, embedder)


def _vectors(flat: list[tuple[Paper, Chunk]], embedder: Any) -> np.ndarray:
    """Row i is the vector of chunk i."""
    return _embed(embedder, [embed_text(p, c.text) for p, c in flat])


def _counts(flat: list[tuple[Paper, Chunk]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p, _ in flat:
        counts[p.paper_id] = counts.get(p.paper_id, 0) + 1
    return counts


def _embed(embedder: Any, texts: list[str]) -> np.ndarray:
    """Vectors as one float32 array (a Python float list costs ten times the memory)."""
    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
    vectors = embedder.get_text_embedding_batch([texts[i] for i in order])
    out = np.empty((len(texts), len(vectors[0])), dtype=np.float32)
    out[order] = np.asarray(vectors, dtype=np.float32)
    return out


def relabel(store: Store, papers: list[tuple[Paper, int]]) -> None:
    """Same text, new metadata: rewrite the chunks' filter fields and the record, no embedding."""
    store.relabel_chunks(papers)
    write_records(store, papers)


def write_records(store: Store, papers: list[tuple[Paper, int]]) -> None:
    """Write the records of papers whose chunks stay (each with its stored chunk count)."""
    embedder = store.stamp().get("embedder", "")
    read_sentences([p for p, _ in papers])
    store.put_records([(p, ledger(p, n, embedder)) for p, n in papers])


def read_sentences(papers: list[Paper]) -> None:
    """Split each abstract into sentences and classify them once, at ingest: chunking uses the spans,
    and the record keeps both, so a search never loads the sentence splitter nor classifies a paper
    again that was found clean (`safety.clean_mark`)."""
    for p in papers:
        p.spans = p.spans or tuple(sentence_spans(p.abstract))
        p.clean = clean_mark(p.title, p.abstract, p.spans)


def ledger(paper: Paper, n_chunks: int, embedder: str = "") -> dict:
    """What a record keeps for the next ingest to compare against: hashes, chunk count, classifier, embedder."""
    kept = {
        "text_hash": text_hash(paper),
        "meta_hash": meta_hash(paper),
        "n_chunks": n_chunks,
        "content": corpus_mod.paper_id(paper.title, paper.abstract),
        "classified": CLASSIFIER,  # a record from an older classifier (or before spans were stored) is refreshed
    }
    if embedder:
        kept["embedder"] = embedder
    return kept


@dataclass
class Restored:
    """What `restore_vectors` wrote again, and the store to go on with (its chunks collection may be new)."""

    store: Store
    papers: int
    chunks: int


def restore_vectors(settings: Settings, store: Store, embedder: Any, on_progress: Progress | None) -> Restored:
    """Drop a chunks collection whose vector files are damaged, then embed the chunks of every paper record
    whose stored chunks differ from its count; chunks of no record go. Records are only ever upserted:
    a kill at any point leaves them all, and the next repair (or ingest) finishes the work."""
    store = reset_damaged(settings, store)
    recorded = {pid: meta.get("n_chunks", 0) for pid, meta, _ in store.records()}
    counts = store.chunk_counts()
    store.delete_chunks(sorted(pid for pid in counts if pid not in recorded))
    redo = sorted(pid for pid, n in recorded.items() if counts.get(pid, 0) != n)
    papers = store.get_papers(redo)
    chunks = _rechunk(store, [papers[pid] for pid in redo], recorded, embedder, settings, on_progress)
    return Restored(store, len(redo), chunks)


def _rechunk(
    store: Store,
    papers: list[Paper],
    recorded: dict[str, int],
    embedder: Any,
    settings: Settings,
    on_progress: Progress | None,
) -> int:
    """Chunk and embed stored papers again, leaving their records in place (a record changes only when
    its chunk count does); return the chunks written."""
    batch = batch_size(settings, embedder)
    written = 0
    for start in range(0, len(papers), batch):
        part = papers[start : start + batch]
        flat, vectors = _chunk_and_embed(part, embedder, settings)
        store.delete_chunks([p.paper_id for p in part])
        store.add_chunks(flat, vectors)
        counts = _counts(flat)
        write_records(store, [(p, n) for p in part if (n := counts.get(p.paper_id, 0)) != recorded[p.paper_id]])
        written += len(flat)
        if on_progress:
            on_progress(start + len(part), len(papers))
    return written
