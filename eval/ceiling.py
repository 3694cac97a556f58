"""What the offline judge could reach at best with today's signals, for one split.

Usage: python eval/ceiling.py --data-dir DIR [--split dev|test] [--candidates 12 20]
(with RAG_LLM_* set, the model is also asked about each candidate of the ranking figure, as its judge would be)

A figure below its goal here cannot be reached by choosing a better cut or threshold: the signals
themselves have to get better (a stronger judge or retrieval). Three ceilings:

- Lists ("which papers"): precision and recall of a perfect cut of the judged order, per paper, at each
  candidate count. Per list the cut is the first that reaches recall 0.8, or every candidate when none does.
- Ranking: how often each signal puts a gold candidate of a paraphrased question above another candidate
  (AUC: 0.5 is chance, 1.0 perfect); the model's probability of "yes" too when an LLM is configured.
- Refusals: with the names and topic rules as they are, the best refusal recall any threshold on the best
  paper's relevance gives at false refusals <= 0.05, and the false refusals a recall of 0.9 would cost.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import mean

from rag import evidence
from rag.answer import Engine
from rag.app import build_engine
from rag.config import DATASETS_DIR, Settings
from rag.dev import evaluate
from rag.errors import UserError
from rag.prompt import judge_messages
from rag.question import read_question
from rag.types import Hit

RECALL = 0.8  # the recall a list must reach (the goal's)
FALSE_REFUSALS = 0.05  # the false refusals a refusal rule may cost (the goal's)


@dataclass
class Cut:
    style: str
    precision: float
    recall: float
    papers: int


def perfect_cut(order: list[str], gold: set[str], recall: float = RECALL) -> Cut:
    """The first cut of `order` that holds `recall` of `gold`, or all of it when none does."""
    k = next((k for k in range(1, len(order) + 1) if len(gold & set(order[:k])) >= recall * len(gold)), len(order))
    found = len(gold & set(order[:k]))
    return Cut("", found / k if k else 0.0, found / len(gold), k)


def auc(positive: list[float], negative: list[float]) -> float:
    """The chance that a positive scores above a negative (ties count half)."""
    pairs = [(p > n) + 0.5 * (p == n) for p in positive for n in negative]
    return mean(pairs) if pairs else float("nan")


def signals(engine: Engine, question: str, hit: Hit) -> dict[str, float]:
    """Each signal's value for one candidate; with an LLM configured, also its probability of "yes" as a judge."""
    assert hit.judgement is not None
    values = {"fused score": hit.score, "dense cosine": hit.dense or 0.0, "judge strength": hit.judgement.strength}
    if engine.llm is not None:
        values["LLM P(yes)"] = engine.llm.yes_probability(judge_messages(question, hit)) or 0.0
    return values


def judge_cut(hits: list[Hit], gold: set[str]) -> Cut:
    """The judge's own cut: the papers it judged relevant."""
    kept = {h.paper.paper_id for h in hits if h.relevant}
    return Cut("", len(kept & gold) / len(kept) if kept else 0.0, len(kept & gold) / len(gold), len(kept))


def list_cuts(engine: Engine, questions: list[evaluate.Question], k: int) -> tuple[list[Cut], list[Cut]]:
    """Per list, the perfect cut of the judged order of `k` candidates, and the judge's own."""
    perfect, judged = [], []
    for q in questions:
        intent = read_question(q.question)
        hits = evidence.read(engine.offline, intent, engine.retriever.search(intent.searched, k, intent.filters))
        perfect.append(replace(perfect_cut([h.paper.paper_id for h in hits], set(q.gold)), style=q.style))
        judged.append(replace(judge_cut(hits, set(q.gold)), style=q.style))
    return perfect, judged


