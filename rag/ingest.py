"""Ingest: make the index hold the papers of some files, embedding only what is new, changed or damaged.

Planning is decided from hashes alone (each stored record keeps a ledger: `rag.write.ledger`); the
writing is `rag.write`'s, the storing `rag.store`'s. A re-ingest of files read before, byte for byte
with the same settings and code, reads nothing at all (see "what the last ingest read" below).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag import corpus as corpus_mod
from rag import lexicon, write
from rag import store as store_mod
from rag import types as types_mod
from rag.config import Settings
from rag.errors import StoreError
from rag.safety import CLASSIFIER
from rag.store import SCHEMA, Store, check_embedder, drop, open_store, vector_damage
from rag.types import Corpus, IngestReport, Paper
from rag.write import Progress, Restored, meta_hash, restore_vectors, text_hash

INGEST_KEY = "ingested"  # papers-collection metadata: what the last clean ingest read (JSON; see below)


WINDOW = 4096  # papers planned and written together, in id order: the most an ingest holds at once


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
            store = drop(settings, store)
        check_embedder(store, embedder)
        repaired = None
        if not settings.chroma_host and vector_damage(Path(store.where), thorough=False):  # a killed ingest's
            repaired = restore_vectors(settings, store, embedder, on_progress)
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
        lexicon.refresh(settings, store)  # rebuilt now, not at the next search
    report.seconds = time.perf_counter() - started
    _record_ingest(settings, report, files)
    return report


def _sync(
    store: Store,
    files: list[Path],
    skipped: list[types_mod.Problem],
    prints: dict[str, str] | None,
    key: dict,
    embedder: Any,
    settings: Settings,
    prune: bool,
    on_progress: Progress | None,
) -> IngestReport:
    """Read the files, compare each paper with its stored record, and write what differs; the stamp last.
    The papers stream through a window at a time, so memory does not grow with the corpus."""
    stored = {pid: {k: meta[k] for k in _LEDGER if k in meta} for pid, meta, _ in store.records()}
    identities = {
        key: pid
        for pid, m in stored.items()
        for key in corpus_mod.identity_keys(m.get("doi", ""), m.get("arxiv_id", ""))
    }
    corpus = Corpus(papers=[], problems=skipped)
    report = IngestReport(corpus=corpus)
    papers = corpus_mod.scan(
        files,
        corpus,
        stored={pid: (m.get("content", ""), m.get("paths") or []) for pid, m in stored.items()},
        identities=identities,
    )
    sync = _Sync(store, stored, embedder, settings, report, on_progress)
    while window := list(itertools.islice(papers, WINDOW)):
        sync.write(sorted(window, key=lambda p: p.paper_id))
    sync.delete(corpus, prune)
    stamp = _stamp(store, sync.version, embedder, sync.dimension)
    clean = (
        prints is not None and not corpus.problems
    )  # a file with problems is read again, and its problems shown, every time
    stamp[INGEST_KEY] = json.dumps(_ingest_record(store, stamp, prints, key, sync.entries, corpus)) if clean else ""
    if stamp != store.stamp():
        store.set_stamp(stamp)
    return report


def repair(settings: Settings, embedder: Any, on_progress: Progress | None = None) -> Restored:
    """`rag ingest --repair`: make the chunks match the paper records again, from the records alone (each
    keeps its abstract), so no corpus file is needed and no paper is lost. Vectors cut short by a killed
    ingest are dropped and embedded again; papers whose chunks are missing get them back."""
    with ingest_lock(settings):
        store = open_store(settings, repairing=True)
        check_embedder(store, embedder)
        restored = restore_vectors(settings, store, embedder, on_progress)
        lexicon.refresh(settings, restored.store)
    return restored


@contextmanager
def ingest_lock(settings: Settings) -> Iterator[None]:
    """One ingest at a time per index folder; a second one stops with a clear message."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(settings.data_dir / "ingest.lock", "a+")
    except OSError as e:
        raise StoreError(
            f"cannot write to {settings.data_dir} ({e.strerror}); set RAG_DATA_DIR to a writable folder"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"another ingest is running on {settings.data_dir}; wait for it to finish and run this again"
            ) from None
        yield


# What planning, and matching entries to stored papers by DOI or arXiv id, read of a record. The rest (title,
# spans, authors) is not kept: 0.7 KB a record instead of 2.6 KB.
_LEDGER = ("text_hash", "meta_hash", "n_chunks", "classified", "content", "paths", "doi", "arxiv_id")


