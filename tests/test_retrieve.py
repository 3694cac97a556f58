"""Hybrid retrieval over the shared small index: paraphrases, one hit per paper, filters, methods."""

from __future__ import annotations

import pytest
from conftest import LANG_FILE, SCI_FILE, SMALL_PAPERS, TXT_FILE

from rag.retrieve import Retriever
from rag.types import Filters

# Questions worded away from the abstracts: few or none of their content words occur in the paper.
PARAPHRASES = {
    "turning voice into text for rarely spoken tongues with scarce annotated recordings": "Self-Supervised Speech",
    "protecting personal information when phones jointly build a model without uploading what users typed": "Differentially Private Federated",
    "letting a text generator look up documents from an external collection before answering": "Retrieval-Augmented Generation",
    "sharpening images from cheap portable magnetic scanners": "Super-Resolution of Low-Field MRI",
    "a robotic arm that learns by trial and error to pick up things it has never seen": "Learning to Grasp",
    "converting sentences between human tongues without any direct bilingual examples": "Neural machine translation systems",
    "choosing which clips to show each viewer on a streaming site": "Recommending items from catalogues",
    "what shape does a polypeptide fold into, inferred by a neural net": "Protein Tertiary Structure",
    "AI that predicts rain, wind and hurricanes days in advance": "Medium-range global weather",
    "an AI assistant that writes software from natural language descriptions": "Trained on Source Code",
}

STABLE_KEYS = {"paper_id", "title", "abstract", "source", "date", "year", "score"}


@pytest.mark.parametrize("question", list(PARAPHRASES))
def test_paraphrased_question_finds_the_paper_first(retriever, pid_of, question):
    hits = retriever.search(question, k=5, method="hybrid")
    assert hits, question
    assert hits[0].paper.paper_id == pid_of(PARAPHRASES[question]), [h.paper.display_title for h in hits]


def test_results_are_papers_not_chunks(retriever, pid_of):
    counts = retriever.store.chunk_counts()
    assert sum(counts.values()) > len(retriever) == SMALL_PAPERS
    mri = pid_of("Super-Resolution of Low-Field MRI")
    assert counts[mri] >= 3
    for method in ("hybrid", "dense", "bm25"):
        hits = retriever.search("low-field MRI scans, diffusion sampler and noise schedule", k=50, method=method)
        ids = [h.paper.paper_id for h in hits]
        assert len(ids) == len(set(ids)), method
        assert ids[0] == mri, method
    # dense candidates cover every chunk of this small index, so every paper comes back exactly once
    assert len(retriever.search("low-field MRI scans", k=50, method="dense")) == SMALL_PAPERS


def test_hit_keeps_the_best_chunk_of_its_paper(retriever, pid_of):
    mri = pid_of("Super-Resolution of Low-Field MRI")
    hit = retriever.search(
        "distilled into a four-step sampler that processes a volume in eleven seconds", k=3, method="dense"
    )[0]
    assert hit.paper.paper_id == mri
    assert hit.chunk is not None and hit.chunk.paper_id == mri
    assert "four-step sampler" in hit.chunk.text
    assert hit.paper.abstract[hit.chunk.start : hit.chunk.end] == hit.chunk.text
    assert hit.chunk.start > 0  # not the opening chunk: the paper was found by a later part of its abstract


def test_hybrid_scores_are_sorted_and_k_is_respected(retriever):
    hits = retriever.search("neural networks for science", k=4)
    assert len(hits) == 4
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    top = retriever.search("message passing between atoms of molecules", k=1)[0]
    assert set(top.ranks) == {"dense", "bm25"} and top.dense is not None and top.bm25 is not None


# ---------------------------------------------------------------- filters fail closed


def _ids(hits) -> set[str]:
    return {h.paper.paper_id for h in hits}


def _fixture_ids(small_corpus, pred) -> set[str]:
    return {p.paper_id for p in small_corpus.papers if pred(p)}


