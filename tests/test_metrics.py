"""rag.dev.metrics against hand-computed values and against ranx on random and edge-case rankings."""

from __future__ import annotations

import math
import random

import pytest

from rag.dev import metrics


def test_hit_and_recall():
    ranked = ["a", "b", "c", "d"]
    assert metrics.hit_at_k(ranked, {"c"}, 2) == 0.0
    assert metrics.hit_at_k(ranked, {"c"}, 3) == 1.0
    assert metrics.recall_at_k(ranked, {"a", "d", "z"}, 4) == pytest.approx(2 / 3)


def test_duplicates_count_once_at_their_best_rank():
    # "a" twice: the deduplicated ranking is a, b, c, so "c" is at rank 3, not 4
    assert metrics.reciprocal_rank(["a", "a", "b", "c"], {"c"}) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(["a", "a", "b"], {"a", "b"}, 2) == 1.0
    assert metrics.ndcg_at_k(["a", "a", "b"], {"a", "b"}, 2) == 1.0


def test_nothing_relevant_scores_zero_not_error():
    assert metrics.recall_at_k(["a"], set(), 5) == 0.0
    assert metrics.ndcg_at_k(["a"], set(), 10) == 0.0
    assert metrics.ndcg_at_k(["a"], {"a": 0}, 10) == 0.0  # judged, but not relevant
    assert metrics.reciprocal_rank([], {"a"}) == 0.0


def test_ndcg_by_hand():
    # gold at ranks 1 and 3 of 2 gold: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3)
    expected = 1.5 / (1 + 1 / 1.5849625007)
    assert metrics.ndcg_at_k(["g1", "x", "g2"], {"g1", "g2"}, 10) == pytest.approx(expected)


def test_graded_ndcg_by_hand():
    # grades a=1, c=2; ranking a, b, c: DCG = 1/1 + 2/log2(4) = 2; IDCG = 2/1 + 1/log2(3)
    assert metrics.ndcg_at_k(["a", "b", "c"], {"a": 1, "c": 2}, 10) == pytest.approx(2 / (2 + 1 / math.log2(3)))


def test_reciprocal_rank_stops_at_k():
    assert metrics.reciprocal_rank(["x", "y", "g"], {"g"}, k=2) == 0.0
    assert metrics.reciprocal_rank(["x", "y", "g"], {"g"}, k=3) == pytest.approx(1 / 3)


def test_ndcg_ties_in_gold_order_do_not_matter():
    assert metrics.ndcg_at_k(["g2", "g1"], {"g1", "g2"}, 10) == metrics.ndcg_at_k(["g1", "g2"], {"g1", "g2"}, 10) == 1.0


# ---------------------------------------------------------------- against ranx

OURS = {
    "ndcg@{k}": metrics.ndcg_at_k,
    "recall@{k}": metrics.recall_at_k,
    "hit_rate@{k}": metrics.hit_at_k,
    "mrr@{k}": lambda ranked, gold, k: metrics.reciprocal_rank(ranked, gold, k),
}


def _random_cases(seed: int, n: int) -> dict[str, tuple[list[str], dict[str, int]]]:
    """Rankings of 0-30 distinct ids and graded gold (0-3) over a pool of 40, some gold never retrieved."""
    rng = random.Random(seed)
    pool = [f"d{i:02d}" for i in range(40)]
    cases = {}
    for q in range(n):
        ranked = rng.sample(pool, rng.randint(0, 30))
        judged = rng.sample(pool, rng.randint(1, 8))
        gold = {doc: rng.randint(0, 3) for doc in judged}
        if not any(gold.values()):
            gold[judged[0]] = 1
        cases[f"q{q:03d}"] = (ranked, gold)
    return cases


EDGE_CASES = {
    "empty_ranking": ([], {"a": 1}),
    "gold_beyond_k": ([f"x{i}" for i in range(12)] + ["a"], {"a": 2}),
    "more_gold_than_k": (["a", "b", "c"], {c: 1 for c in "abcdefghijklmnop"}),
    "all_relevant_reversed": (["c", "b", "a"], {"a": 3, "b": 2, "c": 1}),
    "only_irrelevant_retrieved": (["x", "y"], {"a": 1, "x": 0}),
    "single_hit_at_1": (["a"], {"a": 1}),
}


@pytest.mark.slow  # ranx compiles its numba kernels on first use (about 40 s on a fresh machine)
@pytest.mark.parametrize("cases", [_random_cases(7, 200), EDGE_CASES], ids=["random", "edge"])
@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_metrics_match_ranx(cases, k):
    try:
        import ranx
    except ImportError:
        pytest.fail("ranx is not installed; it is a test dependency: pip install -e '.[test]'", pytrace=False)
    qrels = ranx.Qrels({q: gold for q, (_, gold) in cases.items()})
    # ranx reads a run as scores: give strictly decreasing ones so the order is exactly ours
    run = ranx.Run(
        {q: {doc: float(len(ranked) - i) for i, doc in enumerate(ranked)} for q, (ranked, _) in cases.items()}
    )
    names = [name.format(k=k) for name in OURS]
    ranx.evaluate(qrels, run, names, make_comparable=True)
    for name, ours in zip(names, OURS.values()):
        for q, (ranked, gold) in cases.items():
            assert ours(ranked, gold, k) == pytest.approx(float(run.scores[name][q]), abs=1e-9), (name, q, ranked, gold)
