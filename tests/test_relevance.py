"""Names, versions and sizes a question mentions that no paper has: the refusal rules that need no similarity."""

from __future__ import annotations

import pytest

from rag.lexicon import Lexicon
from rag.relevance import Relevance
from rag.types import Hit, Paper

PAPERS = {
    "a": (
        "VibeThinker: small reasoning",
        "We train VibeThinker, a 1.5B parameter model, and compare it with Llama 2 and GPT-4 on math.",
    ),
    "b": ("Big speech", "A 70B speech model reaches a low word error rate on LibriSpeech; Mixtral 8x7B is a baseline."),
    "c": ("Handwriting", "Synthetic handwriting for Latin and Cyrillic scripts helps post-OCR correction."),
}


class PaperRecords:
    """The part of a Store that Lexicon.build reads: paper records, their count and the version stamp."""

    def records(self, include_documents: bool = False):
        for pid, (title, abstract) in sorted(PAPERS.items()):
            yield pid, {"title": title, "year": -1, "sources": ["x.jsonl"]}, abstract

    def count(self) -> int:
        return len(PAPERS)

    def stamp(self) -> dict:
        return {"version": "v1"}


@pytest.fixture(scope="module")
def relevance() -> Relevance:
    lexicon, _ = Lexicon.build(PaperRecords())
    return Relevance(lexicon, refuse_below=0.3)


@pytest.mark.parametrize(
    ("question", "unknown"),
    [
        ("How much did it cost to train a 70B version of VibeThinker?", ["70B"]),  # 70B exists, not for VibeThinker
        ("How well does the 1.5B VibeThinker do on math?", []),
        ("How long a context window does Llama 4 support?", ["Llama 4"]),  # the corpus knows Llama 2 only
        ("Does VibeThinker beat Llama 2?", []),
        ("What word error rate does it reach on Switchboard?", ["Switchboard"]),
        ("What word error rate does the 70B model reach on LibriSpeech in March?", []),  # a month is no name
        ("How many experts does Mixtral 8x7B use?", []),
        ("What is a 13B model good for?", ["13B"]),  # a size no paper mentions, with no name to pair it with
        ("Which method repairs recognition for non-Latin scripts?", []),  # non- is no part of the name
        ("How does the Gemini 1.5 model compare?", ["Gemini"]),  # an unknown name is reported once, as the name
        ("Does Synthetic Handwriting help post-OCR correction?", []),  # a name of two words one paper holds
        ("How well does Latin Speech recognition work?", ["Latin Speech"]),  # each word is known, never together
        ("Is Cyrillic LibriSpeech out in March?", ["Cyrillic LibriSpeech"]),  # names from two papers; a month is none
    ],
)
def test_unknown_names_cover_names_versions_and_sizes(relevance, question, unknown):
    assert relevance.unknown_names(question) == unknown


def test_a_cache_of_an_older_format_is_rebuilt(tmp_path, make_settings):
    from rag import lexicon as lexicon_mod

    settings = make_settings(data_dir=tmp_path)
    folder = lexicon_mod.cache_dir(settings)
    assert Lexicon.open(settings, PaperRecords()).mentions("llama-2")
    (folder / "words.txt").write_text("nothing")  # what an older build held, under an older stamp
    (folder / "stamp.json").write_text('{"version": "v1"}')
    assert Lexicon.open(settings, PaperRecords()).mentions("llama-2")


def test_the_shipped_stop_words_are_those_of_bm25s_and_nltk():
    """The file replaces two imports at start-up; it must hold exactly the words they gave."""
    from bm25s.stopwords import STOPWORDS_EN
    from llama_index.core.utils import globals_helper
    from nltk.corpus import stopwords

    from rag.text import STOPWORDS, _punkt

    globals_helper.stopwords  # makes NLTK's corpus path (shipped inside llama-index) known
    assert set(STOPWORDS.read_text().split()) == set(STOPWORDS_EN) | set(stopwords.words("english"))
    text = "We train X. It works, e.g. on Y in Fig. 2. Results are 1.5x faster."
    assert list(_punkt().span_tokenize(text)) == list(globals_helper.punkt_tokenizer.span_tokenize(text))


# ------------------------------------------------------------ which papers a list answer names


def hit(pid: str, score: float, dense: float | None = None) -> Hit:
    title, abstract = PAPERS[pid]
    return Hit(Paper(pid, title, abstract), score, dense=score if dense is None else dense)


