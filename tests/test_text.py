"""Sentence splitting: Punkt for abstracts (spans stored at ingest), punctuation alone for answers."""

from __future__ import annotations

from pathlib import Path

from rag.corpus import load
from rag.text import plain_sentence_spans, sentence_spans

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


def test_plain_splitting_agrees_with_punkt_on_the_sample_abstracts():
    """Answers are split into claims without NLTK; on real abstracts the two splitters must agree
    almost always, or the claim check would judge different sentences than before."""
    abstracts = [p.abstract for p in load([CORPUS]).papers]
    same = sum(plain_sentence_spans(a) == sentence_spans(a) for a in abstracts)
    assert len(abstracts) > 300 and same >= 0.98 * len(abstracts)


def test_plain_splitting_keeps_initials_numbers_and_quotes_inside_a_sentence():
    text = 'J. Smith reports a 1.43x speedup (on 8 GPUs).[1] "It works." Does it? Yes!'
    assert [text[s:e] for s, e in plain_sentence_spans(text)] == [
        "J. Smith reports a 1.43x speedup (on 8 GPUs).",
        '[1] "It works."',
        "Does it?",
        "Yes!",
    ]


def test_known_spans_are_used_as_given():
    assert sentence_spans("One. Two.", ((0, 9),)) == [(0, 9)]
