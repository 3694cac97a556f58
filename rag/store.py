"""The Chroma index, and the only module that speaks to Chroma: two collections, written so that a paper
is either wholly stored or not at all.

- `<collection>` holds chunks: vector and small metadata (paper id, offsets, year, sources) so Chroma
  can filter a dense search by year or source file. No text: a chunk is `abstract[start:end]` of its
  paper's record, and a document would cost Chroma a full-text index entry it never uses (writing
  them took a third of ingest time).
- `<collection>-papers` holds one record per paper: the abstract and its metadata, plus a ledger
  (text and metadata hashes, chunk count, embedder) that ingest writes. A record is written only after
  all of its chunks, and deleted before they change, so an ingest killed at any point leaves papers that
  the next ingest sees as missing and redoes. The collection's metadata carries a version stamp that
  derived caches (the lexical index) compare against.

Every read and write is paged: Chroma refuses a single call over ~32k records. Every failure of Chroma,
of its files or of its server becomes one `StoreError` line saying how to get going again.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunk import chunk_id
from rag.config import Settings
from rag.errors import StoreError
from rag.store_faults import (
    REPAIR_ADVICE,
    forget_deleted_lists,
    sqlite_records,
    store_error,
    transport_failure,
    vector_damage,
)
from rag.types import Chunk, Filters, Paper, decode_spans, encode_spans

PAGE = 2000  # records per Chroma read or write: well under its SQL-variable limit
EF_SEARCH = 400  # HNSW search breadth: at Chroma's default (100) the 50th-best chunk varied between runs
SCHEMA = 2  # bump when the stored layout changes; an older index must be rebuilt
CHROMA_TIMEOUT = 30.0  # seconds one request to a Chroma server may take before the command gives up
CHROMA_CONNECT_TIMEOUT = 5.0


def connect(settings: Settings) -> Any:
    """A Chroma client: `HttpClient` when RAG_CHROMA_HOST is set, else embedded `PersistentClient`."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_host:
        return _http_client(settings, chroma_settings)
    path = settings.data_dir / "chroma"

    def open_embedded() -> Any:
        path.mkdir(parents=True, exist_ok=True)
        with _quiet_stderr():  # a damaged file makes Chroma's Rust core print a panic report there
            return chromadb.PersistentClient(path=str(path), settings=chroma_settings)

    # a damaged or unreadable sqlite file raises several unrelated types: all of them are the index's problem
    return guarded(open_embedded, str(path), any_error=True)


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hold back what native code writes to stderr in this block; pass it on unless the block failed."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (an embedding host): nothing to hold back
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                held.seek(0)
                os.write(2, held.read())


def _panicked(e: BaseException) -> bool:
    """Chroma's Rust core fails on a damaged file with a PanicException, which is not an Exception."""
    return type(e).__name__ == "PanicException"


def _http_client(settings: Settings, chroma_settings: Any) -> Any:
    import chromadb

    url = f"http://{settings.chroma_host}:{settings.chroma_port}"
    try:
        _heartbeat(url)  # bounded, and first: the client's constructor sends a request with no timeout at all
        client = chromadb.HttpClient(
            host=settings.chroma_host or "", port=settings.chroma_port, settings=chroma_settings
        )
        _bounded(client)
    except Exception as e:  # chromadb raises several unrelated types for a dead server
        timeout = "Timeout" in type(e).__name__
        raise StoreError(
            f"{'no answer from' if timeout else 'cannot reach'} the Chroma server at {url} "
            f"({f'within {CHROMA_TIMEOUT:g} s' if timeout else type(e).__name__}); start it with "
            f"`chroma run --host {settings.chroma_host} --port {settings.chroma_port} --path DIR` "
            "(or resume it, if it is stopped), or unset RAG_CHROMA_HOST to use the embedded index"
        ) from None
    return client


def _timeout() -> Any:
    import httpx

    return httpx.Timeout(CHROMA_TIMEOUT, connect=min(CHROMA_CONNECT_TIMEOUT, CHROMA_TIMEOUT))


def _heartbeat(url: str) -> None:
    import httpx

    httpx.get(f"{url}/api/v2/heartbeat", timeout=_timeout()).raise_for_status()


