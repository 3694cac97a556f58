"""The Chroma index: two collections, written so that a paper is either wholly stored or not at all.

- `<collection>` holds chunks: vector and small metadata (paper id, offsets, year, sources) so Chroma
  can filter a dense search by year or source file. No text: a chunk is `abstract[start:end]` of its
  paper's record, and a document would cost Chroma a full-text index entry it never uses (writing
  them took a third of ingest time).
- `<collection>-papers` holds one record per paper: the abstract and its metadata, plus a ledger
  (text and metadata hashes, chunk count, embedder). A record is written only after all of its
  chunks, and deleted before they change, so an ingest killed at any point leaves papers that the
  next ingest sees as missing and redoes. The collection's metadata carries a version stamp that
  derived caches (the lexical index) compare against.

Every read and write is paged: Chroma refuses a single call over ~32k records.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import os
import pickletools
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rag import corpus as corpus_mod
from rag import types as types_mod
from rag.chunk import chunk_id, chunk_paper, embed_text
from rag.config import Settings
from rag.errors import StoreError
from rag.safety import CLASSIFIER, clean_mark
from rag.text import sentence_spans
from rag.types import Chunk, Corpus, IngestReport, Paper, encode_spans, paper_from_meta, paper_to_meta

Progress = Callable[[int, int], None]
PAGE = 2000  # records per Chroma read or write: well under its SQL-variable limit
EF_SEARCH = 400  # HNSW search breadth: at Chroma's default (100) the 50th-best chunk varied between runs
SCHEMA = 2  # bump when the stored layout changes; an older index must be rebuilt
CHROMA_TIMEOUT = 30.0  # seconds one request to a Chroma server may take before the command gives up
CHROMA_CONNECT_TIMEOUT = 5.0
INGEST_KEY = "ingested"  # papers-collection metadata: what the last clean ingest read (JSON; see below)


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
        client = chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
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


def _store_error(e: BaseException, where: str) -> StoreError:
    """One line saying what failed in Chroma and how to get going again."""
    said = " ".join(str(e).split())[:160]
    name = type(e).__name__
    if "Timeout" in name:
        return StoreError(
            f"no answer from the Chroma server at {where} within {CHROMA_TIMEOUT:g} s (is it stopped or overloaded?); "
            "check the server and run this again"
        )
    if _transport_failure(e):
        return StoreError(
            f"lost the connection to the Chroma server at {where} ({name}); restart it and run this again "
            "(an interrupted ingest is completed by the next one)"
        )
    if "dimension" in said:
        return StoreError(
            f"the index holds vectors of another size than the embedder makes ({said}); set RAG_EMBED_BACKEND/RAG_EMBED_MODEL "
            "back to the embedder it was built with, or run `rag ingest --rebuild` to re-embed everything"
        )
    if "readonly" in said.replace("-", "").replace(" ", "") or "Read-only" in said:
        return StoreError(
            f"the index at {where} is read-only ({said}); Chroma writes even when it only searches: "
            "make the folder writable, or copy it to a writable folder and point RAG_DATA_DIR there"
        )
    if where.startswith("http"):
        return StoreError(
            f"the Chroma server at {where} failed ({name}: {said}); check its log and disk space, and run this again"
        )
    folder = Path(where)
    if (damage := damaged(folder)) is not None:
        advice = REPAIR_ADVICE if damage.startswith("the vectors") else (
            "move the folder away (keep it if you want to inspect it) and run `rag ingest` to rebuild it"
        )
        return StoreError(f"the index at {where} is damaged ({damage}; the failing call said {name}: {said}); {advice}")
    if _full_disk(e, folder):
        return StoreError(
            f"no space left on the device holding the index ({_free_mb(folder)} MB free); "
            "free space and run the command again: the index is intact"
        )
    return StoreError(
        f"the index at {where} cannot be used ({name}: {said}); its files passed an integrity check, so keep them: "
        "run the command again, and if it fails the same way, run `rag ingest --repair` (it keeps every paper)"
    )


REPAIR_ADVICE = "run `rag ingest --repair` to restore it from the stored paper records (no corpus file needed)"
LOW_SPACE = 64 * 2**20  # bytes free below which a failed write is put down to the disk: Chroma does not always say so
_FULL_SIGNS = ("database or disk is full", "No space left on device")


def _full_disk(e: BaseException, folder: Path) -> bool:
    """Whether a failure came from a full disk: said so (ENOSPC, sqlite's SQLITE_FULL), or too little is
    free for Chroma to flush its log, which it reports only as a failed compaction."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC or any(sign in str(e) for sign in _FULL_SIGNS):
        return True
    return _free_mb(folder) * 2**20 < LOW_SPACE


def _free_mb(folder: Path) -> int:
    """Megabytes free on the device holding `folder` (or the nearest folder above it that exists)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free // 2**20


def damaged(folder: Path) -> str | None:
    """What is wrong with the files of the embedded index in `folder`, checked rather than guessed from an
    error message (None: nothing found). Reads only: sqlite is opened read-only for a quick check."""
    sqlite = folder / "chroma.sqlite3"
    if not sqlite.exists():
        return None
    try:
        with closing(sqlite3.connect(f"{sqlite.resolve().as_uri()}?mode=ro", uri=True)) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as e:
        if any(sign in str(e) for sign in _FULL_SIGNS + ("unable to open", "readonly")):
            return None  # could not look (no room for its lock file): no sign of damage
        return f"chroma.sqlite3 cannot be read: {e}"
    if verdict != "ok":
        return f"chroma.sqlite3 failed an integrity check: {str(verdict)[:80]}"
    return next((f"the vectors of collection {name!r}: {why}" for name, why in vector_damage(folder).items()), None)


HNSW_HEADER = 100  # bytes in the header.bin of Chroma's HNSW files (layout 1; see _hnsw_damage)


def vector_damage(folder: Path, thorough: bool = True) -> dict[str, str]:
    """Collection name -> what is wrong with its HNSW files, for the embedded index in `folder`. A kill while
    Chroma rewrites them leaves one cut short, and from then on every read of that collection fails (or
    crashes the process) until its vectors are written again. Sizes are checked from the header, and the end
    of the metadata pickle; `thorough` also parses all of it (its opcodes only: nothing in it is run)."""
    try:
        with closing(sqlite3.connect(f"{(folder / 'chroma.sqlite3').resolve().as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT s.id, c.name FROM segments s JOIN collections c ON s.collection = c.id WHERE s.scope = 'VECTOR'"
            ).fetchall()
    except sqlite3.Error:
        return {}  # no index yet, or one whose sqlite `damaged` reports
    found = {}
    for segment, name in rows:
        if (folder / segment).is_dir() and (why := _hnsw_damage(folder / segment, thorough)):
            found[name] = why
    return found


def _hnsw_damage(segment: Path, thorough: bool) -> str | None:
    """What is cut short among one segment's HNSW files (None: they are whole, or of a layout not known here)."""
    try:
        header = (segment / "header.bin").read_bytes()
        if len(header) < HNSW_HEADER:
            return f"header.bin is cut short ({len(header)} of {HNSW_HEADER} bytes)"
        if int.from_bytes(header[:4], "little") != 1:
            return None
        count, per_element = (int.from_bytes(header[at : at + 8], "little") for at in (20, 28))
        files = ("data_level0.bin", "length.bin", "link_lists.bin")  # all three must be there
        sizes = {name: (segment / name).stat().st_size for name in files}
        wanted = {"data_level0.bin": count * per_element, "length.bin": 4 * count}  # length.bin: a float32 norm each
        for name, size in wanted.items():
            if sizes[name] < size:
                return f"{name} is cut short ({sizes[name]} of {size} bytes)"
        pickle = segment / "index_metadata.pickle"
        if pickle.exists():
            with open(pickle, "rb") as handle:
                handle.seek(max(pickle.stat().st_size - 1, 0))
                if handle.read(1) != b".":  # every pickle ends with STOP: a cut one almost never does
                    return "index_metadata.pickle is cut short (no end mark)"
                if thorough:
                    handle.seek(0)
                    for _ in pickletools.genops(handle):
                        pass
    except FileNotFoundError as e:
        return f"{Path(str(e.filename)).name} is missing"
    except (ValueError, EOFError) as e:  # pickletools: truncated or garbled opcodes
        return f"index_metadata.pickle is cut short ({type(e).__name__})"
    return None


def _transport_failure(e: BaseException) -> bool:
    import httpx

    return isinstance(e, (httpx.TransportError, ConnectionError))


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
        ours = isinstance(e, (ChromaError, OSError, sqlite3.Error)) or _transport_failure(e)
        if any_error or ours or "Timeout" in type(e).__name__:
            raise _store_error(e, where) from None
        raise
    except BaseException as e:
        if _panicked(e):
            raise _store_error(e, where) from None
        raise


def _where(settings: Settings) -> str:
    """How messages name the index: the server's URL or the embedded folder."""
    if settings.chroma_host:
        return f"http://{settings.chroma_host}:{settings.chroma_port}"
    return str(settings.data_dir / "chroma")


@dataclass
class Store:
    """The two collections of one index, with paged reads."""

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
        raise StoreError(f"the index at {where} is damaged (the vectors of collection {name!r}: {why}); "
                         + REPAIR_ADVICE)
    chunks = guarded(lambda: client.get_or_create_collection(
        settings.collection, embedding_function=None, metadata={"schema": SCHEMA},
        configuration={"hnsw": {"space": "cosine", "ef_search": EF_SEARCH}},
    ), where)
    papers = guarded(lambda: client.get_or_create_collection(f"{settings.collection}-papers", embedding_function=None), where)
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


def text_hash(paper: Paper) -> str:
    return hashlib.sha1(f"{paper.title}\x1f{paper.abstract}".encode()).hexdigest()[:16]


def meta_hash(paper: Paper) -> str:
    return hashlib.sha1(json.dumps(paper_to_meta(paper), sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- ingest


@dataclass
class Plan:
    """What an ingest will change, decided from hashes alone (no documents are fetched)."""

    embed: list[Paper]
    relabel: list[tuple[Paper, int]]  # with its stored chunk count
    refresh: list[tuple[Paper, int]]  # unchanged, but the record predates this classifier or stored spans
    delete: list[str]
    ledger: dict[str, dict]  # final (text_hash, meta_hash) of every paper, for the version stamp


def ingest(
    paths: Iterable[Path],
    settings: Settings,
    embedder: Any,
    store: Store | None = None,
    prune: bool = False,
    rebuild: bool = False,
    on_progress: Progress | None = None,
) -> IngestReport:
    """Make the index hold the papers of `paths`, embedding only what is new, changed or damaged.

    Papers stored from files outside `paths` stay unless `prune`; papers of a file that could
    not be read, or was read with problems, stay too, so a damaged file never empties the index.
    When the last ingest read these very files and left the index as it still is, nothing is
    read: the report then has no `corpus`, only the papers counted as unchanged. Vector files that
    a killed ingest cut short are restored first, from the paper records (counted as repaired).
    """
    started = time.perf_counter()
    with ingest_lock(settings):
        store = store or open_store(settings, repairing=True)
        if rebuild:
            store = _drop(settings, store)
        check_embedder(store, embedder)
        repaired = None
        if not settings.chroma_host and vector_damage(Path(store.where), thorough=False):  # a killed ingest's
            repaired = _restore_vectors(settings, store, embedder, on_progress)
            store = repaired.store
        skipped: list[types_mod.Problem] = []
        files = corpus_mod.expand(paths, skipped)
        prints = _fingerprints(files)  # before parsing: a file edited while it is read differs from its print next time
        key = _ingest_key(settings, embedder)
        if record := _unchanged(store, prints, key, prune):
            report = IngestReport(unchanged=record["papers"])
        else:
            report = _sync(store, files, skipped, prints, key, embedder, settings, prune, on_progress)
        if repaired:
            report.repaired += repaired.papers
            report.embedded += repaired.chunks
        from rag.lexicon import refresh  # it reads this module's Store; rebuilt now, not at the next search

        refresh(settings, store)
    report.seconds = time.perf_counter() - started
    _record_ingest(settings, report, files)
    return report


def _sync(
    store: Store, files: list[Path], skipped: list[types_mod.Problem], prints: dict[str, str] | None, key: dict,
    embedder: Any, settings: Settings, prune: bool, on_progress: Progress | None,
) -> IngestReport:
    """Read the files, compare them with the stored records, and write what differs; the stamp last."""
    stored = {pid: {k: meta[k] for k in _LEDGER if k in meta} for pid, meta, _ in store.records()}
    corpus = corpus_mod.load(
        files, stored={pid: (m.get("content", ""), m.get("paths") or []) for pid, m in stored.items()}, skipped=skipped,
    )
    report = IngestReport(corpus=corpus)
    plan = _plan(store, stored, corpus, prune, report)
    if plan.embed or plan.relabel or plan.refresh or plan.delete:
        _forget_ingest(store)
    # new versions first, deletions last: an ingest that fails half-way (embedder down, wrong size) still holds the old ones
    dimension = _embed_and_write(store, plan.embed, embedder, settings, report, on_progress)
    _relabel(store, plan.relabel)
    _write_records(store, plan.refresh)
    _delete_papers(store, plan.delete)
    stamp = _stamp(store, plan.ledger, embedder, dimension)
    clean = prints is not None and not corpus.problems  # a file with problems is read again, and its problems shown, every time
    stamp[INGEST_KEY] = json.dumps(_ingest_record(store, stamp, prints, key, plan, corpus)) if clean else ""
    if stamp != store.stamp():
        store.papers.modify(metadata=stamp)
    return report


@dataclass
class Restored:
    """What `_restore_vectors` wrote again, and the store to go on with (its chunks collection may be new)."""

    store: Store
    papers: int
    chunks: int


def repair(settings: Settings, embedder: Any, on_progress: Progress | None = None) -> Restored:
    """`rag ingest --repair`: make the chunks match the paper records again, from the records alone (each
    keeps its abstract), so no corpus file is needed and no paper is lost. Vectors cut short by a killed
    ingest are dropped and embedded again; papers whose chunks are missing get them back."""
    with ingest_lock(settings):
        store = open_store(settings, repairing=True)
        check_embedder(store, embedder)
        restored = _restore_vectors(settings, store, embedder, on_progress)
        from rag.lexicon import refresh

        refresh(settings, restored.store)
    return restored


def _restore_vectors(settings: Settings, store: Store, embedder: Any, on_progress: Progress | None) -> Restored:
    """Drop a chunks collection whose vector files are damaged, then embed the chunks of every paper record
    whose stored chunks differ from its count; chunks of no record go. Records are only ever upserted:
    a kill at any point leaves them all, and the next repair (or ingest) finishes the work."""
    if not settings.chroma_host:
        damage = vector_damage(Path(store.where))
        client = connect(settings)
        if store.papers.name in damage:
            _restore_papers(client, store)
        if store.name in damage:
            guarded(lambda: client.delete_collection(store.chunks.name), store.where)
        if damage:
            store = open_store(settings, client, repairing=True)
    recorded = {pid: meta.get("n_chunks", 0) for pid, meta, _ in store.records()}
    counts = store.chunk_counts()
    orphans = sorted(pid for pid in counts if pid not in recorded)
    for start in range(0, len(orphans), PAGE):
        store.chunks.delete(where={"paper_id": {"$in": orphans[start : start + PAGE]}})
    redo = sorted(pid for pid, n in recorded.items() if counts.get(pid, 0) != n)
    papers = store.get_papers(redo)
    chunks = _rechunk(store, [papers[pid] for pid in redo], recorded, embedder, settings, on_progress)
    return Restored(store, len(redo), chunks)


RESTORING = "restoring"  # metadata of `<papers>-restore` while its copy of the records is incomplete


def _restore_papers(client: Any, store: Store) -> None:
    """Write the paper records again, read from sqlite itself: Chroma refuses every read of a collection whose
    vector files are damaged, but the records (abstracts and all) are whole in its metadata tables. They go
    to a side collection first, which replaces the damaged one only once complete, so a kill at any point
    leaves the records in one of the two (`_finish_restore` completes the swap)."""
    records, stamp = _sqlite_records(Path(store.where), store.papers.name)
    side = f"{store.papers.name}-restore"
    with suppress(Exception):  # none left over from a killed restore: that one is redone from scratch
        client.delete_collection(side)
    copy = Guarded(guarded(lambda: client.create_collection(side, embedding_function=None), store.where), store.where)
    copy.modify(metadata={**stamp, RESTORING: "yes"})
    for start in range(0, len(records), PAGE):
        part = records[start : start + PAGE]
        copy.add(ids=[r[0] for r in part], metadatas=[r[1] for r in part], documents=[r[2] for r in part],
                 embeddings=_unit(len(part)))
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
    guarded(lambda: copy.modify(name=papers), where)


def _sqlite_records(folder: Path, collection: str) -> tuple[list[tuple[str, dict, str]], dict]:
    """(id, metadata, document) of every record of `collection`, and its metadata, from Chroma's sqlite file.
    Refused when its metadata segment has not applied the whole log: the newest records would be missing."""
    uri = f"{(folder / 'chroma.sqlite3').resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        (cid, segment) = db.execute(
            "SELECT c.id, s.id FROM collections c JOIN segments s ON s.collection = c.id "
            "WHERE c.name = ? AND s.scope = 'METADATA'", (collection,),
        ).fetchone()
        applied = db.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment,)).fetchone()
        logged = db.execute("SELECT max(seq_id) FROM embeddings_queue WHERE topic LIKE ?", (f"%/{cid}",)).fetchone()
        if logged[0] is not None and (applied is None or _seq(applied[0]) < logged[0]):
            raise StoreError(
                f"the index at {folder} is damaged (collection {collection!r}) and its newest records are not yet "
                "in sqlite; move the folder away (keep it) and run `rag ingest` on the corpus files"
            )
        stamp = {key: _value(row) for key, *row in db.execute(
            "SELECT key, str_value, int_value, float_value, bool_value FROM collection_metadata "
            "WHERE collection_id = ?", (cid,),
        )}
        ids = db.execute("SELECT id, embedding_id FROM embeddings WHERE segment_id = ?", (segment,))
        records: dict[int, tuple[str, dict, str]] = {rowid: (pid, {}, "") for rowid, pid in ids}
        documents: dict[int, str] = {}
        for table in ("embedding_metadata", "embedding_metadata_array"):
            rows = db.execute(
                f"SELECT m.id, m.key, m.string_value, m.int_value, m.float_value, m.bool_value FROM {table} m "
                "JOIN embeddings e ON e.id = m.id WHERE e.segment_id = ? ORDER BY m.rowid", (segment,),
            )
            for rowid, key, *row in rows:
                if key == "chroma:document":
                    documents[rowid] = row[0]
                elif table == "embedding_metadata":
                    records[rowid][1][key] = _value(row)
                else:
                    records[rowid][1].setdefault(key, []).append(_value(row))
    return [(pid, meta, documents.get(rowid, "")) for rowid, (pid, meta, _) in records.items()], stamp


