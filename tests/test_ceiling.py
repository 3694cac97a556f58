"""eval/ceiling.py's two measures: the perfect cut of a ranked list and the AUC of a signal."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("ceiling", Path(__file__).resolve().parents[1] / "eval" / "ceiling.py")
assert _SPEC and _SPEC.loader
ceiling = sys.modules["ceiling"] = importlib.util.module_from_spec(_SPEC)  # a dataclass needs its module there
_SPEC.loader.exec_module(ceiling)


def test_the_perfect_cut_stops_at_the_first_rank_that_reaches_the_recall():
    cut = ceiling.perfect_cut(["a", "x", "b", "y", "c", "z"], {"a", "b", "c"})
    assert (cut.papers, cut.precision, cut.recall) == (5, 0.6, 1.0)  # 2 of 3 is below 0.8: all three are needed
    cut = ceiling.perfect_cut(["a", "x", "b", "y", "c", "d", "e"], {"a", "b", "c", "d", "e"})
    assert (cut.papers, cut.recall) == (6, 0.8)


def test_a_list_that_never_reaches_the_recall_keeps_every_candidate():
    cut = ceiling.perfect_cut(["x", "a", "y"], {"a", "b"})
    assert (cut.papers, cut.precision, cut.recall) == (3, pytest.approx(1 / 3), 0.5)


def test_auc_counts_pairs_ordered_right_and_ties_as_half():
    assert ceiling.auc([0.9, 0.5], [0.5, 0.1]) == 0.875
    assert ceiling.auc([0.1], [0.9]) == 0.0
    assert math.isnan(ceiling.auc([], [0.3]))
