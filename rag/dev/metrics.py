"""Ranking metrics as trec_eval defines them (graded gains, log2 discount; the tests check them against ranx),
and the small arithmetic of the answer figures (must-mention coverage, averages and shares of what applies)
with their legend.

Gold is a set of relevant ids (grade 1 each) or a mapping id -> grade, where a grade of 0 or
less means "judged not relevant". A ranking that lists an id twice counts it once, at its best rank.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence, Set
from statistics import mean

# The answer figures: the short name a table heads each column with, and what it means. The one legend of
# `rag eval`'s tables and of the UI's eval page.
ANSWERS = {
    "questions": ("n", "questions in the group"),
    "accuracy": ("acc", "share answered correctly (a gold paper cited, or an unanswerable question refused)"),
    "precision": ("prec", "share correct among the questions not refused"),
    "citation_validity": (
        "valid",
        "share of the answer's raw [n] markers that name a given source (gated in LLM mode only)",
    ),
    "citation_supported": ("supp", "share of kept citations whose source sentence backs the claim"),
    "citation_precision": ("citeP", "share of cited papers that are gold (answerable questions answered)"),
    "citation_recall": ("citeR", "share of gold papers cited (answerable questions)"),
    "must_mention": ("must", "share of must-mention facts in the answer (answerable questions)"),
    "refusal_precision": ("refP", "share of refusals that were on unanswerable questions"),
    "refusal_recall": ("refR", "share of unanswerable questions refused"),
    "false_refusals": ("fRef", "share of answerable questions refused (lower is better)"),
}
# Refusal figures apply to unanswerable questions only, so a per-group table shows them apart.
REFUSAL = ("refusal_precision", "refusal_recall")

Gold = Mapping[str, float] | Set[str]


def grades(gold: Gold) -> dict[str, float]:
    """Relevant ids and their gains; judged-irrelevant ids are dropped."""
    if isinstance(gold, Mapping):
        return {doc: float(g) for doc, g in gold.items() if g > 0}
    return {doc: 1.0 for doc in gold}


def _top(ranked: Sequence[str], k: int | None) -> list[str]:
    unique = list(dict.fromkeys(ranked))
    return unique if k is None else unique[:k]


def hit_at_k(ranked: Sequence[str], gold: Gold, k: int) -> float:
    relevant = grades(gold)
    return float(any(doc in relevant for doc in _top(ranked, k)))


def recall_at_k(ranked: Sequence[str], gold: Gold, k: int) -> float:
    """Share of the relevant ids found in the top k; 0 when nothing is relevant."""
    relevant = grades(gold)
    if not relevant:
        return 0.0
    return sum(doc in relevant for doc in _top(ranked, k)) / len(relevant)


def reciprocal_rank(ranked: Sequence[str], gold: Gold, k: int | None = None) -> float:
    """1 / rank of the first relevant id within the top k (all of the ranking when k is None)."""
    relevant = grades(gold)
    return next((1.0 / i for i, doc in enumerate(_top(ranked, k), 1) if doc in relevant), 0.0)


def ndcg_at_k(ranked: Sequence[str], gold: Gold, k: int) -> float:
    """nDCG@k with gain = grade: the ideal ranking lists the relevant ids best grade first."""
    relevant = grades(gold)
    if not relevant:
        return 0.0
    dcg = sum(relevant.get(doc, 0.0) / math.log2(i + 1) for i, doc in enumerate(_top(ranked, k), 1))
    ideal = sum(g / math.log2(i + 1) for i, g in enumerate(sorted(relevant.values(), reverse=True)[:k], 1))
    return dcg / ideal


# ------------------------------------------------------------ answer figures


def normalise(text: str) -> str:
    """Lower case, unify dashes and spacing, drop thousands separators: '1,000 x' matches '1000x'."""
    text = text.lower().replace("−", "-").replace("–", "-")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return re.sub(r"\s+", "", text)


def mentions(answer: str, facts: list[str]) -> float:
    """Share of the must-mention facts that the answer states (after `normalise`); 1 when there are none."""
    if not facts:
        return 1.0
    body = normalise(answer)
    return sum(normalise(f) in body for f in facts) / len(facts)


def average(values: Iterable[float | None]) -> float | None:
    """The mean of the values that apply (None: the figure does not apply), rounded; None when none does."""
    present = [v for v in values if v is not None]
    return round(mean(present), 4) if present else None


def share(hits: int, of: int) -> float | None:
    """hits / of, rounded; None when there is nothing to count."""
    return round(hits / of, 4) if of else None
