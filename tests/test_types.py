"""A paper survives being stored: Chroma metadata (scalars, non-empty lists, -1 for unknown) holds every field."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from rag.safety import clean_mark
from rag.store import paper_from_meta, paper_to_meta
from rag.text import sentence_spans
from rag.types import Paper, decode_spans, encode_spans

names = st.lists(st.text(min_size=1, max_size=20), max_size=3)
papers = st.builds(
    Paper,
    paper_id=st.text(min_size=1, max_size=16),
    title=st.text(max_size=40),
    abstract=st.text(max_size=200),
    date_raw=st.text(max_size=12),
    date=st.sampled_from(["", "2024-01-28", "1999-12-31"]),
    year=st.none() | st.integers(1900, 2100),
    authors=st.none() | st.integers(0, 5000),
    organisation=st.text(max_size=20),
    sources=names,
    positions=st.lists(st.integers(0, 10_000), max_size=3),
    paths=names,
)


@given(papers)
def test_paper_from_meta_inverts_paper_to_meta(paper: Paper):
    meta = paper_to_meta(paper)
    assert None not in meta.values() and [] not in meta.values()  # what Chroma accepts
    assert paper_from_meta(meta) == paper


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)), max_size=30))
def test_sentence_spans_survive_their_encoding(spans):
    assert decode_spans(encode_spans(tuple(spans))) == tuple(spans)


def test_a_stored_paper_reads_back_whole(shared_index, small_corpus):
    """Through the real store: every field written at ingest, positions and paths included, is read
    back, with the abstract's sentence spans the ingest computed (so a search need not split it) and
    its clean mark (so a search need not classify it again)."""
    stored = shared_index.store.get_papers(p.paper_id for p in small_corpus.papers)
    spans = {p.paper_id: tuple(sentence_spans(p.abstract)) for p in small_corpus.papers}
    expected = {
        p.paper_id: replace(p, spans=spans[p.paper_id], clean=clean_mark(p.title, p.abstract, spans[p.paper_id]))
        for p in small_corpus.papers
    }
    assert stored == expected
    assert all(p.clean for p in stored.values())  # the small corpus is science: nothing flagged
    assert any(p.positions for p in stored.values()) and any(p.year is None for p in stored.values())
