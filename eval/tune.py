"""Choose RAG_BM25_WEIGHT and RAG_REFUSE_BELOW on the dev split only, and print the grid behind the choice.

Usage: python eval/tune.py [--data-dir DIR]   (the index of the default corpus; built first if empty)

Retrieval is scored for every weight (hybrid nDCG@10 per question style); answers for every refusal
threshold at the chosen weight (accuracy, refusal recall, false refusals). The test split is never
read, so the figures reported on it stay honest.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import mean

from rag import evaluate
from rag.answer import Engine
from rag.config import DATASETS_DIR, Settings
from rag.embed import make_embedder
from rag.index import ingest, open_store
from rag.query import analyse
from rag.retrieve import Retriever

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0)
THRESHOLDS = (0.20, 0.24, 0.28, 0.32, 0.36, 0.40)


def retrieval_grid(settings: Settings, embedder: object, questions: list[evaluate.Question]) -> dict[float, dict[str, float]]:
    """Weight -> {style: mean hybrid nDCG@10} over the answerable dev questions."""
    grid = {}
    for weight in WEIGHTS:
        retriever = Retriever(settings.model_copy(update={"bm25_weight": weight}), embedder)
        by_style: dict[str, list[float]] = {}
        for q in questions:
            intent = analyse(q.question)
            ranked = [h.paper.paper_id for h in retriever.search(intent.query, 10, intent.filters)]
            by_style.setdefault(q.style, []).append(evaluate.retrieval_row(ranked, set(q.gold))["ndcg@10"])
        grid[weight] = {style: mean(v) for style, v in sorted(by_style.items())} | {"all": mean(x for v in by_style.values() for x in v)}
    return grid


def answer_grid(settings: Settings, embedder: object, questions: list[evaluate.Question]) -> dict[float, dict[str, float]]:
    """Refusal threshold -> accuracy, refusal recall and false refusals over all dev questions."""
    grid = {}
    for threshold in THRESHOLDS:
        s = settings.model_copy(update={"refuse_below": threshold})
        engine = Engine(s, Retriever(s, embedder), None)
        answers = [(q, engine.ask(q.question)) for q in questions]
        answerable = [a for q, a in answers if q.gold]
        unanswerable = [a for q, a in answers if not q.gold]
        correct = [(a.refused if not q.gold else (not a.refused and bool(set(q.gold) & {c.paper_id for c in a.citations}))) for q, a in answers]
        grid[threshold] = {
            "accuracy": mean(correct),
            "refusal_recall": mean(a.refused for a in unanswerable),
            "false_refusals": mean(a.refused for a in answerable),
        }
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    settings = Settings(_env_file=None, data_dir=args.data_dir)
    embedder = make_embedder(settings)
    if not open_store(settings).count():
        ingest(settings.corpus_paths, settings, embedder)
    dev = evaluate.select(evaluate.load_datasets([DATASETS_DIR]), "dev")
    print(f"{len(dev)} dev questions")
    retrieval = retrieval_grid(settings, embedder, [q for q in dev if q.gold])
    print("bm25_weight | " + " | ".join(retrieval[WEIGHTS[0]]))
    for weight, row in retrieval.items():
        print(f"{weight:.1f} | " + " | ".join(f"{v:.3f}" for v in row.values()))
    best = max(WEIGHTS, key=lambda w: (min(retrieval[w].values()), retrieval[w]["all"], -w))
    print(f"chosen bm25_weight {best} (best worst-style nDCG@10)")
    answers = answer_grid(settings.model_copy(update={"bm25_weight": best}), embedder, dev)
    print("refuse_below | accuracy | refusal_recall | false_refusals")
    for threshold, row in answers.items():
        print(f"{threshold:.2f} | " + " | ".join(f"{v:.3f}" for v in row.values()))


if __name__ == "__main__":
    main()
