"""The Chroma index: connect (embedded or server), and ingest a corpus incrementally.

Chunks are stored through llama-index's `ChromaVectorStore`; every chunk carries its paper's
metadata, so the collection alone is the source of truth (a shared server needs nothing else).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llama_index.core.schema import TextNode

from rag import corpus as corpus_mod
from rag.chunk import chunk_paper, embed_text
from rag.config import Settings
from rag.errors import StoreError
from rag.types import IngestReport, Paper, paper_to_meta

Progress = Callable[[int, int], None]


def connect(settings: Settings) -> Any:
    """A Chroma client: `HttpClient` when RAG_CHROMA_HOST is set, else embedded `PersistentClient`."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_host:
        url = f"http://{settings.chroma_host}:{settings.chroma_port}"
        try:
            client = chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
            client.heartbeat()
        except Exception as e:  # chromadb raises several unrelated types for a dead server
            raise StoreError(
                f"cannot reach the Chroma server at {url} ({type(e).__name__}); start it with "
                f"`chroma run --host {settings.chroma_host} --port {settings.chroma_port} --path DIR` "
                "or unset RAG_CHROMA_HOST to use the embedded index"
            ) from None
        return client
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.data_dir / "chroma"), settings=chroma_settings)


def open_collection(settings: Settings, client: Any | None = None) -> Any:
    """The collection, created with cosine distance and no Chroma-side embedder (we embed ourselves)."""
    if not 3 <= len(settings.collection) <= 512:
        raise StoreError(f"collection name {settings.collection!r} must have 3-512 characters; change RAG_COLLECTION")
    client = client or connect(settings)
    return client.get_or_create_collection(settings.collection, embedding_function=None, metadata={"hnsw:space": "cosine"})


def stored_chunks(collection: Any) -> tuple[list[str], list[str], list[dict]]:
    """Ids, texts and metadata of every chunk in the collection."""
    got = collection.get(include=["documents", "metadatas"])
    return got["ids"], got["documents"], got["metadatas"]


def text_hash(paper: Paper) -> str:
    return hashlib.sha1(f"{paper.title}\x1f{paper.abstract}".encode()).hexdigest()[:16]


def meta_hash(meta: dict) -> str:
    return hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]


def ingest(
    paths: Iterable[Path],
    settings: Settings,
    embedder: Any,
    collection: Any | None = None,
    prune: bool = False,
    on_progress: Progress | None = None,
) -> IngestReport:
    """Make the index hold the papers of `paths`, embedding only what is new or changed.

    Papers stored from files outside `paths` stay unless `prune`; papers of a file that could
    not be read this time stay too, so a damaged file never empties the index.
    """
    started = time.perf_counter()
    corpus = corpus_mod.load(paths)
    collection = collection or open_collection(settings)
    report = IngestReport(corpus=corpus)

    ids, _, metas = stored_chunks(collection)
    stored: dict[str, dict] = {}
    chunk_ids: dict[str, list[str]] = {}
    for cid, meta in zip(ids, metas):
        stored.setdefault(meta["paper_id"], meta)
        chunk_ids.setdefault(meta["paper_id"], []).append(cid)

    wanted = {p.paper_id: p for p in corpus.papers}
    to_embed: list[Paper] = []
    to_relabel: list[Paper] = []
    for pid, paper in wanted.items():
        old = stored.get(pid)
        if old is None:
            report.added += 1
            to_embed.append(paper)
        elif old.get("text_hash") != text_hash(paper):
            report.updated += 1
            to_embed.append(paper)
        elif old.get("meta_hash") != meta_hash(paper_to_meta(paper)):
            report.relabelled += 1
            to_relabel.append(paper)
        else:
            report.unchanged += 1

    gone = [pid for pid, meta in stored.items() if pid not in wanted and _removed(meta, corpus.read_paths, corpus.unread_paths, prune)]
    report.deleted = len(gone)
    stale = [cid for pid in gone + [p.paper_id for p in to_embed + to_relabel] for cid in chunk_ids.get(pid, [])]

    nodes = _embed(to_embed + to_relabel, embedder, settings, report, on_progress, reuse=_vectors(collection, to_relabel, chunk_ids))
    _write(collection, stale, nodes, settings.embed_batch_size)
    report.seconds = time.perf_counter() - started
    _record_ingest(settings, report)
    return report


def _removed(meta: dict, read: set[str], unread: set[str], prune: bool) -> bool:
    """A stored paper missing from this corpus is deleted when a file it came from was read
    (so the paper was taken out of it), or with `prune` unless one of its files could not be read."""
    paths = set(meta.get("paths", "").split("|")) - {""}
    if paths & unread:
        return False
    return bool(paths & read) or prune


def _vectors(collection: Any, papers: list[Paper], chunk_ids: dict[str, list[str]]) -> dict[str, list[float]]:
    """Stored vectors of papers whose text is unchanged, so relabelling costs no embedding."""
    ids = [cid for p in papers for cid in chunk_ids.get(p.paper_id, [])]
    if not ids:
        return {}
    got = collection.get(ids=ids, include=["embeddings"])
    return {cid: list(map(float, vec)) for cid, vec in zip(got["ids"], got["embeddings"])}


def _embed(
    papers: list[Paper], embedder: Any, settings: Settings, report: IngestReport,
    on_progress: Progress | None, reuse: dict[str, list[float]],
) -> list[TextNode]:
    nodes: list[TextNode] = []
    for paper in papers:
        meta = paper_to_meta(paper)
        meta.update(text_hash=text_hash(paper), meta_hash=meta_hash(paper_to_meta(paper)))
        for chunk in chunk_paper(paper, embedder.count_tokens, settings.chunk_tokens):
            node = TextNode(id_=chunk.chunk_id, text=chunk.text, metadata={**meta, "start": chunk.start, "end": chunk.end})
            node.embedding = reuse.get(chunk.chunk_id)
            nodes.append(node)
    by_id = {p.paper_id: p for p in papers}
    # Embed in length order so each model batch pads to similar lengths (less wasted compute).
    todo = sorted((n for n in nodes if n.embedding is None), key=lambda n: len(n.text) + len(by_id[n.metadata["paper_id"]].title))
    batch = settings.embed_batch_size * 4  # several model batches per call: fewer round trips, steady progress
    for start in range(0, len(todo), batch):
        part = todo[start : start + batch]
        vectors = embedder.get_text_embedding_batch([embed_text(by_id[n.metadata["paper_id"]], n.text) for n in part])
        for node, vec in zip(part, vectors):
            node.embedding = vec
        report.embedded += len(part)
        if on_progress:
            on_progress(report.embedded, len(todo))
    return nodes


def _write(collection: Any, stale: list[str], nodes: list[TextNode], batch: int) -> None:
    """Delete replaced chunks, then add new ones; chunks not touched here are never removed."""
    from llama_index.vector_stores.chroma import ChromaVectorStore

    if stale:
        collection.delete(ids=stale)
    store = ChromaVectorStore(chroma_collection=collection)
    for start in range(0, len(nodes), batch * 8):
        store.add(nodes[start : start + batch * 8])


def _record_ingest(settings: Settings, report: IngestReport) -> None:
    """Remember when the index was last synced (shown by `rag corpus stats` and the UI)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "collection": settings.collection,
        "server": f"{settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else None,
        "files": sorted(report.corpus.per_file) if report.corpus else [],
    }
    (settings.data_dir / "last_ingest.json").write_text(json.dumps(record, indent=2))


def last_ingest(settings: Settings) -> dict | None:
    path = settings.data_dir / "last_ingest.json"
    return json.loads(path.read_text()) if path.exists() else None
