"""Sentence splitting and content terms, shared by chunking, evidence picking and citation checks."""

from __future__ import annotations

import re
from functools import lru_cache


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, by NLTK's Punkt model as shipped inside llama-index (offline)."""
    from llama_index.core.utils import globals_helper

    return list(globals_helper.punkt_tokenizer.span_tokenize(text))


def sentences(text: str) -> list[str]:
    """The sentences themselves, for callers that need no offsets (a snippet, benchmark queries)."""
    return [text[s:e] for s, e in sentence_spans(text)]


@lru_cache(maxsize=1)
def _stemmer_and_stopwords() -> tuple[object, frozenset[str]]:
    import Stemmer
    from bm25s.stopwords import STOPWORDS_EN
    from llama_index.core.utils import globals_helper  # NLTK's English list, shipped offline

    return Stemmer.Stemmer("english"), frozenset(STOPWORDS_EN) | frozenset(globals_helper.stopwords)


# Model names, acronyms, versioned terms: a letter first, then a digit or a second capital somewhere.
NAME = re.compile(r"(?<![\w.-])(?=[\w.-]*(?:\d|[A-Z][\w.-]*[A-Z]|-[A-Z]))[A-Za-z][\w.]*(?:-[\w.]+)*\b")
_WORD = re.compile(r"[a-z0-9]+(?:\.[a-z0-9]+)*")


def terms(text: str) -> list[str]:
    """Stemmed content words, the same way BM25 sees them (numbers like 1.43x kept whole)."""
    stemmer, stop = _stemmer_and_stopwords()
    words = [w for w in _WORD.findall(text.lower()) if w not in stop and len(w) > 1]
    return stemmer.stemWords(words)  # type: ignore[attr-defined]