def _value(row: list) -> Any:
    """A metadata value from its typed columns (string, int, float, bool: one is set)."""
    text, integer, real, flag = row
    return bool(flag) if flag is not None else next((v for v in (text, integer, real) if v is not None), None)


def _seq(value: Any) -> int:
    """A sequence id as sqlite holds it: an integer, or big-endian bytes in older files."""
    return int.from_bytes(value, "big") if isinstance(value, bytes) else int(value)


def _rechunk(
    store: Store, papers: list[Paper], recorded: dict[str, int], embedder: Any, settings: Settings,
    on_progress: Progress | None,
) -> int:
    """Chunk and embed stored papers again, leaving their records in place (a record changes only when
    its chunk count does); return the chunks written."""
    batch = max(settings.embed_batch_size * 4, 64)
    written = 0
    for start in range(0, len(papers), batch):
        part = papers[start : start + batch]
        _read_sentences(part)
        chunks = {p.paper_id: chunk_paper(p, embedder.count_tokens, settings.chunk_tokens) for p in part}
        flat = [(p, c) for p in part for c in chunks[p.paper_id]]
        vectors = _embed(embedder, [embed_text(p, c.text) for p, c in flat])
        store.chunks.delete(where={"paper_id": {"$in": [p.paper_id for p in part]}})
        _add_chunks(store, flat, vectors)
        _write_records(store, [(p, n) for p in part if (n := len(chunks[p.paper_id])) != recorded[p.paper_id]])
        written += len(flat)
        if on_progress:
            on_progress(start + len(part), len(papers))
    return written


