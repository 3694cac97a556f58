"""A learned second opinion on planted text: logistic regression over hashed word n-grams.

The rules in rag/safety.py name the shapes of an order they were written for; this model scores
the words themselves ("responses", "required", "marker", a code where a finding would be), learned
from the planted sentences of eval/datasets/planted/planted.jsonl against every sentence of the
default corpus (`python eval/train_planted.py` writes the weights; numpy only, deterministic).
"""

from __future__ import annotations

import math
import re
import zlib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported on first use: every command imports this module, few classify
    import numpy as np

WEIGHTS = Path(__file__).resolve().parent / "resources" / "planted-scorer.npy"
BUCKETS = 1 << 14
_TOKEN = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*|[{}<>\"|]")
_CODE = re.compile(r"(?=\S*\d)(?=\S*[A-Za-z])\S{6,}")  # letters and digits mixed: an identifier or a planted code


def tokens(sentence: str) -> list[str]:
    """Lower-cased words and the braces, angle brackets, quotes and bars of markup (square brackets and
    colons are in every citation and URL); an identifier is one token, <code>."""
    return ["<code>" if _CODE.fullmatch(t) else t.lower() for t in _TOKEN.findall(sentence)]


def features(sentence: str) -> np.ndarray:
    """Bucket indices of the sentence's words and word pairs (crc32: the same in every process)."""
    import numpy as np

    words = ["<s>", *tokens(sentence), "</s>"]
    grams = words[1:-1] + [f"{a} {b}" for a, b in zip(words, words[1:])]
    return np.array(sorted({zlib.crc32(g.encode()) % BUCKETS for g in grams}), dtype=np.int64)


@cache
def _weights() -> np.ndarray:
    import numpy as np

    return np.load(WEIGHTS)


def probability(sentence: str) -> float:
    """How likely the sentence is planted text, by the trained model (bias in the last weight)."""
    w = _weights()
    z = float(w[features(sentence)].sum() + w[-1])
    return 1.0 / (1.0 + math.exp(-z))