def test_a_list_names_papers_by_score_and_by_the_question_words_they_hold(relevance):
    """Close in score but holding none of the question's words: left out; lower in score but holding
    them all: named. Positions come back in the order of the hits."""
    hits = [hit("b", 0.5), hit("a", 0.48), hit("c", 0.3)]
    assert relevance.relevant("Which papers correct handwriting for Cyrillic scripts?", hits) == [1, 3]


def test_a_list_never_names_a_paper_below_the_refusal_floor(relevance):
    hits = [hit("c", 0.5), hit("a", 0.45, dense=0.1)]  # a's share of the best score would pass; its relevance does not
    assert relevance.coverage("Which papers correct handwriting for Cyrillic scripts?", hits[1]) == 0.0
    assert relevance.relevant("Which papers correct handwriting for Cyrillic scripts?", hits) == [1]


def test_a_list_whose_question_no_paper_words_is_ranked_by_score_alone(relevance):
    hits = [hit("a", 0.5), hit("b", 0.4), hit("c", 0.24, dense=0.35)]  # c: half the best score is the line
    assert relevance.relevant("Which papers study coral bleaching in oceans?", hits) == [1, 2]
    assert relevance.relevant("Which papers study coral bleaching in oceans?", []) == []


def test_a_lookup_cites_a_second_paper_only_when_it_is_nearly_as_close(relevance):
    from rag.evidence import OfflineJudge, read
    from rag.extractive import ExtractiveAnswerer
    from rag.question import read_question

    answerer = ExtractiveAnswerer(relevance.lexicon, relevance)
    judge = OfflineJudge(relevance, answerer)
    lookup = read_question("How is handwriting for Cyrillic scripts corrected?")
    tied = read(judge, lookup, [hit("c", 0.5), hit("c", 0.49), hit("a", 0.45)])  # the same words, a hair lower in score
    assert "[1]" in answerer.answer(lookup, tied) and "[2]" in answerer.answer(lookup, tied)
    apart = read(judge, lookup, [hit("c", 0.5), hit("a", 0.49)])  # as close in score, but holding none of the words
    assert "[2]" not in answerer.answer(lookup, apart) and not answerer.answer(lookup, apart).startswith("- ")


def test_a_key_term_is_held_inside_a_compound_or_after_a_negation(relevance):
    """The stemmer cuts "imbalances" to imbal and keeps "workload" whole: neither would hold balancing or load."""
    from rag.evidence import OfflineJudge

    judge = OfflineJudge(relevance, None)  # type: ignore[arg-type]
    keys = judge.key_terms("load balancing")
    assert sorted(keys) == ["balanc", "load"]

    def held(abstract: str) -> float:
        return judge.held(keys, Hit(Paper("x", "Experts", abstract), 0.5))

    assert held("The workload of each expert shifts; imbalances slow training.") == 1.0
    assert held("Each expert's workload shifts at runtime.") == held("Each expert's load shifts at runtime.") > 0
    assert held("Experts are routed by a gate; no other unit is used.") == 0.0  # "unit" is no negated "it"
    assert held("We ballast the boat.") == 0.0


def test_a_paraphrase_is_answered_by_the_paper_whose_sentences_cover_every_concept(relevance, embedder):
    """No paper holds the question's words; the speech paper leads on retrieval score, the handwriting paper
    has sentences close to both of its concepts (fixing recognition mistakes, Russian letters)."""
    from rag.evidence import OfflineJudge, read
    from rag.extractive import ExtractiveAnswerer
    from rag.question import read_question

    answerer = ExtractiveAnswerer(relevance.lexicon, relevance)
    judge = OfflineJudge(relevance, answerer, embedder)
    question = read_question("Which work fixes text recognition mistakes for Russian letters?")
    hits = [hit("b", 0.5), hit("c", 0.45), hit("a", 0.44)]
    assert not judge.anchored(question.query, hits)
    assert [h.paper.paper_id for h in read(judge, question, hits)][:1] == ["c"]
    assert [h.paper.paper_id for h in read(OfflineJudge(relevance, answerer), question, hits)][:1] == ["b"]


def test_a_failing_embeddings_endpoint_leaves_the_retrieval_scores_in_charge(relevance):
    from rag.embed import Embedder
    from rag.errors import EmbedError
    from rag.evidence import OfflineJudge
    from rag.question import read_question

    class Down(Embedder):
        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            raise EmbedError("the embeddings endpoint refused the connection")

    judge = OfflineJudge(relevance, None, Down("down", 8))  # type: ignore[arg-type]
    question = read_question("Which work fixes text recognition mistakes for Russian letters?")
    assert judge.strengths(question, [hit("b", 0.5), hit("c", 0.45)], anchored=False) == [1.0, 0.9]