@contextmanager
def ingest_lock(settings: Settings) -> Iterator[None]:
    """One ingest at a time per index folder; a second one stops with a clear message."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(settings.data_dir / "ingest.lock", "a+")
    except OSError as e:
        raise StoreError(f"cannot write to {settings.data_dir} ({e.strerror}); set RAG_DATA_DIR to a writable folder") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"another ingest is running on {settings.data_dir}; wait for it to finish and run this again") from None
        yield


def _drop(settings: Settings, store: Store) -> Store:
    client = connect(settings)  # a collection's own `_client` is Chroma's internal API, which cannot create one
    for name in (store.chunks.name, store.papers.name):
        guarded(lambda: client.delete_collection(name), _where(settings))
    return open_store(settings, client)


# What planning reads of a record. The rest (title, spans, authors) is not kept: 0.7 KB a record instead of 2.6 KB.
_LEDGER = ("text_hash", "meta_hash", "n_chunks", "classified", "content", "paths")


def _plan(store: Store, stored: dict[str, dict], corpus: Corpus, prune: bool, report: IngestReport) -> Plan:
    counts = _chunk_counts(store, stored)
    wanted = {p.paper_id: p for p in corpus.papers}
    keep = corpus.unread_paths | corpus.damaged_paths
    plan = Plan([], [], [], [], {})
    for pid in sorted(wanted):
        paper, old = wanted[pid], stored.get(pid)
        th, mh = text_hash(paper), meta_hash(paper)
        plan.ledger[pid] = {"t": th, "m": mh}
        if old is None:
            report.added += 1
            plan.embed.append(paper)
        elif old.get("text_hash") != th or counts.get(pid, 0) != old.get("n_chunks"):
            report.repaired += old.get("text_hash") == th
            report.updated += old.get("text_hash") != th
            plan.embed.append(paper)
        elif old.get("meta_hash") != mh:
            report.relabelled += 1
            plan.relabel.append((paper, old["n_chunks"]))
        elif old.get("classified") != CLASSIFIER:
            report.refreshed += 1
            plan.refresh.append((paper, old["n_chunks"]))
        else:
            report.unchanged += 1
    for pid in sorted(stored):
        if pid in wanted:
            continue
        if _removed(stored[pid], corpus.read_paths, keep, prune):
            plan.delete.append(pid)
        else:
            plan.ledger[pid] = {"t": stored[pid].get("text_hash"), "m": stored[pid].get("meta_hash")}
    orphans = sorted(pid for pid in counts if pid not in stored and pid not in wanted)
    plan.delete += orphans  # chunks whose record was never written: an interrupted ingest
    report.deleted = len(plan.delete) - len(orphans)
    return plan


def _chunk_counts(store: Store, stored: dict[str, dict]) -> Counter:
    """Stored chunks per paper, read only when their total differs from what the records say. A record is
    written after its chunks and deleted before them, so an interrupted ingest leaves surplus chunks, never
    missing ones: equal totals mean each record has its chunks and no chunk lacks a record."""
    recorded = Counter({pid: meta.get("n_chunks", 0) for pid, meta in stored.items()})
    return recorded if store.chunks.count() == recorded.total() else store.chunk_counts()


def _removed(meta: dict, read: set[str], keep: set[str], prune: bool) -> bool:
    """A stored paper missing from this corpus is deleted when a file it came from was read cleanly
    (so the paper was taken out of it), or with `prune` unless one of its files could not be read."""
    paths = set(meta.get("paths") or [])
    if paths & keep:
        return False
    return bool(paths & read) or prune


def _delete_papers(store: Store, ids: list[str]) -> None:
    """Record first, then chunks: a paper without a record is treated as missing and redone."""
    for start in range(0, len(ids), PAGE):
        part = ids[start : start + PAGE]
        store.papers.delete(ids=part)
        store.chunks.delete(where={"paper_id": {"$in": part}})


def _relabel(store: Store, papers: list[tuple[Paper, int]]) -> None:
    """Same text, new metadata: rewrite the chunks' filter fields and the record, no embedding."""
    for start in range(0, len(papers), PAGE):
        part = papers[start : start + PAGE]
        by_paper = {p.paper_id: p for p, _ in part}
        got = store.chunks.get(ids=[chunk_id(p.paper_id, i) for p, n in part for i in range(n)], include=["metadatas"])
        if got["ids"]:
            metas = [{**m, **_filter_fields(by_paper[m["paper_id"]])} for m in got["metadatas"]]
            store.chunks.update(ids=got["ids"], metadatas=metas)
    _write_records(store, papers)


