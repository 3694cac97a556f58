"""Choose RAG_BM25_WEIGHT and RAG_REFUSE_BELOW on the dev split only, and print the grid behind the choice.

Usage: python eval/tune.py [--data-dir DIR]   (the index of the default corpus; built first if empty)

Retrieval is scored for every weight (hybrid nDCG@10 against the better single retriever, per question
style and kind); answers for every refusal threshold at the chosen weight (accuracy, refusal recall,
false refusals). The test split is never
read, so the figures reported on it stay honest.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import mean

from rag.answer import Engine
from rag.config import DATASETS_DIR, Settings
from rag.dev import evaluate
from rag.embed import make_embedder
from rag.ingest import ingest
from rag.question import read_question
from rag.retrieve import Retriever
from rag.store import open_store

WEIGHTS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 1.0)
THRESHOLDS = (0.20, 0.24, 0.28, 0.32, 0.36, 0.40)


def _groups(q: evaluate.Question) -> list[str]:
    return [f"style:{q.style}", f"kind:{q.kind}"]


def retrieval_grid(
    settings: Settings, embedder: object, questions: list[evaluate.Question]
) -> dict[float, dict[str, float]]:
    """Weight -> {group: hybrid nDCG@10 minus the better of BM25 and dense alone} (groups: every
    style and kind) plus "all" (mean hybrid nDCG@10), over the answerable dev questions."""

    def ndcg(retriever: Retriever, method: str) -> dict[str, list[float]]:
        by_group: dict[str, list[float]] = {}
        for q in questions:
            intent = read_question(q.question)
            ranked = [h.paper.paper_id for h in retriever.search(intent.query, 10, intent.filters, method=method)]
            value = evaluate.retrieval_row(ranked, set(q.gold))["ndcg@10"]
            for group in ["all", *_groups(q)]:
                by_group.setdefault(group, []).append(value)
        return by_group

    single = Retriever(settings, embedder)
    best_single = {
        g: max(mean(v), mean(d)) for (g, v), d in zip(ndcg(single, "bm25").items(), ndcg(single, "dense").values())
    }
    grid = {}
    for weight in WEIGHTS:
        hybrid = ndcg(Retriever(settings.model_copy(update={"bm25_weight": weight}), embedder), "hybrid")
        grid[weight] = {g: mean(v) - best_single[g] for g, v in sorted(hybrid.items()) if g != "all"} | {
            "all": mean(hybrid["all"])
        }
    return grid


def answer_grid(
    settings: Settings, embedder: object, questions: list[evaluate.Question]
) -> dict[float, dict[str, float]]:
    """Refusal threshold -> accuracy, refusal recall and false refusals over all dev questions."""
    grid = {}
    for threshold in THRESHOLDS:
        s = settings.model_copy(update={"refuse_below": threshold})
        engine = Engine(s, Retriever(s, embedder), None)
        answers = [(q, engine.ask(q.question)) for q in questions]
        answerable = [a for q, a in answers if q.gold]
        unanswerable = [a for q, a in answers if not q.gold]
        correct = [
            (a.refused if not q.gold else (not a.refused and bool(set(q.gold) & {c.paper_id for c in a.citations})))
            for q, a in answers
        ]
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
    print("hybrid nDCG@10 minus the better single retriever per group; all = mean hybrid nDCG@10")
    print("bm25_weight | " + " | ".join(retrieval[WEIGHTS[0]]))
    for weight, row in retrieval.items():
        print(f"{weight:.2f} | " + " | ".join(f"{v:+.3f}" for v in row.values()))
    margin = {w: min(v for g, v in row.items() if g != "all") for w, row in retrieval.items()}
    best = max(WEIGHTS, key=lambda w: (margin[w], retrieval[w]["all"], -w))
    print(f"chosen bm25_weight {best} (hybrid ahead of both single retrievers by the most in its worst style or kind)")
    answers = answer_grid(settings.model_copy(update={"bm25_weight": best}), embedder, dev)
    print("refuse_below | accuracy | refusal_recall | false_refusals")
    for threshold, row in answers.items():
        print(f"{threshold:.2f} | " + " | ".join(f"{v:.3f}" for v in row.values()))


if __name__ == "__main__":
    main()