@pytest.mark.parametrize("method", ["hybrid", "dense", "bm25"])
def test_year_range_matching_nothing_returns_nothing(retriever, method):
    assert retriever.search("protein structure prediction", filters=Filters(2030, 2040), method=method) == []
    assert retriever.search("protein structure prediction", filters=Filters(year_to=1990), method=method) == []


@pytest.mark.parametrize("method", ["hybrid", "dense", "bm25"])
def test_unknown_source_returns_nothing(retriever, method):
    assert (
        retriever.search(
            "protein structure prediction", filters=Filters(sources=("no_such_file.jsonl",)), method=method
        )
        == []
    )


def test_year_filter_excludes_papers_with_unknown_year(retriever, small_corpus):
    undated = _fixture_ids(small_corpus, lambda p: p.year is None)
    assert len(undated) == 4
    hits = retriever.search("machine learning model", k=50, filters=Filters(1900, 2100))
    assert _ids(hits) == _fixture_ids(small_corpus, lambda p: p.year is not None)
    assert not _ids(hits) & undated
    # even a question aimed squarely at an undated paper does not bring it back
    hits = retriever.search(
        "zero-shot neural machine translation between language pairs", k=50, filters=Filters(year_from=1900)
    )
    assert hits and not _ids(hits) & undated


@pytest.mark.parametrize(
    "filters, pred",
    [
        (Filters(2019, 2021), lambda p: p.year is not None and 2019 <= p.year <= 2021),
        (Filters(year_from=2022), lambda p: p.year is not None and p.year >= 2022),
        (Filters(year_to=2018), lambda p: p.year is not None and p.year <= 2018),
        (Filters(sources=(TXT_FILE,)), lambda p: TXT_FILE in p.sources),
        (Filters(sources=(LANG_FILE, TXT_FILE)), lambda p: SCI_FILE not in p.sources),
        (Filters(2020, None, (SCI_FILE,)), lambda p: SCI_FILE in p.sources and p.year is not None and p.year >= 2020),
    ],
    ids=["2019-2021", "from-2022", "to-2018", "txt-source", "two-sources", "source-and-year"],
)
def test_filters_return_only_and_all_matching_papers(retriever, small_corpus, filters, pred):
    expected = _fixture_ids(small_corpus, pred)
    assert 0 < len(expected) < SMALL_PAPERS
    hits = retriever.search("learning from data", k=50, filters=filters)
    assert _ids(hits) == expected  # dense search over the allowed papers reaches every one of them
    for h in hits:
        assert filters.allows(h.paper)
    bm25_hits = retriever.search("learning from data", k=50, filters=filters, method="bm25")
    assert _ids(bm25_hits) <= expected


def test_filtered_search_still_ranks_the_right_paper_first(retriever, pid_of):
    hits = retriever.search("robot grasping from camera images", filters=Filters(2015, 2019))
    assert hits[0].paper.paper_id == pid_of("Learning to Grasp")
    hits = retriever.search("robot grasping from camera images", filters=Filters(2020, 2025))
    assert pid_of("Learning to Grasp") not in _ids(hits)


# ---------------------------------------------------------------- methods, output, edge cases


@pytest.mark.parametrize("method", ["bm25", "dense", "hybrid"])
def test_each_method_returns_results(retriever, pid_of, method):
    hits = retriever.search("federated learning with differential privacy on mobile keyboards", k=5, method=method)
    assert hits
    assert hits[0].paper.paper_id == pid_of("Differentially Private Federated")
    if method == "bm25":
        assert all(h.dense is None and h.bm25 is not None and "dense" not in h.ranks for h in hits)
    if method == "dense":
        assert all(h.bm25 is None and h.dense is not None and h.chunk is not None for h in hits)