def _write_records(store: Store, papers: list[tuple[Paper, int]]) -> None:
    """Write the records of papers whose chunks stay (each with its stored chunk count)."""
    embedder = store.stamp().get("embedder", "")
    for start in range(0, len(papers), PAGE):
        part = papers[start : start + PAGE]
        _read_sentences([p for p, _ in part])
        store.papers.upsert(
            ids=[p.paper_id for p, _ in part], documents=[p.abstract for p, _ in part],
            metadatas=[_record(p, n, embedder) for p, n in part], embeddings=_unit(len(part)),
        )


def _embed_and_write(
    store: Store, papers: list[Paper], embedder: Any, settings: Settings, report: IngestReport, on_progress: Progress | None
) -> int | None:
    """Chunk, embed and write a batch of papers at a time, so memory does not grow with the corpus;
    return the vectors' size (None when nothing was embedded)."""
    total = len(papers)
    batch = max(settings.embed_batch_size * 4, 64)
    done = 0
    dimension = None
    for start in range(0, total, batch):
        part = papers[start : start + batch]
        _read_sentences(part)
        ids = [p.paper_id for p in part]
        chunks = {p.paper_id: chunk_paper(p, embedder.count_tokens, settings.chunk_tokens) for p in part}
        flat = [(p, c) for p in part for c in chunks[p.paper_id]]
        vectors = _embed(embedder, [embed_text(p, c.text) for p, c in flat])  # before deleting: a failing embedder costs nothing
        if len(vectors):
            dimension = vectors.shape[1]
            check_dimension(store, embedder, dimension)
        store.papers.delete(ids=ids)
        store.chunks.delete(where={"paper_id": {"$in": ids}})
        _add_chunks(store, flat, vectors)
        store.papers.add(
            ids=ids, documents=[p.abstract for p in part],
            metadatas=[_record(p, len(chunks[p.paper_id]), embedder.model_name) for p in part], embeddings=_unit(len(part)),
        )
        report.embedded += len(flat)
        done += len(part)
        if on_progress:
            on_progress(done, total)
    return dimension


