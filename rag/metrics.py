"""Deterministic retrieval and answer metrics: no LLM judge, same numbers on every run."""

from __future__ import annotations

import math
from collections.abc import Sequence


def _dedupe(ranked: Sequence[str]) -> list[str]:
    """A paper listed twice counts once, at its best rank."""
    return list(dict.fromkeys(ranked))


def hit_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    return float(bool(gold & set(_dedupe(ranked)[:k])))


def recall_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    if not gold:
        return 0.0
    return len(gold & set(_dedupe(ranked)[:k])) / len(gold)


def reciprocal_rank(ranked: Sequence[str], gold: set[str]) -> float:
    for i, pid in enumerate(_dedupe(ranked), 1):
        if pid in gold:
            return 1.0 / i
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Binary-relevance nDCG: the ideal ranking puts every gold paper first."""
    if not gold:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 1) for i, pid in enumerate(_dedupe(ranked)[:k], 1) if pid in gold)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(gold), k) + 1))
    return dcg / ideal
