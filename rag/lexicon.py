"""The lexical index: BM25 over every paper's title and abstract, kept on disk and opened memory-mapped.

It is a cache derived from the Chroma paper records and keyed by their version stamp: a process
whose cache is missing or stale rebuilds it once, paging through the collection; every other
start opens it in constant time. It also holds what must be known about the whole corpus without
reading it: the IDF of a term, whether a name occurs anywhere, and each paper's year and source
files (for filters).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag import bm25_write
from rag.chunk import chunk_id
from rag.config import Settings
from rag.text import terms, versioned
from rag.types import Filters

Progress = Callable[[int, int], None]


class Store(Protocol):
    """What the lexicon reads of the index (`rag.store.Store`): its version stamp and its paper records.
    Declared here so that the store stays below the lexicon, which ingest refreshes after it writes."""

    def stamp(self) -> dict: ...

    def count(self) -> int: ...

    def records(self, include_documents: bool = False) -> Iterator[tuple[str, dict, str]]: ...


_SURFACE = re.compile(r"\w[\w.\-]*\w|\w")  # words as written, hyphens and dots kept: gpt-3.5, mamba-2
FORMAT = 3  # bumped when what the cache holds changes, so an older cache is rebuilt
SHOW_PROGRESS_FROM = 2000  # papers: a smaller rebuild takes about a second and needs no bar
_EMPTY = "\x00"  # bm25s needs one token per document; an abstract with no content words gets this


class Lexicon:
    """BM25 (bm25s) plus the per-paper fields filters need; row i is paper `rows[i]`."""

    version = ""  # the store version it reflects (set by `open`)
    _tmp: Any = None  # the temporary folder a `build` lives in, removed with the lexicon

    def __init__(
        self,
        bm25: Any,
        rows: list[str],
        years: np.ndarray,
        chunks: np.ndarray,
        sources: dict[str, list[int]],
        words: str,
    ) -> None:
        self.bm25 = bm25
        self.rows = rows
        self.years = years
        self.chunks = chunks  # chunks per paper: their ids follow (`chunk_ids`), so a search reads them by id
        self.sources = sources
        self._words = words  # "\n".join(sorted surface words), for names inside words (MIMO in mMIMO)
        self._df = np.diff(np.asarray(bm25.scores["indptr"])) if rows else np.zeros(0)

    def __len__(self) -> int:
        return len(self.rows)

    @cached_property
    def _word_set(self) -> frozenset[str]:
        return frozenset(self._words.split("\n"))  # built on the first refusal check: a search needs none

    # ------------------------------------------------------------ statistics

    def idf(self, term: str) -> float:
        """BM25's IDF (Lucene form); a term no paper has gets the highest value."""
        n = len(self.rows)
        tid = self.bm25.vocab_dict.get(term) if self.rows else None
        df = int(self._df[tid]) if tid is not None else 0
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def ceiling(self, query_terms: list[str]) -> float:
        """What a paper holding every query term would score at most: BM25's saturation bound.

        Dividing by this (not by the best hit) keeps a weak lexical match weak: a query whose
        rare words no paper has leans on dense retrieval instead.
        """
        return sum(self.idf(t) for t in query_terms)

    def mentions(self, word: str) -> bool:
        """`word` occurs in some title or abstract: as a word, or (4+ characters) inside one."""
        word = word.lower()
        return word in self._word_set or (len(word) >= 4 and word in self._words)

    def together(self, query_terms: list[str]) -> bool:
        """Some paper holds every one of these stemmed terms (read from BM25's term -> papers lists)."""
        common: np.ndarray | None = None
        for term in query_terms:
            tid = self.bm25.vocab_dict.get(term) if self.rows else None
            if tid is None:
                return False
            indptr = self.bm25.scores["indptr"]
            docs = np.asarray(self.bm25.scores["indices"][indptr[tid] : indptr[tid + 1]])
            common = docs if common is None else np.intersect1d(common, docs)
            if not len(common):
                return False
        return common is not None

    # ------------------------------------------------------------ search

    def allowed(self, filters: Filters) -> np.ndarray | None:
        """Row mask of the papers the filters let through (None: no filter). Unknown years fail closed."""
        if not filters.active():
            return None
        mask = np.ones(len(self.rows), dtype=bool)
        if filters.year_from is not None or filters.year_to is not None:
            mask &= self.years >= (filters.year_from if filters.year_from is not None else 0)
            if filters.year_to is not None:
                mask &= self.years <= filters.year_to
        if filters.sources:
            by_source = np.zeros(len(self.rows), dtype=bool)
            for name in filters.sources:
                by_source[self.sources.get(name, [])] = True
            mask &= by_source
        return mask

    def scores(self, query_terms: list[str]) -> np.ndarray:
        """BM25 score of every paper for the query's stemmed terms."""
        known = [t for t in query_terms if t in (self.bm25.vocab_dict or {})]
        if not known or not self.rows:
            return np.zeros(len(self.rows), dtype=np.float32)
        return np.asarray(self.bm25.get_scores(known), dtype=np.float32)

    def top_from(self, scores: np.ndarray, n: int, allowed: np.ndarray | None) -> dict[str, float]:
        """Paper id -> BM25 score of the best `n` papers (of `scores`) that share a term with the query."""
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        n = min(n, len(scores))
        if n == 0:
            return {}
        idx = np.argpartition(-scores, n - 1)[:n]
        best = sorted((i for i in idx if scores[i] > 0), key=lambda i: (-scores[i], self.rows[i]))
        return {self.rows[i]: float(scores[i]) for i in best}

    def score_of(self, scores: np.ndarray, paper_ids: list[str]) -> dict[str, float]:
        index = self._row_index
        return {pid: float(scores[index[pid]]) for pid in paper_ids if pid in index}

    def chunk_ids(self, paper_ids: list[str]) -> list[str]:
        """Ids of the stored chunks of `paper_ids`: a read by id costs a third of a filter on paper_id
        (and a cold process's first filtered read costs a second at 100k chunks)."""
        index = self._row_index
        return [chunk_id(pid, i) for pid in paper_ids if pid in index for i in range(int(self.chunks[index[pid]]))]

    @cached_property
    def _row_index(self) -> dict[str, int]:
        return {pid: i for i, pid in enumerate(self.rows)}

    # ------------------------------------------------------------ persistence

    @classmethod
    def open(cls, settings: Settings, store: Store, on_progress: Progress | None = None) -> Lexicon:
        """The cache for `store`'s current version: loaded memory-mapped, or rebuilt once when stale."""
        folder = cache_dir(settings)
        version = store.stamp().get("version", "")
        if version and _stamp(folder) == f"{FORMAT}:{version}":
            try:
                lexicon = cls._load(folder)
                lexicon.version = version
                return lexicon
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache is rebuilt below
        try:
            version = _rebuild(folder, store, on_progress)
        except OSError:
            return cls.build(store, on_progress)[0]  # a full or read-only data dir: a temporary cache this time
        lexicon = cls._load(folder)
        lexicon.version = version
        return lexicon

    @classmethod
    def build(cls, store: Store, on_progress: Progress | None = None) -> tuple[Lexicon, str]:
        """A lexicon of `store` in a temporary folder, removed with the lexicon; and the version it reflects."""
        tmp = tempfile.TemporaryDirectory(prefix="rag-lexicon-")
        version = _write(Path(tmp.name), store, on_progress)
        lexicon = cls._load(Path(tmp.name))
        lexicon.version, lexicon._tmp = version, tmp
        return lexicon, version

    @classmethod
    def _load(cls, folder: Path) -> Lexicon:
        import bm25s

        rows = json.loads((folder / "rows.json").read_text())
        bm25 = bm25s.BM25.load(str(folder / "bm25"), mmap=True) if rows else bm25s.BM25()
        years = np.load(folder / "years.npy")
        chunks = np.load(folder / "chunks.npy")
        sources = json.loads((folder / "sources.json").read_text())
        return cls(bm25, rows, years, chunks, sources, (folder / "words.txt").read_text())