def _embed(embedder: Any, texts: list[str]) -> np.ndarray:
    """Vectors as one float32 array (a Python float list costs ten times the memory)."""
    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
    vectors = embedder.get_text_embedding_batch([texts[i] for i in order])
    out = np.empty((len(texts), len(vectors[0])), dtype=np.float32)
    out[order] = np.asarray(vectors, dtype=np.float32)
    return out


def _add_chunks(store: Store, flat: list[tuple[Paper, Chunk]], vectors: np.ndarray) -> None:
    for start in range(0, len(flat), PAGE):
        part = flat[start : start + PAGE]
        store.chunks.add(
            ids=[c.chunk_id for _, c in part],
            embeddings=vectors[start : start + PAGE],  # no documents: the text is the record's abstract[start:end]
            metadatas=[{"paper_id": p.paper_id, "start": c.start, "end": c.end, **_filter_fields(p)} for p, c in part],
        )


def _filter_fields(paper: Paper) -> dict:
    """Chunk metadata that a dense search filters on (-1: year unknown)."""
    fields: dict = {"year": -1 if paper.year is None else paper.year}
    if paper.sources:
        fields["sources"] = list(paper.sources)
    return fields


def _read_sentences(papers: list[Paper]) -> None:
    """Split each abstract into sentences and classify them once, at ingest: chunking uses the spans,
    and the record keeps both, so a search never loads the sentence splitter nor classifies a paper
    again that was found clean (`safety.clean_mark`)."""
    for p in papers:
        p.spans = p.spans or tuple(sentence_spans(p.abstract))
        p.clean = clean_mark(p.title, p.abstract, p.spans)


