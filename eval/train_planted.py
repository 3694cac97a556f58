"""Train the learned scorer of planted text (rag/scorer.py) and write its weights.

    python eval/train_planted.py            # writes rag/resources/planted-scorer.npy
    python eval/train_planted.py --check    # writes nothing: trained on half the corpus's papers, scored on the other half

Positives: the sentences of eval/datasets/planted/planted.jsonl (dev and test; fresh.jsonl stays
held out), each also with its canary written as a plain word, so that the model learns the words
around a code and not the code. Negatives: every sentence and title of data/corpus. Full-batch
gradient descent on the class-balanced logistic loss with an L2 penalty, from zero: the same
weights on every run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag import corpus  # noqa: E402
from rag.safety import LEARNED_AT, _normalise  # noqa: E402
from rag.scorer import BUCKETS, WEIGHTS, features  # noqa: E402
from rag.text import sentence_spans  # noqa: E402

STEPS, RATE, L2 = 500, 20.0, 1e-4


def examples() -> tuple[list[str], list[list[str]]]:
    planted = []
    for line in (ROOT / "eval" / "datasets" / "planted" / "planted.jsonl").read_text().splitlines():
        record = json.loads(line)
        text = record["text"]
        planted += [text[s:e] for s, e in sentence_spans(text)]
        planted.append(text.replace(record["canary"], "the result"))
    papers = corpus.load([ROOT / "data" / "corpus"]).papers
    clean = [[p.abstract[s:e] for s, e in sentence_spans(p.abstract)] + ([p.title] if p.title else []) for p in papers]
    return planted, clean


def train(planted: list[str], clean: list[str]) -> np.ndarray:
    rows = [features(_normalise(s)) for s in planted + clean]
    flat, owner = np.concatenate(rows), np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    y = np.array([1.0] * len(planted) + [0.0] * len(clean))
    weight = np.where(y == 1, 0.5 / len(planted), 0.5 / len(clean))
    w = np.zeros(BUCKETS + 1)
    for _ in range(STEPS):
        z = np.bincount(owner, weights=w[flat], minlength=len(rows)) + w[-1]
        residual = weight * (1.0 / (1.0 + np.exp(-z)) - y)
        grad = np.bincount(flat, weights=residual[owner], minlength=BUCKETS + 1)
        grad[-1] = residual.sum()
        grad[:-1] += L2 * w[:-1]
        w -= RATE * grad
    return w.astype(np.float32)


def check(planted: list[str], clean: list[list[str]]) -> None:
    """The corpus sentences the scorer alone would withhold when their paper was not trained on (two folds)."""
    flagged = total = 0
    for fold in (0, 1):
        w = train(planted, [s for i, paper in enumerate(clean) if i % 2 != fold for s in paper])
        unseen = [s for i, paper in enumerate(clean) if i % 2 == fold for s in paper]
        z = np.array([w[features(_normalise(s))].sum() + w[-1] for s in unseen])
        flagged, total = flagged + int((z >= np.log(LEARNED_AT / (1 - LEARNED_AT))).sum()), total + len(unseen)
    print(f"scorer alone, papers not trained on: {flagged} of {total} corpus sentences at or above {LEARNED_AT}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing: train on half the papers, score the rest")
    args = parser.parse_args()
    planted, clean = examples()
    if args.check:
        check(planted, clean)
        return 0
    w = train(planted, [s for paper in clean for s in paper])
    np.save(WEIGHTS, w)
    print(
        f"trained on {len(planted)} planted and {sum(map(len, clean))} corpus sentences; wrote {WEIGHTS.relative_to(ROOT)} ({WEIGHTS.stat().st_size} bytes)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