def test_hit_to_json_has_the_stable_keys(retriever, pid_of):
    hits = retriever.search("speech recognition for low-resource languages", k=3)
    data = [h.to_json() for h in hits]
    for row in data:
        assert STABLE_KEYS <= set(row)
    top = data[0]
    assert top["paper_id"] == pid_of("Self-Supervised Speech")
    assert top["source"] == LANG_FILE
    assert (top["date"], top["year"]) == ("2022", 2022)  # a bare year is shown as given
    assert isinstance(top["score"], float)
    dated = retriever.search("protein tertiary structure from amino acid sequence", k=1)[0].to_json()
    assert (dated["date"], dated["year"]) == ("2021-07-15", 2021)


def test_untitled_paper_gets_a_display_title(retriever, pid_of):
    hit = retriever.search("zero-shot multilingual neural machine translation", k=1)[0]
    assert hit.paper.paper_id == pid_of("Neural machine translation systems")
    row = hit.to_json()
    assert row["has_title"] is False
    assert row["title"].startswith("Neural machine translation systems usually") and row["title"].endswith("...")
    assert row["date"] == "" and row["year"] is None


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query_returns_nothing(retriever, query):
    assert retriever.search(query) == []
    assert retriever.search(query, method="bm25") == []


def test_query_with_no_known_word_has_no_bm25_hits(retriever):
    assert retriever.search("zzqx wvvy", method="bm25") == []
    assert retriever.search("the of and", method="bm25") == []  # stop words only
    assert retriever.search("the of and", k=3)  # dense still answers in hybrid mode


def test_rrf_fusion_also_ranks_the_right_paper_first(shared_index, embedder, pid_of):
    rrf = Retriever(shared_index.settings.model_copy(update={"fusion": "rrf"}), embedder, shared_index.store)
    hits = rrf.search("message passing neural networks for molecular property prediction", k=5)
    assert hits[0].paper.paper_id == pid_of("Message Passing Neural Networks")
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_empty_index_returns_nothing(make_settings, tmp_path, embedder):
    s = make_settings(data_dir=tmp_path / "index")
    r = Retriever(s, embedder)
    assert len(r) == 0
    assert r.search("anything at all") == []


# ---------------------------------------------------------------- weighted fusion


def _fuse(make_settings, tmp_path, dense, lexical, ceiling=10.0, weight=0.3):
    from rag.retrieve import fuse
    from rag.types import Chunk

    chunks = {pid: (c, Chunk(f"{pid}#0", pid, "", 0, 0)) for pid, c in dense.items()}
    return [
        pid for pid, _ in fuse(chunks, lexical, ceiling, "hybrid", make_settings(data_dir=tmp_path, bm25_weight=weight))
    ]


def test_a_query_whose_words_one_paper_holds_leans_on_bm25(make_settings, tmp_path):
    """The best paper holds 80% of the ceiling: BM25's weight rises from 0.3 to 0.86, so the exact match
    beats a paper that is only closer in meaning (a fixed 0.3 would rank it second: 0.45 < 0.56)."""
    assert _fuse(make_settings, tmp_path, {"near": 0.8, "exact": 0.3}, {"exact": 8.0}) == ["exact", "near"]


def test_a_query_whose_words_no_paper_holds_ranks_by_meaning(make_settings, tmp_path):
    """A weak lexical match (10% of the ceiling) keeps BM25 near its base weight: the dense order stands."""
    assert _fuse(make_settings, tmp_path, {"near": 0.6, "word": 0.45}, {"word": 1.0}) == ["near", "word"]


def test_bm25_weight_one_is_bm25_only(make_settings, tmp_path):
    assert _fuse(make_settings, tmp_path, {"near": 0.9, "word": 0.1}, {"word": 1.0}, weight=1.0) == ["word", "near"]


def test_lexicon_knows_every_stored_chunk_id(retriever, shared_index):
    """Hybrid search reads the chunks of BM25-only candidates by id; the ids the lexicon derives must
    be exactly the stored ones, or those candidates would get no cosine (or a wrong one)."""
    stored = shared_index.store.chunks.get(include=[])["ids"]
    derived = retriever.lexicon.chunk_ids(list(retriever.lexicon.rows))
    assert sorted(derived) == sorted(stored) and len(derived) > len(retriever.lexicon.rows)