def _record(paper: Paper, n_chunks: int, embedder: str = "") -> dict:
    meta = paper_to_meta(paper)
    meta.pop("abstract")
    meta.pop("paper_id")
    meta.update(text_hash=text_hash(paper), meta_hash=meta_hash(paper), n_chunks=n_chunks, content=corpus_mod.paper_id(paper.title, paper.abstract))
    if paper.spans:
        meta["spans"] = encode_spans(paper.spans)
    if paper.clean:
        meta["clean"] = paper.clean
    meta["classified"] = CLASSIFIER  # a record from an older classifier (or before spans were stored) is refreshed
    if embedder:
        meta["embedder"] = embedder
    return meta


def _unit(n: int) -> np.ndarray:
    """Paper records are not searched by vector; Chroma still wants one, so each gets [1.0]."""
    return np.ones((n, 1), dtype=np.float32)


def _stamp(store: Store, ledger: dict[str, dict], embedder: Any, dimension: int | None) -> dict:
    """A content version every derived cache compares against (same papers, same stamp), and the
    embedder's name and vector size, which every later ingest and search must match."""
    digest = hashlib.sha1()
    for pid in sorted(ledger):
        digest.update(f"{pid}:{ledger[pid]['t']}:{ledger[pid]['m']}\n".encode())
    stamp = {"version": digest.hexdigest()[:16], "embedder": embedder.model_name, "schema": SCHEMA}
    if dimension := dimension or store.stamp().get("dimension") or _stored_dimension(store):
        stamp["dimension"] = dimension
    return stamp