def _bounded(client: Any) -> None:
    """Give the HTTP client's connection a deadline: a stopped server must not hang a command."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = _timeout()


class Guarded:
    """A Chroma collection whose calls fail as one `StoreError` line: a stopped or vanished server,
    a damaged index file, vectors of another size. Anything else passes through untouched."""

    CALLS = frozenset({"add", "upsert", "update", "delete", "get", "query", "count", "modify", "peek"})

    def __init__(self, collection: Any, where: str) -> None:
        self._collection = collection
        self._where = where

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._collection, name)
        if name not in self.CALLS:
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return guarded(lambda: value(*args, **kwargs), self._where)

        return call


def guarded(call: Callable[[], Any], where: str, any_error: bool = False) -> Any:
    """Run one Chroma call; its failures (Chroma's, sqlite's, the file system's, the network's, a Rust panic), or with
    `any_error` every Exception, become a StoreError. Other errors are bugs and keep their traceback."""
    from chromadb.errors import ChromaError

    try:
        return call()
    except Exception as e:
        ours = isinstance(e, (ChromaError, OSError, sqlite3.Error)) or transport_failure(e)
        if any_error or ours or "Timeout" in type(e).__name__:
            raise store_error(e, where, CHROMA_TIMEOUT) from None
        raise
    except BaseException as e:
        if _panicked(e):
            raise store_error(e, where, CHROMA_TIMEOUT) from None
        raise


def _where(settings: Settings) -> str:
    """How messages name the index: the server's URL or the embedded folder."""
    if settings.chroma_host:
        return f"http://{settings.chroma_host}:{settings.chroma_port}"
    return str(settings.data_dir / "chroma")


