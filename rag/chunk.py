"""Split abstracts into embedder-sized chunks of whole sentences, keeping character offsets."""

from __future__ import annotations

from collections.abc import Callable

from rag.text import sentence_spans
from rag.types import Chunk, Paper


def chunk_id(paper_id: str, i: int) -> str:
    """Chunk i of a paper: ids follow from the paper's id and its chunk count, so they can be read by id."""
    return f"{paper_id}:{i}"


def embed_text(paper: Paper, chunk_text: str) -> str:
    """What the embedder sees: the title gives every chunk of a paper its topic."""
    return f"{paper.title}\n{chunk_text}" if paper.title else chunk_text


def chunk_paper(paper: Paper, count_tokens: Callable[[str], int], max_tokens: int) -> list[Chunk]:
    """One chunk when title + abstract fit `max_tokens`, else greedy runs of whole sentences.

    A single sentence longer than the budget becomes a chunk of its own (the embedder then
    reads its head only); it is never cut mid-sentence, so quotes stay exact.
    """
    text = paper.abstract
    if count_tokens(embed_text(paper, text)) <= max_tokens:
        return [Chunk(chunk_id(paper.paper_id, 0), paper.paper_id, text, 0, len(text))]
    budget = max_tokens - count_tokens(embed_text(paper, "")) + 2  # title and special tokens once
    runs: list[tuple[int, int]] = []
    used = 0
    for start, end in sentence_spans(text, paper.spans):
        cost = count_tokens(text[start:end]) - 2  # without [CLS]/[SEP]
        if runs and used + cost <= budget - 2:
            runs[-1] = (runs[-1][0], end)
            used += cost
        else:
            runs.append((start, end))
            used = cost
    return [Chunk(chunk_id(paper.paper_id, i), paper.paper_id, text[s:e], s, e) for i, (s, e) in enumerate(runs)]
