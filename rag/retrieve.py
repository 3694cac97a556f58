"""Hybrid retrieval: BM25 over papers and dense search over chunks, fused, filtered, one hit per paper.

A search touches only what it returns: BM25 runs on the memory-mapped lexical index, the dense
search asks Chroma for the nearest chunks (filtered there by year and source), and paper records
are read for the hits alone. Both scores are computed exactly for every candidate either retriever
found, so fusion never has to guess a missing score.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import numpy as np

from rag.config import Settings
from rag.lexicon import Lexicon, Progress
from rag.safety import inert
from rag.store import Store, check_embedder, open_store
from rag.text import terms
from rag.types import Chunk, Filters, Hit

Method = Literal["hybrid", "bm25", "dense"]


class Retriever:
    """Opens the index (Chroma + the lexical cache) once; each search reads only its hits."""

    def __init__(
        self, settings: Settings, embedder: Any, store: Store | None = None, on_progress: Progress | None = None
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store or open_store(settings)
        check_embedder(self.store, embedder)
        self.lexicon = Lexicon.open(settings, self.store, on_progress)

    def __len__(self) -> int:
        return len(self.lexicon)

    def stale(self) -> bool:
        """An ingest (here or on another machine sharing the server) changed the index since it was opened."""
        return self.store.stamp().get("version", "") != self.lexicon.version

    def reopened(self) -> Retriever:
        """A retriever over the index as it is now, keeping the loaded embedder."""
        return Retriever(self.settings, self.embedder, self.store)

    def paper(self, paper_id: str) -> Hit | None:
        """One paper as outputs may show it (see `safety.inert`), as a hit without scores."""
        found = self.store.get_papers([paper_id]).get(paper_id)
        return inert(Hit(found, 0.0)) if found else None

    def search(
        self, query: str, k: int | None = None, filters: Filters = Filters(), method: Method = "hybrid"
    ) -> list[Hit]:
        """Best `k` papers for `query`, made inert (`safety.inert`); empty when the filters match no paper."""
        k = k or self.settings.top_k
        allowed, labelled = self._allowed(filters)
        if not query.strip() or not len(self.lexicon) or (allowed is not None and not allowed.any()):
            return []
        query_terms = sorted(set(terms(query)))
        vector = np.asarray(self.embedder.get_query_embedding(query), dtype=np.float32) if method != "bm25" else None
        dense = self._dense(vector, filters, labelled) if vector is not None else {}
        bm25_all = self.lexicon.scores(query_terms) if method != "dense" else None
        lexical = self.lexicon.top_from(bm25_all, self.settings.candidates, allowed) if bm25_all is not None else {}
        if vector is not None and bm25_all is not None:  # hybrid: each candidate gets both scores
            self._complete(dense, lexical, vector, bm25_all)
        scored = fuse(dense, lexical, self.lexicon.ceiling(query_terms), method, self.settings)
        return self._hits(scored[:k], dense, lexical)

    def _allowed(self, filters: Filters) -> tuple[np.ndarray | None, list[str] | None]:
        """The lexical row mask, and the ids a category or venue filter lets through (None: no such filter).

        Those labels are read from the paper records at each filtered search (one pass over the metadata),
        so no cache has to know them.
        """
        allowed = self.lexicon.allowed(filters)
        if not filters.labelled():
            return allowed, None
        assert allowed is not None  # a category or venue filter is an active filter
        ids = sorted(pid for pid, meta, _ in self.store.records() if _labels_pass(filters, meta))
        return allowed & np.isin(np.asarray(self.lexicon.rows), ids), ids

    # ------------------------------------------------------------ the two retrievers

    def _dense(self, vector: np.ndarray, filters: Filters, ids: list[str] | None) -> dict[str, tuple[float, Chunk]]:
        """Paper id -> (best chunk cosine, that chunk), for the nearest chunks."""
        return _best_chunks(*self.store.nearest_chunks(vector, self.settings.candidates, filters, ids))

    def _complete(
        self, dense: dict[str, tuple[float, Chunk]], lexical: dict[str, float], vector: np.ndarray, bm25_all: np.ndarray
    ) -> None:
        """Exact scores for candidates only one retriever found: cosine of their chunks, BM25 from the array."""
        missing = self.lexicon.chunk_ids(sorted(pid for pid in lexical if pid not in dense))
        if missing:
            ids, metas, vectors = self.store.chunks_by_id(missing)
            dense.update(_best_chunks(ids, metas, (vectors @ vector).tolist() if ids else []))
        for pid, score in self.lexicon.score_of(bm25_all, [p for p in dense if p not in lexical]).items():
            if score > 0:
                lexical[pid] = score

    def _hits(
        self, scored: list[tuple[str, float]], dense: dict[str, tuple[float, Chunk]], lexical: dict[str, float]
    ) -> list[Hit]:
        papers = self.store.get_papers(pid for pid, _ in scored)
        dense_rank = _ranks({p: c for p, (c, _) in dense.items()})
        bm25_rank = _ranks(lexical)
        hits = []
        for pid, score in scored:
            if pid not in papers:
                continue  # removed by an ingest running right now
            d = dense.get(pid)
            ranks = {name: r[pid] for name, r in (("dense", dense_rank), ("bm25", bm25_rank)) if pid in r}
            chunk = replace(d[1], text=papers[pid].abstract[d[1].start : d[1].end]) if d else None
            hit = Hit(papers[pid], score, chunk=chunk, dense=d[0] if d else None, bm25=lexical.get(pid), ranks=ranks)
            hits.append(inert(hit))  # text addressed to an AI never leaves retrieval
        return hits


def fuse(
    dense: dict[str, tuple[float, Chunk]], lexical: dict[str, float], ceiling: float, method: str, settings: Settings
) -> list[tuple[str, float]]:
    """One score per paper, best first, ties broken by paper id.

    `weighted` (default): (1-w) * cosine + w * BM25 / ceiling, where the ceiling is what a paper
    holding every query term would score at most (see `Lexicon.ceiling`). A paraphrase whose words
    the corpus lacks has a low BM25 share and ranks by meaning; a query of rare exact terms ranks
    by them. The weight w is RAG_BM25_WEIGHT plus the rest of the way to 1 in proportion to the best
    paper's share of the ceiling: when some paper holds the query's words, word overlap is the
    sharper signal; when none does, BM25 is noise that only blurs the dense ranking.
    `rrf`: reciprocal rank fusion, for comparison.
    """
    if method == "dense":
        score = {pid: c for pid, (c, _) in dense.items()}
    elif method == "bm25":
        score = dict(lexical)
    elif settings.fusion == "rrf":
        ranks = (_ranks({p: c for p, (c, _) in dense.items()}), _ranks(lexical))
        score = {
            pid: sum(1.0 / (settings.rrf_k + r[pid]) for r in ranks if pid in r)
            for pid in sorted(dense.keys() | lexical.keys())
        }
    else:
        share = min(1.0, max(lexical.values(), default=0.0) / ceiling) if ceiling else 0.0
        w = settings.bm25_weight + (1 - settings.bm25_weight) * share
        score = {
            pid: (1 - w) * (dense[pid][0] if pid in dense else 0.0)
            + w * (lexical.get(pid, 0.0) / ceiling if ceiling else 0.0)
            for pid in sorted(dense.keys() | lexical.keys())
        }
    return sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    return {pid: r for r, pid in enumerate(sorted(scores, key=lambda p: (-scores[p], p)), 1)}


def _best_chunks(ids: list[str], metas: list[dict], cosines: list[float]) -> dict[str, tuple[float, Chunk]]:
    """Paper id -> (cosine, chunk) of each paper's nearest chunk; `_hits` fills in the text from the record."""
    best: dict[str, tuple[float, Chunk]] = {}
    for cid, meta, cosine in sorted(zip(ids, metas, cosines), key=lambda row: (-row[2], row[0])):
        pid = meta["paper_id"]
        if pid not in best:
            best[pid] = (
                float(cosine),
                Chunk(cid, pid, "", meta["start"], meta["end"]),
            )  # every chunk of this schema has both
    return best


def _labels_pass(filters: Filters, meta: dict) -> bool:
    return filters.allows_labels(meta.get("categories") or [], meta.get("venue", ""))