@dataclass
class Store:
    """The two collections of one index: paged reads, and the writes ingest and repair make."""

    chunks: Any
    papers: Any
    name: str
    client: Any  # to read the stamp afresh: a collection object keeps the metadata it was opened with
    where: str

    def stamp(self) -> dict:
        """What the last ingest wrote: content version, embedder, schema. Read afresh each time: another
        process, or another machine on a shared server, may have ingested since this store was opened."""
        papers = guarded(lambda: self.client.get_collection(self.papers.name, embedding_function=None), self.where)
        return dict(papers.metadata or {})

    def count(self) -> int:
        return self.papers.count()

    def empty(self) -> bool:
        """No paper stored yet: one row read, where `count()` scans them all (0.4 s at 100k chunks)."""
        return not _any(self.papers)

    def records(self, include_documents: bool = False) -> Iterator[tuple[str, dict, str]]:
        """(paper id, metadata, abstract or "") of every paper record, a page at a time, in id order per page."""
        include = ["metadatas", "documents"] if include_documents else ["metadatas"]
        for got in _pages(self.papers, include):
            docs = got.get("documents") or [""] * len(got["ids"])
            yield from zip(got["ids"], got["metadatas"], docs)

    def all_papers(self) -> Iterator[Paper]:
        """Every stored paper (abstracts included), a page at a time: for questions about the whole corpus."""
        for pid, meta, abstract in self.records(include_documents=True):
            yield paper_from_meta({**meta, "paper_id": pid, "abstract": abstract})

    def get_papers(self, ids: Iterable[str]) -> dict[str, Paper]:
        """The papers of `ids` that are stored (unknown ids are left out)."""
        ids = list(dict.fromkeys(ids))
        found: dict[str, Paper] = {}
        for start in range(0, len(ids), PAGE):
            got = self.papers.get(ids=ids[start : start + PAGE], include=["metadatas", "documents"])
            for pid, meta, doc in zip(got["ids"], got["metadatas"], got["documents"]):
                found[pid] = paper_from_meta({**meta, "paper_id": pid, "abstract": doc})
        return found

    def chunk_counts(self) -> Counter:
        """Stored chunks per paper id (ids only: no documents or vectors are read)."""
        counts: Counter = Counter()
        for got in _pages(self.chunks, []):
            counts.update(cid.rsplit(":", 1)[0] for cid in got["ids"])
        return counts

    def chunk_count(self) -> int:
        return self.chunks.count()

    def stored_dimension(self) -> int | None:
        """The size of the stored vectors (None: no chunk stored)."""
        got = self.chunks.get(limit=1, include=["embeddings"])
        return len(got["embeddings"][0]) if got["ids"] else None

    def set_stamp(self, stamp: dict) -> None:
        self.papers.modify(metadata=stamp)

    def nearest_chunks(
        self, vector: np.ndarray, n: int, filters: Filters, ids: list[str] | None = None
    ) -> tuple[list[str], list[dict], list[float]]:
        """Ids, metadata and cosine of the `n` chunks nearest `vector` that pass the filters (and belong to `ids`)."""
        found = self.chunks.query(
            query_embeddings=vector[None, :],
            n_results=n,
            where=chunk_filter(filters, ids),
            include=["metadatas", "distances"],
        )
        return found["ids"][0], found["metadatas"][0], [1.0 - d for d in found["distances"][0]]

    def chunks_by_id(self, ids: list[str]) -> tuple[list[str], list[dict], np.ndarray]:
        """The stored chunks of `ids` (unknown ids are left out): ids, metadata and vectors."""
        got = self.chunks.get(ids=ids, include=["metadatas", "embeddings"])
        vectors = np.asarray(got["embeddings"], dtype=np.float32) if got["ids"] else np.zeros((0, 1), dtype=np.float32)
        return got["ids"], got["metadatas"], vectors

    def delete_papers(self, ids: list[str]) -> None:
        """Record first, then chunks: a paper without a record is treated as missing and redone."""
        for start in range(0, len(ids), PAGE):
            part = ids[start : start + PAGE]
            self.papers.delete(ids=part)
            self.chunks.delete(where={"paper_id": {"$in": part}})

    def delete_chunks(self, paper_ids: list[str]) -> None:
        """The chunks of these papers, their records left in place."""
        for start in range(0, len(paper_ids), PAGE):
            self.chunks.delete(where={"paper_id": {"$in": paper_ids[start : start + PAGE]}})

    def add_chunks(self, flat: list[tuple[Paper, Chunk]], vectors: np.ndarray) -> None:
        """Chunks with their vectors (row i of `vectors` is chunk i); no documents: the text is the record's."""
        for start in range(0, len(flat), PAGE):
            part = flat[start : start + PAGE]
            self.chunks.add(
                ids=[c.chunk_id for _, c in part],
                embeddings=vectors[start : start + PAGE],
                metadatas=[
                    {"paper_id": p.paper_id, "start": c.start, "end": c.end, **_filter_fields(p)} for p, c in part
                ],
            )

    def relabel_chunks(self, papers: list[tuple[Paper, int]]) -> None:
        """Rewrite the filter fields of these papers' chunks (each paper with its stored chunk count)."""
        for start in range(0, len(papers), PAGE):
            part = papers[start : start + PAGE]
            by_paper = {p.paper_id: p for p, _ in part}
            got = self.chunks.get(
                ids=[chunk_id(p.paper_id, i) for p, n in part for i in range(n)], include=["metadatas"]
            )
            if got["ids"]:
                metas = [{**m, **_filter_fields(by_paper[m["paper_id"]])} for m in got["metadatas"]]
                self.chunks.update(ids=got["ids"], metadatas=metas)

    def put_records(self, records: list[tuple[Paper, dict]], fresh: bool = False) -> None:
        """Write paper records, each a paper and its ingest ledger (hashes, chunk count, embedder). `fresh`:
        none of them is stored (their old versions were just deleted), so Chroma need not look any up."""
        for start in range(0, len(records), PAGE):
            part = records[start : start + PAGE]
            (self.papers.add if fresh else self.papers.upsert)(
                ids=[p.paper_id for p, _ in part],
                documents=[p.abstract for p, _ in part],
                metadatas=[record_meta(p, ledger) for p, ledger in part],
                embeddings=_unit(len(part)),
            )


def _pages(collection: Any, include: list[str]) -> Iterator[dict]:
    offset = 0
    while True:
        got = collection.get(limit=PAGE, offset=offset, include=include)
        if not got["ids"]:
            return
        yield got
        offset += len(got["ids"])


def open_store(settings: Settings, client: Any | None = None, repairing: bool = False) -> Store:
    """The index's collections, created with cosine distance and no Chroma-side embedder (we embed ourselves).
    Vector files cut short by a killed ingest are refused with the way out, unless the caller is `repairing`
    them: Chroma would fail on every search, or crash the process on a short header."""
    client = client or connect(settings)
    where = _where(settings)
    if not settings.chroma_host:
        _finish_restore(client, f"{settings.collection}-papers", where)
    if not (settings.chroma_host or repairing) and (damage := vector_damage(Path(where), thorough=False)):
        name, why = next(iter(damage.items()))
        raise StoreError(
            f"the index at {where} is damaged (the vectors of collection {name!r}: {why}); " + REPAIR_ADVICE
        )
    chunks = guarded(
        lambda: client.get_or_create_collection(
            settings.collection,
            embedding_function=None,
            metadata={"schema": SCHEMA},
            configuration={"hnsw": {"space": "cosine", "ef_search": EF_SEARCH}},
        ),
        where,
    )
    papers = guarded(
        lambda: client.get_or_create_collection(f"{settings.collection}-papers", embedding_function=None), where
    )
    store = Store(Guarded(chunks, where), Guarded(papers, where), settings.collection, client, where)
    # Chunks and no paper record: an index of the first layout (its chunks carry no schema), or a
    # first ingest killed before its first records, which the next ingest completes.
    schema = (chunks.metadata or {}).get("schema") or store.stamp().get("schema")
    if not schema and _any(store.chunks) and store.empty():
        raise StoreError(
            f"collection {settings.collection!r} was written by an older version of rag; "
            "run `rag ingest --rebuild` (or set RAG_COLLECTION to a new name) to index the corpus again"
        )
    return store


