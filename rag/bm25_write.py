"""Write a bm25s index to disk in memory that does not grow with the corpus.

`bm25s.BM25.index` holds every paper's terms and builds its term-by-paper score matrix in memory, several
copies at once: about 8 KB a paper at its peak, 4 GB for 500,000 papers. Here each paper's term ids are
appended to a file as the records are read (`Spill`), scored a paper at a time with bm25s's own scoring
functions, and turned around into the matrix's term-major order a block of terms at a time. The files are
those `bm25s.BM25.save` writes, and `bm25s.BM25.load` reads them (tests/test_dependency_internals.py).
"""

from __future__ import annotations

import json
from array import array
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

BLOCK = 1 << 20  # (term, paper) pairs turned around at once: 1M pairs, about 40 MB with their sorting
READ = 1 << 20  # triples read from disk at once while a block's pairs are picked out
PAGE = 4096  # papers scored before their pairs are written out


class Spill:
    """Each paper's term ids, appended to `folder`/terms.bin as the papers are read, and their counts."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "terms.bin"
        self._handle: BinaryIO = open(self.path, "wb")
        self.lengths = array("I")  # terms per paper
        self.df = array("I")  # papers per term id

    def add(self, ids: array) -> None:
        grown = max(ids, default=-1) + 1 - len(self.df)
        if grown > 0:
            self.df.frombytes(bytes(4 * grown))
        for tid in set(ids):
            self.df[tid] += 1
        self.lengths.append(len(ids))
        ids.tofile(self._handle)

    def close(self) -> None:
        self._handle.close()


def write(folder: Path, spill: Spill, vocab: dict[str, int]) -> None:
    """Write the index of the spilled papers into `folder` as `bm25s.BM25().save` would (Lucene BM25, its
    defaults); the scores are bm25s's own, computed by its functions, so a search ranks exactly as before."""
    import bm25s
    from bm25s import scoring

    model = bm25s.BM25()
    folder.mkdir(parents=True, exist_ok=True)
    n_docs, n_vocab = len(spill.lengths), len(spill.df)
    frequencies = {tid: int(df) for tid, df in enumerate(spill.df)}
    idf = scoring._build_idf_array(frequencies, n_docs, scoring._select_idf_scorer(model.idf_method), dtype=model.dtype)
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(np.asarray(spill.df, dtype=np.int64), out=indptr[1:])
    pairs = folder / "pairs"
    _score(model, spill, idf, pairs)
    index_dtype = np.int32 if max(int(indptr[-1]), n_docs, n_vocab) < 2**31 else np.int64
    _transpose(pairs, indptr, folder, np.dtype(model.dtype), index_dtype)
    _save_npy(folder / "indptr.csc.index.npy", indptr)  # int64, as scipy gives bm25s
    for name in ("terms", "docs", "scores"):
        pairs.with_suffix(f".{name}").unlink()
    vocab = {**vocab, "": max(vocab.values(), default=-1) + 1}  # as `index` adds it, for a query of no known term
    (folder / "vocab.index.json").write_text(json.dumps(vocab, ensure_ascii=False))
    params = dict(
        k1=model.k1,
        b=model.b,
        delta=model.delta,
        method=model.method,
        idf_method=model.idf_method,
        dtype=model.dtype,
        int_dtype=model.int_dtype,
        num_docs=n_docs,
        version=bm25s.__version__,
        backend=model.backend,
    )
    (folder / "params.index.json").write_text(json.dumps(params, indent=4))


def _score(model: Any, spill: Spill, idf: np.ndarray, pairs: Path) -> None:
    """Each paper's (term, paper, score) triples, paper by paper, into three files beside `pairs`."""
    from bm25s import scoring

    tfc = scoring._select_tfc_scorer(model.method)
    avg = np.asarray(spill.lengths, dtype=np.int64).mean()
    outs = [open(pairs.with_suffix(f".{name}"), "wb") for name in ("terms", "docs", "scores")]
    try:
        with open(spill.path, "rb") as terms:
            page: list[list[np.ndarray]] = [[], [], []]
            for doc, length in enumerate(spill.lengths):
                ids = array("I")
                ids.fromfile(terms, length)
                voc, tf = scoring._get_counts_from_token_ids(ids, dtype=model.dtype, int_dtype=model.int_dtype)
                scores = idf[voc] * tfc(tf_array=tf, l_d=length, l_avg=avg, k1=model.k1, b=model.b, delta=model.delta)
                page[0].append(voc.astype(np.int32))
                page[1].append(np.full(len(voc), doc, dtype=np.int32))
                page[2].append(np.asarray(scores, dtype=model.dtype))
                if (doc + 1) % PAGE == 0 or doc + 1 == len(spill.lengths):
                    for out, parts in zip(outs, page):
                        np.concatenate(parts).tofile(out)
                    page = [[], [], []]
    finally:
        for out in outs:
            out.close()


def _transpose(pairs: Path, indptr: np.ndarray, folder: Path, dtype: np.dtype, index_dtype: type) -> None:
    """Write the scores and paper numbers in term order (papers ascending within a term), a block of terms at
    a time: each block reads the paper-ordered triples once and keeps only its own terms' pairs."""
    nnz = int(indptr[-1])
    with (
        open(folder / "data.csc.index.npy", "wb") as data,
        open(folder / "indices.csc.index.npy", "wb") as indices,
    ):
        _header(data, dtype, nnz)
        _header(indices, np.dtype(index_dtype), nnz)
        first = 0
        while first < len(indptr) - 1:
            last = int(np.searchsorted(indptr, indptr[first] + BLOCK, side="right")) - 1
            last = max(last, first + 1)  # one term with more pairs than a block is a block of its own
            terms, docs, scores = _pairs_of(pairs, first, last)
            order = np.argsort(terms, kind="stable")
            scores[order].astype(dtype).tofile(data)
            docs[order].astype(index_dtype).tofile(indices)
            first = last


def _pairs_of(pairs: Path, first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The triples whose term id is in [first, last), in the order they were written (by paper)."""
    kept: list[list[np.ndarray]] = [[], [], []]
    with (
        open(pairs.with_suffix(".terms"), "rb") as t,
        open(pairs.with_suffix(".docs"), "rb") as d,
        open(pairs.with_suffix(".scores"), "rb") as s,
    ):
        while len(terms := np.fromfile(t, dtype=np.int32, count=READ)):
            docs = np.fromfile(d, dtype=np.int32, count=len(terms))
            scores = np.fromfile(s, dtype=np.float32, count=len(terms))
            mask = (terms >= first) & (terms < last)
            for part, values in zip(kept, (terms, docs, scores)):
                part.append(values[mask])
    empty = np.zeros(0, dtype=np.int32)
    return (
        np.concatenate(kept[0]) if kept[0] else empty,
        np.concatenate(kept[1]) if kept[1] else empty,
        np.concatenate(kept[2]) if kept[2] else empty.astype(np.float32),
    )


def _header(handle: BinaryIO, dtype: np.dtype, length: int) -> None:
    np.lib.format.write_array_header_1_0(
        handle, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
    )


def _save_npy(path: Path, values: np.ndarray) -> None:
    np.save(path, values, allow_pickle=False)
