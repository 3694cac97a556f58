"""Reading a question before retrieval: year phrases become filters, list / numeric / metadata intent, follow-ups."""

from __future__ import annotations

import pytest

from rag.query import analyse, needs_history
from rag.types import Filters

# ---------------------------------------------------------------- years named in the question


@pytest.mark.parametrize(
    ("question", "year_from", "year_to", "query"),
    [
        ("papers from 2019 about speech recognition", 2019, 2019, "papers about speech recognition"),
        ("papers published in 2021 about protein folding", 2021, 2021, "papers about protein folding"),
        ("2019 papers on speech recognition", 2019, 2019, "papers on speech recognition"),
        ("work on federated learning before 2018", None, 2017, "work on federated learning"),
        ("work on federated learning prior to 2018", None, 2017, "work on federated learning"),
        ("robot grasping papers after 2020", 2021, None, "robot grasping papers"),
        ("weather forecasting since 2020", 2020, None, "weather forecasting"),
        ("weather forecasting from 2018 onwards", 2018, None, "weather forecasting"),
        ("speech papers between 2019 and 2021", 2019, 2021, "speech papers"),
        ("speech papers from 2019 to 2021", 2019, 2021, "speech papers"),
        ("speech papers 2019-2021", 2019, 2021, "speech papers"),
        ("speech papers 2019–2021", 2019, 2021, "speech papers"),
    ],
)
def test_year_phrase_becomes_a_filter_and_leaves_the_query(question, year_from, year_to, query):
    intent = analyse(question)
    assert (intent.filters.year_from, intent.filters.year_to) == (year_from, year_to)
    assert intent.query == query
    assert not any(str(y) in intent.query for y in range(1990, 2031))


def test_question_without_a_year_keeps_its_text_and_no_filter():
    intent = analyse("How does FP8 training reduce memory?")
    assert intent.query == "How does FP8 training reduce memory?"
    assert intent.filters == Filters()
    assert not intent.filters.active()


@pytest.mark.parametrize("given", [Filters(year_from=2015), Filters(year_to=2016), Filters(year_from=2015, year_to=2016)])
def test_explicit_year_filters_win_over_a_year_in_the_text(given):
    intent = analyse("papers from 2019 about speech recognition", given)
    assert intent.filters == given
    assert intent.query == "papers from 2019 about speech recognition"  # nothing was taken as a filter


def test_source_filter_is_kept_when_the_text_adds_years():
    intent = analyse("papers from 2019 about speech", Filters(sources=("a.jsonl",)))
    assert intent.filters == Filters(year_from=2019, year_to=2019, sources=("a.jsonl",))
    assert intent.query == "papers about speech"


def test_from_year_on_a_topic_is_that_year_only():
    """"papers from 2019 on robotics" is 2019 only, as with "about": the "on" that introduces a topic
    is not "onwards"."""
    about = analyse("papers from 2019 about robotics")
    on = analyse("papers from 2019 on robotics")
    assert (about.filters.year_from, about.filters.year_to) == (2019, 2019)
    assert "robotics" in on.query
    assert (on.filters.year_from, on.filters.year_to) == (2019, 2019), on


def test_a_quantity_is_not_a_year():
    """A quantity ("a context length of 2048 tokens") is not a publication year: no year filter, and
    the number stays in the query."""
    intent = analyse("Which papers use a context length of 2048 tokens?")
    assert intent.filters == Filters(), intent
    assert "2048" in intent.query


# ---------------------------------------------------------------- intent


@pytest.mark.parametrize(
    "question",
    [
        "which papers report FP8 training speedups?",
        "Which papers study federated learning?",
        "What papers use reinforcement learning for grasping?",
        "List all papers on weather forecasting",
        "papers about protein structure",
        "Show the studies on speech recognition",
    ],
)
def test_which_papers_is_a_list_question(question):
    intent = analyse(question)
    assert intent.is_list
    assert intent.asks is None


@pytest.mark.parametrize(
    "question",
    ["What speedup does FP8 training give?", "How does federated averaging protect privacy?", "Explain geometric attention."],
)
def test_ordinary_question_is_not_a_list(question):
    assert not analyse(question).is_list


@pytest.mark.parametrize(
    ("question", "numeric"),
    [
        ("How much memory does FP8 training save?", True),
        ("How fast is the weather model?", True),
        ("What accuracy does the grasping policy reach?", True),
        ("What speedup does COAT report?", True),
        ("Why does FP8 training work?", False),
    ],
)
def test_numeric_questions(question, numeric):
    assert analyse(question).is_numeric is numeric


@pytest.mark.parametrize(
    "question",
    ["How many authors wrote the PaLM paper?", "how many authors does the FP8 paper have", "What is the number of authors of PaLM?"],
)
def test_how_many_authors_asks_for_authors_metadata(question):
    intent = analyse(question)
    assert intent.asks == "authors"
    assert not intent.is_list and not intent.is_numeric  # answered from metadata, not by listing or numbers


@pytest.mark.parametrize("question", ["When was the PaLM paper published?", "What year is the FP8 paper from?"])
def test_when_asks_for_the_date(question):
    assert analyse(question).asks == "date"


def test_authors_question_with_a_year_still_gets_the_filter():
    intent = analyse("How many authors wrote the 2022 paper on language modeling with pathways?")
    assert intent.asks == "authors"
    assert (intent.filters.year_from, intent.filters.year_to) == (2022, 2022)


# ---------------------------------------------------------------- follow-ups


@pytest.mark.parametrize(
    "question",
    ["What speedup does it report?", "Who wrote them?", "How large is their dataset?", "And the memory?", "What about 2020?"],
)
def test_pronoun_or_short_question_needs_history(question):
    assert needs_history(question)


@pytest.mark.parametrize(
    "question",
    ["Which papers study federated learning on mobile keyboards?", "How accurate is protein structure prediction with attention?"],
)
def test_standalone_question_needs_no_history(question):
    assert not needs_history(question)


def test_a_question_holding_undecodable_bytes_is_one_clear_error():
    """A shell passes bytes that are not UTF-8 as lone surrogates; the tokenizer would crash on them."""
    from rag.errors import QuestionError
    from rag.query import check_request

    with pytest.raises(QuestionError, match=r"not text \(\\udcff at character 5\)"):
        check_request("fp8 \udcff training", Filters(), None, 2000)
    check_request("FP8 training on H100 — 1.4× faster?", Filters(), None, 2000)  # non-ASCII text is fine