def _any(collection: Any) -> bool:
    """Whether a collection holds a record: one row read, where `count()` scans them all (0.4 s at 100k chunks)."""
    return bool(collection.get(limit=1, include=[])["ids"])


def check_embedder(store: Store, embedder: Any) -> None:
    """Refuse to mix vectors of two embedders: the search would return nonsense, silently."""
    built = store.stamp().get("embedder")
    if built and built != embedder.model_name:
        raise StoreError(
            f"the index was built with embedder {built!r} but the settings choose {embedder.model_name!r}; "
            "set RAG_EMBED_BACKEND/RAG_EMBED_MODEL back, or run `rag ingest --rebuild` to re-embed everything"
        )


def check_dimension(store: Store, embedder: Any, dimension: int) -> None:
    """Refuse vectors of another size than the stored ones (the same model name may be served at another size)."""
    built = store.stamp().get("dimension")
    if built and built != dimension:
        raise StoreError(
            f"the index holds {built}-dimensional vectors but embedder {embedder.model_name!r} makes {dimension}-dimensional ones; "
            "point RAG_EMBED_BASE_URL/RAG_EMBED_MODEL back at the model it was built with, or run `rag ingest --rebuild`"
        )


def drop(settings: Settings, store: Store) -> Store:
    """Delete both collections and open them again, empty (`rag ingest --rebuild`)."""
    client = connect(settings)  # a collection's own `_client` is Chroma's internal API, which cannot create one
    for name in (store.chunks.name, store.papers.name):
        _delete_collection(client, name, _where(settings), embedded=not settings.chroma_host)
    return open_store(settings, client)


def _delete_collection(client: Any, name: str, where: str, embedded: bool) -> None:
    """Delete a collection without leaving its list-valued metadata to records written later
    (`forget_deleted_lists`): cleared from an embedded index's sqlite afterwards; a server's files are out of
    reach, so there the records are deleted first, page by page, which takes their lists with them."""
    if not embedded:
        collection = guarded(lambda: client.get_collection(name, embedding_function=None), where)
        while ids := guarded(lambda: collection.get(limit=PAGE, include=[])["ids"], where):
            guarded(lambda: collection.delete(ids=ids), where)
    guarded(lambda: client.delete_collection(name), where)
    if embedded:
        forget_deleted_lists(Path(where))


def reset_damaged(settings: Settings, store: Store) -> Store:
    """The store with damaged vector files dealt with: paper records copied back from sqlite, a chunks
    collection dropped (its papers then lack chunks, which a repair embeds again). Embedded index only."""
    if settings.chroma_host or not (damage := vector_damage(Path(store.where))):
        return store
    client = connect(settings)
    if store.papers.name in damage:
        _restore_papers(client, store)
    if store.name in damage:
        _delete_collection(client, store.chunks.name, store.where, embedded=True)
    return open_store(settings, client, repairing=True)


RESTORING = "restoring"  # metadata of `<papers>-restore` while its copy of the records is incomplete


def _restore_papers(client: Any, store: Store) -> None:
    """Write the paper records again, read from sqlite itself: Chroma refuses every read of a collection whose
    vector files are damaged, but the records (abstracts and all) are whole in its metadata tables. They go
    to a side collection first, which replaces the damaged one only once complete, so a kill at any point
    leaves the records in one of the two (`_finish_restore` completes the swap)."""
    records, stamp = sqlite_records(Path(store.where), store.papers.name)
    side = f"{store.papers.name}-restore"
    with suppress(Exception):  # none left over from a killed restore: that one is redone from scratch
        client.delete_collection(side)
    forget_deleted_lists(Path(store.where))
    copy = Guarded(guarded(lambda: client.create_collection(side, embedding_function=None), store.where), store.where)
    copy.modify(metadata={**stamp, RESTORING: "yes"})
    for start in range(0, len(records), PAGE):
        part = records[start : start + PAGE]
        copy.add(
            ids=[r[0] for r in part],
            metadatas=[r[1] for r in part],
            documents=[r[2] for r in part],
            embeddings=_unit(len(part)),
        )
    copy.modify(metadata={**stamp, RESTORING: ""})
    _finish_restore(client, store.papers.name, store.where)


