"""Retrieval on a BEIR-format benchmark (SciFact, NFCorpus, ...): nDCG@10, recall@10/100, MRR@10 per retriever.

The user brings the folder (`corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`); its corpus is
converted to the product's JSONL (`id`, `title`, `abstract`) under the data dir and ingested into
a collection of its own, `beir-<folder name>`, so the product's index is never touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from rag.config import Settings
from rag.corpus import clean_text
from rag.dev import metrics
from rag.dev.evaluate import METHODS, bars, fmt, pyplot
from rag.errors import CorpusError
from rag.types import Filters, Paper

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
DEPTH = 100  # papers retrieved per query: the deepest cut-off measured
Progress = Callable[[int, int], None]


@dataclass
class BeirSet:
    name: str
    docs: list[dict[str, str]]  # _id, title, text, in file order
    queries: dict[str, str]  # test query id -> text, for queries with at least one relevant document
    qrels: dict[str, dict[str, int]]  # query id -> corpus id -> relevance grade (> 0)
    no_text: int = 0  # judged queries missing from queries.jsonl


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}:{n}: not JSON ({e.msg}); BEIR files hold one JSON object per line") from None
        if not isinstance(row, dict) or "_id" not in row:
            raise CorpusError(f"{path}:{n}: a BEIR record needs an '_id'; is this a BEIR folder?")
        yield n, row


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != ["query-id", "corpus-id", "score"]:
        raise CorpusError(f"{path}: the first line must be the header 'query-id<TAB>corpus-id<TAB>score'")
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not re.fullmatch(r"-?\d+", parts[2].strip()):
            raise CorpusError(f"{path}:{n}: expected query-id, corpus-id and an integer score separated by tabs")
        if int(parts[2]) > 0:
            qrels.setdefault(parts[0].strip(), {})[parts[1].strip()] = int(parts[2])
    return qrels


def load(folder: Path) -> BeirSet:
    """Read a BEIR folder; anything missing or malformed is one CorpusError naming the file and line."""
    needed = [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / "test.tsv"]
    if missing := [str(p.relative_to(folder)) for p in needed if not p.is_file()]:
        raise CorpusError(
            f"{folder}: missing {', '.join(missing)}; a BEIR folder has corpus.jsonl, queries.jsonl and qrels/test.tsv"
        )
    docs = [
        {"_id": str(r["_id"]), "title": str(r.get("title") or ""), "text": str(r.get("text") or "")}
        for _, r in _jsonl(needed[0])
    ]
    texts = {str(r["_id"]): str(r.get("text") or "") for _, r in _jsonl(needed[1])}
    qrels = _qrels(needed[2])
    queries = {q: texts[q] for q in sorted(qrels) if q in texts}
    if not queries:
        raise CorpusError(
            f"{needed[2]}: no query there has a relevant document and a text in queries.jsonl; nothing to measure"
        )
    return BeirSet(folder.name, docs, queries, {q: qrels[q] for q in queries}, no_text=len(qrels) - len(queries))


def collection_name(folder: Path) -> str:
    """`beir-<folder name>`, reduced to what Chroma accepts in a collection name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.resolve().name).strip("-._")[:100]
    return f"beir-{stem or 'dataset'}"


def convert(docs: list[dict[str, str]], dest: Path) -> Path:
    """The corpus as the product's JSONL; a document with no text keeps its title as its abstract."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "corpus.jsonl"
    rows = [{"id": d["_id"], "title": d["title"], "abstract": d["text"] or d["title"]} for d in docs]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def paper_ids(docs: list[dict[str, str]], papers: list[Paper]) -> dict[str, str]:
    """BEIR corpus id -> the product's paper id, for every document that was indexed.

    The product keeps an explicit JSONL `id` as the paper id; should it hash the text instead,
    the document is found by its cleaned title and abstract. Documents it skipped map to nothing.
    """
    ids = {p.paper_id for p in papers}
    by_text = {(p.title, p.abstract): p.paper_id for p in papers}
    mapping = {}
    for d in docs:
        found = (
            d["_id"] if d["_id"] in ids else by_text.get((clean_text(d["title"]), clean_text(d["text"] or d["title"])))
        )
        if found:
            mapping[d["_id"]] = found
    return mapping


def query_scores(ranked: list[str], gold: dict[str, int]) -> dict[str, float]:
    return {
        "ndcg@10": metrics.ndcg_at_k(ranked, gold, 10),
        "recall@10": metrics.recall_at_k(ranked, gold, 10),
        "recall@100": metrics.recall_at_k(ranked, gold, 100),
        "mrr@10": metrics.reciprocal_rank(ranked, gold, 10),
    }


@dataclass
class Prepared:
    """A BEIR set ingested and ready to search."""

    data: BeirSet
    collection: str
    retriever: Any
    mapping: dict[str, str]  # BEIR corpus id -> paper id, for the indexed documents
    ingest_s: float


def prepare(folder: Path, settings: Settings, embedder: Any, on_progress: Progress | None = None) -> Prepared:
    """Convert the folder's corpus and ingest it into its own collection (only new or changed documents are embedded)."""
    from rag.ingest import ingest
    from rag.retrieve import Retriever
    from rag.store import open_store

    if not folder.is_dir():
        raise CorpusError(
            f"{folder}: no such folder; give --beir a BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/)"
        )
    data = load(folder)
    name = collection_name(folder)
    scoped = settings.model_copy(update={"collection": name, "candidates": max(settings.candidates, 2 * DEPTH)})
    converted = convert(data.docs, settings.data_dir / "beir" / name)
    store = open_store(scoped)
    report = ingest([converted], scoped, embedder, store=store, prune=True, on_progress=on_progress)
    papers = list(store.all_papers())  # the pruned collection holds just these
    return Prepared(
        data, name, Retriever(scoped, embedder, store), paper_ids(data.docs, papers), round(report.seconds, 1)
    )


def score(bench: Prepared, on_progress: Progress | None = None) -> dict:
    """Every test query through each retriever; the result is deterministic (beir.json)."""
    data = bench.data
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    for i, (qid, text) in enumerate(data.queries.items(), 1):
        gold: dict[str, int] = {}
        for doc, grade in data.qrels[qid].items():  # a judged document that was not indexed still counts, as missed
            key = bench.mapping.get(doc, f"not-indexed:{doc}")
            gold[key] = max(grade, gold.get(key, 0))
        per_query[qid] = {}
        for m in METHODS:
            ranked = [h.paper.paper_id for h in bench.retriever.search(text, DEPTH, Filters(), method=m)]
            per_query[qid][m] = {k: round(v, 6) for k, v in query_scores(ranked, gold).items()}
        if on_progress:
            on_progress(i, len(data.queries))
    return {
        "dataset": data.name,
        "collection": bench.collection,
        "documents": len(data.docs),
        "indexed": len(bench.mapping),
        "queries": len(per_query),
        "queries_without_text": data.no_text,
        "methods": {m: {k: round(mean(q[m][k] for q in per_query.values()), 4) for k in METRICS} for m in METHODS},
        "per_query": per_query,
    }


def write(result: dict, out: Path) -> None:
    """beir.json and beir.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "beir.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    bars(ax, list(METRICS), {m: [result["methods"][m][k] for k in METRICS] for m in METHODS})
    ax.set_ylim(0, 1.15)
    ax.set_title(f"BEIR {result['dataset']}: {result['queries']} test queries, {result['indexed']} documents indexed")
    ax.legend(loc="upper center", ncol=3)
    for container in ax.containers:
        ax.bar_label(container, labels=[fmt(v) for v in container.datavalues], fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "beir.png", dpi=100)
    plt.close(fig)