def _write(folder: Path, store: Store, on_progress: Progress | None) -> str:
    """Page through every paper record once, writing the cache into `folder`; return the version it reflects.

    Each paper's term ids go to disk as they are read (`bm25_write.Spill`), so memory holds the vocabulary,
    the surface words and a few numbers a paper; at 1M chunks the terms as strings would take ~13 GB.
    """
    version = store.stamp().get("version", "")
    total = store.count()
    on_progress = on_progress if total >= SHOW_PROGRESS_FROM else None
    rows: list[str] = []
    years = array("i")
    chunks = array("i")
    sources: dict[str, list[int]] = {}
    vocab: dict[str, int] = {}
    words: set[str] = set()
    spill = bm25_write.Spill(folder)
    try:
        for i, (pid, meta, abstract) in enumerate(store.records(include_documents=True)):
            text = f"{meta.get('title', '')}\n{abstract}"
            rows.append(pid)
            years.append(int(meta.get("year", -1)))
            chunks.append(int(meta.get("n_chunks", 0)))
            for name in meta.get("sources") or []:
                sources.setdefault(name, []).append(i)
            spill.add(array("I", [vocab.setdefault(t, len(vocab)) for t in terms(text) or [_EMPTY]]))
            words.update(_SURFACE.findall(text.lower()))
            words.update(v.lower() for v in versioned(text))
            if on_progress and (i + 1) % 500 == 0:
                on_progress(i + 1, total)
    finally:
        spill.close()
    if rows:
        bm25_write.write(folder / "bm25", spill, vocab)
    spill.path.unlink()
    if on_progress:
        on_progress(len(rows), total)
    (folder / "rows.json").write_text(json.dumps(rows))
    np.save(folder / "years.npy", np.asarray(years, dtype=np.int32))
    np.save(folder / "chunks.npy", np.asarray(chunks, dtype=np.int32))
    (folder / "sources.json").write_text(json.dumps(sources, sort_keys=True))
    (folder / "words.txt").write_text("\n".join(sorted(words)))
    (folder / "stamp.json").write_text(json.dumps({"version": f"{FORMAT}:{version}"}))
    return version


def _rebuild(folder: Path, store: Store, on_progress: Progress | None) -> str:
    """Write the cache beside `folder`, then swap it in; return the version it reflects."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder.parent))
    try:
        version = _write(tmp, store, on_progress)
        _swap(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return version


def _swap(built: Path, folder: Path) -> None:
    """Put a built cache in place of the old one: readers never see half a cache."""
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(built, folder)
    shutil.rmtree(old, ignore_errors=True)


def refresh(settings: Settings, store: Store) -> None:
    """Rebuild the cache unless it holds the store's version already (an ingest need not load it)."""
    version = store.stamp().get("version", "")
    if not version or _stamp(cache_dir(settings)) != f"{FORMAT}:{version}":
        Lexicon.open(settings, store)


def cache_dir(settings: Settings) -> Path:
    """One cache per index: embedded, or per Chroma server and collection."""
    where = f"{settings.chroma_host}-{settings.chroma_port}" if settings.chroma_host else "local"
    return settings.data_dir / "lexical" / re.sub(r"[^\w.-]", "_", f"{where}-{settings.collection}")


def _stamp(folder: Path) -> str:
    try:
        return json.loads((folder / "stamp.json").read_text()).get("version", "")
    except (OSError, ValueError):
        return ""