def _finish_restore(client: Any, papers: str, where: str) -> None:
    """Put a complete restored copy of the paper records in place of the damaged collection."""
    try:
        copy = client.get_collection(f"{papers}-restore", embedding_function=None)
    except Exception:  # chromadb raises NotFoundError or ValueError, by version: no restore under way
        return
    if (copy.metadata or {}).get(RESTORING):
        return  # incomplete: the original is still there, and the next repair starts the copy again
    with suppress(Exception):  # already gone when a kill fell between this and the rename
        client.delete_collection(papers)
    forget_deleted_lists(Path(where))
    guarded(lambda: copy.modify(name=papers), where)


def _unit(n: int) -> np.ndarray:
    """Paper records are not searched by vector; Chroma still wants one, so each gets [1.0]."""
    return np.ones((n, 1), dtype=np.float32)


def _filter_fields(paper: Paper) -> dict:
    """Chunk metadata that a dense search filters on (-1: year unknown)."""
    fields: dict = {"year": -1 if paper.year is None else paper.year}
    if paper.sources:
        fields["sources"] = list(paper.sources)
    return fields


def chunk_filter(filters: Filters, ids: list[str] | None = None) -> dict | None:
    """The filters as a Chroma metadata filter on chunks (year -1 = unknown never passes a year filter);
    `ids`: the only papers a category or venue filter lets through."""
    clauses: list[dict] = [{"paper_id": {"$in": ids}}] if ids else []
    if filters.year_from is not None or filters.year_to is not None:
        clauses.append({"year": {"$gte": filters.year_from if filters.year_from is not None else 0}})
        if filters.year_to is not None:
            clauses.append({"year": {"$lte": filters.year_to}})
    if filters.sources:
        by_source = [{"sources": {"$contains": s}} for s in sorted(filters.sources)]
        clauses.append(by_source[0] if len(by_source) == 1 else {"$or": by_source})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def record_meta(paper: Paper, ledger: dict) -> dict:
    """A paper record's metadata: the paper (its abstract is the record's document) and the ingest's ledger."""
    meta = paper_to_meta(paper)
    del meta["abstract"], meta["paper_id"]
    meta.update(ledger)
    if paper.spans:
        meta["spans"] = encode_spans(paper.spans)
    if paper.clean:
        meta["clean"] = paper.clean
    return meta


def paper_from_meta(meta: dict) -> Paper:
    """Rebuild a Paper from its stored record (Chroma metadata: scalars and non-empty lists, -1 for unknown)."""
    return Paper(
        paper_id=meta["paper_id"],
        title=meta.get("title", ""),
        abstract=meta.get("abstract", ""),
        date_raw=meta.get("date_raw", ""),
        date=meta.get("date", ""),
        year=None if meta.get("year", -1) == -1 else meta["year"],
        authors=None if meta.get("authors", -1) == -1 else meta["authors"],
        organisation=meta.get("organisation", ""),
        sources=list(meta.get("sources") or []),
        positions=list(meta.get("positions") or []),
        paths=list(meta.get("paths") or []),
        spans=decode_spans(meta.get("spans", "")),
        clean=meta.get("clean", ""),
        doi=meta.get("doi", ""),
        arxiv_id=meta.get("arxiv_id", ""),
        pmid=meta.get("pmid", ""),
        url=meta.get("url", ""),
        venue=meta.get("venue", ""),
        categories=list(meta.get("categories") or []),
    )


def paper_to_meta(p: Paper) -> dict:
    """Flatten a Paper for Chroma: no None (-1 stands for unknown) and no empty lists (left out)."""
    d = asdict(p)
    del (
        d["spans"],
        d["clean"],
    )  # derived from the text: stored with the record (`record_meta`), never hashed as metadata
    d["year"] = -1 if p.year is None else p.year
    d["authors"] = -1 if p.authors is None else p.authors
    return {k: v for k, v in d.items() if v != [] and not (k in OPTIONAL_META and v == "")}


# Left out of a record when empty, so papers without them keep the record (and metadata hash) they had before.
OPTIONAL_META = ("doi", "arxiv_id", "pmid", "url", "venue")