def ranking(engine: Engine, questions: list[evaluate.Question]) -> dict[str, float]:
    """Signal -> AUC of gold against the other candidates of the same paraphrased questions."""
    gold: list[dict[str, float]] = []
    other: list[dict[str, float]] = []
    for n, q in enumerate(questions, 1):
        intent = read_question(q.question)
        k = engine.settings.list_k if intent.is_list or intent.is_summary else engine.settings.answer_k
        for hit in evidence.read(engine.offline, intent, engine.retriever.search(intent.searched, k, intent.filters)):
            (gold if hit.paper.paper_id in q.gold else other).append(signals(engine, intent.query, hit))
        print(f"\r  ranking: {n}/{len(questions)} questions read", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {name: auc([g[name] for g in gold], [o[name] for o in other]) for name in gold[0]}


def refusal_sweep(engine: Engine, questions: list[evaluate.Question]) -> tuple[tuple[float, float, float], float]:
    """(recall, precision, threshold) of the best threshold within FALSE_REFUSALS, and the false refusals
    of the lowest threshold that refuses 90% of the unanswerable questions."""
    rows = []
    for q in questions:
        intent = read_question(q.question)
        if intent.meta is not None or intent.filter_only:
            continue
        hits = engine.retriever.search(intent.searched, engine.settings.answer_k, intent.filters)
        ruled = bool(engine.relevance.unknown_names(intent.query) or engine.offline.apart(intent.query))
        rows.append((not q.gold, ruled, engine.relevance.best(intent.searched, hits[:3])))
    unanswerable = sum(u for u, _, _ in rows)
    answerable = len(rows) - unanswerable
    best, cost = (0.0, 0.0, 0.0), 1.0
    for t in sorted({0.0} | {b + 1e-6 for _, _, b in rows}):
        refused = [(u, ruled or b < t) for u, ruled, b in rows]
        right = sum(u and r for u, r in refused)
        wrong = sum(r and not u for u, r in refused)
        recall = right / unanswerable
        if wrong / answerable <= FALSE_REFUSALS and recall > best[0]:
            best = (recall, right / max(1, right + wrong), t)
        if recall >= 0.9:
            cost = min(cost, wrong / answerable)
    return best, cost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--split", choices=evaluate.SPLITS, default="dev")
    parser.add_argument("--candidates", type=int, nargs="+", default=[12, 20])
    args = parser.parse_args()
    try:
        report(args.data_dir, args.split, args.candidates)
    except UserError as e:  # an index, embedder or LLM endpoint that cannot be used
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def report(data_dir: Path, split: str, candidates: list[int]) -> None:
    engine = build_engine(
        Settings(_env_file=None, data_dir=data_dir)
    )  # the default corpus ingested into an empty index
    questions = evaluate.select(evaluate.load_datasets([DATASETS_DIR]), split)
    lists = [q for q in questions if q.kind == "multi" and q.gold]
    print(f"{split}: {len(lists)} lists, per paper: precision / recall, papers kept")
    for k in candidates:
        for name, cuts in zip(("perfect cut", "judge's cut"), list_cuts(engine, lists, k)):
            for style in ("lexical", "paraphrase", "all"):
                chosen = [c for c in cuts if style in ("all", c.style)]
                print(
                    f"  {k:>3} candidates, {name}, {style:<10} ({len(chosen):>2}): "
                    f"{mean(c.precision for c in chosen):.3f} / {mean(c.recall for c in chosen):.3f}, "
                    f"{mean(c.papers for c in chosen):.1f}"
                )
    paraphrases = [q for q in questions if q.style == "paraphrase" and q.gold and q.kind != "metadata"]
    print(f"{split}: gold against the other candidates of {len(paraphrases)} paraphrased questions (AUC)")
    for name, value in ranking(engine, paraphrases).items():
        print(f"  {name:<15} {value:.3f}")
    (recall, precision, threshold), cost = refusal_sweep(engine, questions)
    print(
        f"{split}: refusals, best threshold on relevance with false refusals <= {FALSE_REFUSALS}: "
        f"recall {recall:.3f}, precision {precision:.3f} (below {threshold:.3f}); "
        f"recall 0.9 costs false refusals {cost:.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