class _Sync:
    """Brings the stored papers in line with the papers read, a window at a time, counting into the report.

    New versions are written as they come and deletions last: an ingest that fails half-way (embedder
    down, wrong size) still holds the old papers. Each paper adds its hashes to the version (`_stamp`).
    """

    def __init__(
        self,
        store: Store,
        stored: dict[str, dict],
        embedder: Any,
        settings: Settings,
        report: IngestReport,
        on_progress: Progress | None,
    ) -> None:
        self.store, self.stored, self.embedder, self.settings = store, stored, embedder, settings
        self.report, self.on_progress = report, on_progress
        self.counts = _chunk_counts(store, stored)
        self.read: set[str] = set()  # ids read now that have a record or chunks: the rest may be deleted
        self.version = 0
        self.entries = 0  # papers the index holds after this ingest
        self.dimension: int | None = None
        self.done = 0
        self.changing = False

    def write(self, papers: list[Paper]) -> None:
        embed: list[Paper] = []
        relabel: list[tuple[Paper, int]] = []
        refresh: list[tuple[Paper, int]] = []
        report = self.report
        for paper in papers:
            pid, old = paper.paper_id, self.stored.get(paper.paper_id)
            th, mh = text_hash(paper), meta_hash(paper)
            self._count(pid, th, mh)
            if old is not None or pid in self.counts:
                self.read.add(pid)
            if old is None:
                report.added += 1
                embed.append(paper)
            elif old.get("text_hash") != th or self.counts.get(pid, 0) != old.get("n_chunks"):
                report.repaired += old.get("text_hash") == th
                report.updated += old.get("text_hash") != th
                embed.append(paper)
            elif old.get("meta_hash") != mh:
                report.relabelled += 1
                relabel.append((paper, old["n_chunks"]))
            elif old.get("classified") != CLASSIFIER:
                report.refreshed += 1
                refresh.append((paper, old["n_chunks"]))
            else:
                report.unchanged += 1
        if embed or relabel or refresh:
            self._change()
        start = self.done
        dimension = write.embed_and_write(
            self.store, embed, self.embedder, self.settings, report, lambda done, _: self._progress(start + done)
        )
        self.dimension = dimension or self.dimension
        write.relabel(self.store, relabel)
        write.write_records(self.store, refresh)
        self._progress(start + len(papers))

    def delete(self, corpus: Corpus, prune: bool) -> None:
        """Delete the stored papers taken out of the files read, and chunks whose record was never written."""
        keep = corpus.unread_paths | corpus.damaged_paths
        delete = []
        for pid in sorted(self.stored):
            if pid in self.read:
                continue
            if _removed(self.stored[pid], corpus.read_paths, keep, prune):
                delete.append(pid)
            else:
                self._count(pid, self.stored[pid].get("text_hash"), self.stored[pid].get("meta_hash"))
        orphans = sorted(pid for pid in self.counts if pid not in self.stored and pid not in self.read)
        self.report.deleted = len(delete)
        if delete or orphans:
            self._change()
            self.store.delete_papers(delete + orphans)  # orphans: an interrupted ingest's chunks

    def _count(self, pid: str, text: str | None, meta: str | None) -> None:
        """Add a paper the index will hold to the version: a sum, so the order papers come in does not matter."""
        digest = hashlib.blake2b(f"{pid}:{text}:{meta}".encode(), digest_size=16).digest()
        self.version = (self.version + int.from_bytes(digest, "big")) % (1 << 128)
        self.entries += 1

    def _change(self) -> None:
        if not self.changing:
            _forget_ingest(self.store)
            self.changing = True

    def _progress(self, done: int) -> None:
        self.done = done
        if self.on_progress:
            total = self.report.corpus.distinct if self.report.corpus else done
            self.on_progress(done, max(total, done))


def _chunk_counts(store: Store, stored: dict[str, dict]) -> Counter:
    """Stored chunks per paper, read only when their total differs from what the records say. A record is
    written after its chunks and deleted before them, so an interrupted ingest leaves surplus chunks, never
    missing ones: equal totals mean each record has its chunks and no chunk lacks a record."""
    recorded = Counter({pid: meta.get("n_chunks", 0) for pid, meta in stored.items()})
    return recorded if store.chunk_count() == recorded.total() else store.chunk_counts()


def _removed(meta: dict, read: set[str], keep: set[str], prune: bool) -> bool:
    """A stored paper missing from this corpus is deleted when a file it came from was read cleanly
    (so the paper was taken out of it), or with `prune` unless one of its files could not be read."""
    paths = set(meta.get("paths") or [])
    if paths & keep:
        return False
    return bool(paths & read) or prune


def _stamp(store: Store, version: int, embedder: Any, dimension: int | None) -> dict:
    """A content version every derived cache compares against (same papers, same stamp), and the
    embedder's name and vector size, which every later ingest and search must match."""
    stamp = {"version": f"{version:032x}"[:16], "embedder": embedder.model_name, "schema": SCHEMA}
    if dimension := dimension or store.stamp().get("dimension") or store.stored_dimension():
        stamp["dimension"] = dimension
    return stamp


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
    for module in (corpus_mod, types_mod, store_mod, write, sys.modules[__name__]):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


def _ingest_key(settings: Settings, embedder: Any) -> dict:
    """Everything besides the files that decides what an ingest stores."""
    return {
        "embedder": embedder.model_name,
        "chunk_tokens": settings.chunk_tokens,
        "schema": SCHEMA,
        "code": _code_hash(),
        "classifier": CLASSIFIER,
    }


def _ingest_record(
    store: Store, stamp: dict, prints: dict[str, str] | None, key: dict, entries: int, corpus: Corpus
) -> dict:
    """What a later ingest of the same files needs to report without reading them, and to check that it may."""
    return {
        "version": stamp["version"],
        "key": key,
        "files": prints,
        "papers": corpus.distinct,
        "stored": entries,
        "chunks": store.chunk_count(),
        "exclusive": entries == corpus.distinct,  # every stored paper is from these files: --prune has nothing to do
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
    return record if (store.count(), store.chunk_count()) == (record.get("stored"), record.get("chunks")) else None


def _forget_ingest(store: Store) -> None:
    """Before an ingest's first write: its record must not vouch for an index that is about to change."""
    stamp = store.stamp()
    if stamp.get(INGEST_KEY):
        store.set_stamp({**stamp, INGEST_KEY: ""})  # emptied, not left out: a server may merge metadata


def _record_ingest(settings: Settings, report: IngestReport, files: list[Path]) -> None:
    """Remember when the index last changed, and apart from it when an ingest last ran (shown by `rag corpus
    stats` and the UI): an ingest that changed nothing, every file skipped say, must not look like a sync."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record = last_ingest(settings) or {"at": None}
    problems = len(report.corpus.problems) if report.corpus else 0
    if _changed(report):
        record.update(
            at=now,
            collection=settings.collection,
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