def _stored_dimension(store: Store) -> int | None:
    """The size of the stored vectors: an ingest that only completes an interrupted one embeds nothing itself."""
    got = store.chunks.get(limit=1, include=["embeddings"])
    return len(got["embeddings"][0]) if got["ids"] else None


# ---------------------------------------------------------------- what the last ingest read
# The papers collection's metadata also holds, under INGEST_KEY, a record of the last ingest that
# completed cleanly: the files it read (by content hash), the settings and code that read them, and
# the version and counts it left. In Chroma, not on disk, so every client of a shared server sees it;
# cleared before an ingest's first write and set only by its last, so no interrupted run leaves one.


def _fingerprint(file: Path) -> str | None:
    """A hash of the file's bytes (None: unreadable); size and mtime alone would miss an edit that kept both."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _fingerprints(files: list[Path]) -> dict[str, str] | None:
    """Resolved path -> content hash of every file; None when one cannot be read."""
    prints: dict[str, str] = {}
    for file in files:
        if (digest := _fingerprint(file)) is None:
            return None
        prints[str(file.resolve())] = digest
    return prints


@functools.cache
def _code_hash() -> str:
    """The source of the modules that turn files into records: a new parser or record layout reads the corpus again."""
    digest = hashlib.blake2b(digest_size=8)
    for module in (corpus_mod, types_mod, sys.modules[__name__]):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


def _ingest_key(settings: Settings, embedder: Any) -> dict:
    """Everything besides the files that decides what an ingest stores."""
    return {"embedder": embedder.model_name, "chunk_tokens": settings.chunk_tokens, "schema": SCHEMA, "code": _code_hash(), "classifier": CLASSIFIER}


def _ingest_record(store: Store, stamp: dict, prints: dict[str, str] | None, key: dict, plan: Plan, corpus: Corpus) -> dict:
    """What a later ingest of the same files needs to report without reading them, and to check that it may."""
    return {
        "version": stamp["version"], "key": key, "files": prints, "papers": len(corpus.papers),
        "stored": len(plan.ledger), "chunks": store.chunks.count(),
        "exclusive": len(plan.ledger) == len(corpus.papers),  # every stored paper is from these files: --prune has nothing to do
    }


def _unchanged(store: Store, prints: dict[str, str] | None, key: dict, prune: bool) -> dict | None:
    """The last ingest's record when reading the files again cannot change the index: it read these very
    files, byte for byte, with the same settings and code, and the index is still the one it left."""
    stamp = store.stamp()
    try:
        record = json.loads(stamp.get(INGEST_KEY) or "null")
    except ValueError:
        return None
    if prints is None or not isinstance(record, dict):
        return None
    same = record.get("version") == stamp.get("version") and record.get("key") == key and record.get("files") == prints
    if not same or (prune and not record.get("exclusive")):
        return None
    return record if (store.count(), store.chunks.count()) == (record.get("stored"), record.get("chunks")) else None


def _forget_ingest(store: Store) -> None:
    """Before an ingest's first write: its record must not vouch for an index that is about to change."""
    stamp = store.stamp()
    if stamp.get(INGEST_KEY):
        store.papers.modify(metadata={**stamp, INGEST_KEY: ""})  # emptied, not left out: a server may merge metadata


def _record_ingest(settings: Settings, report: IngestReport, files: list[Path]) -> None:
    """Remember when the index last changed, and apart from it when an ingest last ran (shown by `rag corpus
    stats` and the UI): an ingest that changed nothing, every file skipped say, must not look like a sync."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record = last_ingest(settings) or {"at": None}
    problems = len(report.corpus.problems) if report.corpus else 0
    if _changed(report):
        record.update(
            at=now, collection=settings.collection,
            server=f"{settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else None,
            files=sorted({f.name for f in files}),
        )
    record["attempt"] = {"at": now, "changed": _changed(report), "problems": problems}
    try:
        (settings.data_dir / "last_ingest.json").write_text(json.dumps(record, indent=2))
    except OSError:
        pass  # a record for display only; the index itself is written


def _changed(report: IngestReport) -> bool:
    """Whether the ingest wrote anything a search or answer reads."""
    return any((report.added, report.updated, report.repaired, report.relabelled, report.refreshed, report.deleted))


def last_ingest(settings: Settings) -> dict | None:
    path = settings.data_dir / "last_ingest.json"
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None
