"""Reading a question once: year phrases become filters, its kind (list, summary, lookup, how-to, metadata), follow-ups."""

from __future__ import annotations

import pytest

from rag.question import check_request, read_question
from rag.question_dates import Period, find_period
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
    intent = read_question(question)
    assert (intent.filters.year_from, intent.filters.year_to) == (year_from, year_to)
    assert intent.query == query
    assert not any(str(y) in intent.query for y in range(1990, 2031))


def test_question_without_a_year_keeps_its_text_and_no_filter():
    intent = read_question("How does FP8 training reduce memory?")
    assert intent.query == "How does FP8 training reduce memory?"
    assert intent.filters == Filters()
    assert not intent.filters.active()


@pytest.mark.parametrize(
    "given", [Filters(year_from=2015), Filters(year_to=2016), Filters(year_from=2015, year_to=2016)]
)
def test_explicit_year_filters_win_over_a_year_in_the_text(given):
    intent = read_question("papers from 2019 about speech recognition", given)
    assert intent.filters == given
    assert intent.query == "papers from 2019 about speech recognition"  # nothing was taken as a filter


def test_source_filter_is_kept_when_the_text_adds_years():
    intent = read_question("papers from 2019 about speech", Filters(sources=("a.jsonl",)))
    assert intent.filters == Filters(year_from=2019, year_to=2019, sources=("a.jsonl",))
    assert intent.query == "papers about speech"


def test_from_year_on_a_topic_is_that_year_only():
    """ "papers from 2019 on robotics" is 2019 only, as with "about": the "on" that introduces a topic
    is not "onwards"."""
    about = read_question("papers from 2019 about robotics")
    on = read_question("papers from 2019 on robotics")
    assert (about.filters.year_from, about.filters.year_to) == (2019, 2019)
    assert "robotics" in on.query
    assert (on.filters.year_from, on.filters.year_to) == (2019, 2019), on


def test_a_quantity_is_not_a_year():
    """A quantity ("a context length of 2048 tokens") is not a publication year: no year filter, and
    the number stays in the query."""
    intent = read_question("Which papers use a context length of 2048 tokens?")
    assert intent.filters == Filters(), intent
    assert "2048" in intent.query


@pytest.mark.parametrize(
    "quantity", ["2000 TPUs", "2000 chips", "2000 dimensions", "2000 tokens", "2000 GPUs", "2048 TPUs"]
)
def test_a_quantity_is_no_year_to_the_filter_nor_to_the_metadata_reading(quantity):
    """One year grammar: a number followed by a unit is a quantity for both readers (the filter reader once
    took "2000 TPUs" for a year and the metadata reader "2000 dimensions"); a wrong year would filter out every paper."""
    intent = read_question(f"Which papers report speedups from {quantity}?")
    assert intent.filters == Filters() and quantity in intent.query
    assert find_period(f"how many papers are from {quantity}") is None
    assert (
        read_question(f"How many papers are from {quantity}?").meta is None
        or read_question(f"How many papers are from {quantity}?").meta.period is None
    )
    assert read_question("Which papers report speedups from 2000?").filters == Filters(year_from=2000, year_to=2000)


@pytest.mark.parametrize(
    ("question", "years", "query"),
    [
        ("speech papers up to 2020", (None, 2020), "speech papers"),
        ("speech papers through 2020", (None, 2020), "speech papers"),
        ("speech papers 2019 to 2021", (2019, 2021), "speech papers"),
        ("speech papers published before 2020", (None, 2019), "speech papers"),
        ("speech papers no earlier than 2021", (2021, None), "speech papers"),
    ],
)
def test_the_filter_reads_every_year_span_the_metadata_grammar_reads(question, years, query):
    """The year filter is read by the same period grammar as metadata questions, so "up to 2020" or
    "2019 to 2021" filter a topic search as they bound a count; the phrase, verb included, leaves the query."""
    intent = read_question(question)
    assert (intent.filters.year_from, intent.filters.year_to) == years
    assert intent.query == query


@pytest.mark.parametrize(
    "question",
    [
        "speech papers from March 2024",
        "speech papers after June 2023",
        "speech papers from Q1 2024",
        "papers that may help speech",
    ],
)
def test_a_span_with_months_is_no_year_filter(question):
    """A year filter cannot hold months: "after June 2023" filtered by year would let in January 2023."""
    intent = read_question(question)
    assert intent.filters == Filters() and intent.query == question


def test_a_metadata_question_and_its_filter_read_the_same_span():
    intent = read_question("How many papers were published before 2020?")
    assert intent.kind == "metadata" and intent.meta is not None
    assert intent.meta.period == Period(None, (2019, 12))
    assert (intent.filters.year_from, intent.filters.year_to) == (None, 2019)


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
    intent = read_question(question)
    assert intent.is_list
    assert intent.asks is None


@pytest.mark.parametrize(
    "question",
    [
        "What speedup does FP8 training give?",
        "How does federated averaging protect privacy?",
        "Explain geometric attention.",
    ],
)
def test_ordinary_question_is_not_a_list(question):
    assert not read_question(question).is_list


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
    assert read_question(question).is_numeric is numeric


@pytest.mark.parametrize(
    ("question", "wants"),
    [
        ("Which datasets was LaCache evaluated on?", "dataset"),
        ("What benchmarks does GraphCodeBERT report results on?", "dataset"),
        ("Which models is it tested on?", None),
        ("What baselines is COAT compared with?", "comparison"),
        ("Does it outperform FP8-LM?", "comparison"),
        ("How much faster than BF16 is COAT?", "figure"),  # a number first: "how much ... than"
        ("What is LaCache?", None),
    ],
)
def test_what_a_question_asks_each_paper_for(question, wants):
    assert read_question(question).wants == wants


@pytest.mark.parametrize(
    "question",
    [
        "How many authors wrote the PaLM paper?",
        "how many authors does the FP8 paper have",
        "What is the number of authors of PaLM?",
    ],
)
def test_how_many_authors_asks_for_authors_metadata(question):
    intent = read_question(question)
    assert intent.asks == "authors"
    assert not intent.is_list and not intent.is_numeric  # answered from metadata, not by listing or numbers


@pytest.mark.parametrize("question", ["When was the PaLM paper published?", "What year is the FP8 paper from?"])
def test_when_asks_for_the_date(question):
    assert read_question(question).asks == "date"


def test_authors_question_with_a_year_still_gets_the_filter():
    intent = read_question("How many authors wrote the 2022 paper on language modeling with pathways?")
    assert intent.asks == "authors"
    assert (intent.filters.year_from, intent.filters.year_to) == (2022, 2022)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Is there work on making attention cheaper for very long documents?", "list"),
        ("What work exists on federated learning for language models?", "list"),
        ("What methods compress the KV cache?", "list"),
        ("Which papers study federated learning?", "list"),
        ("How do I speed up inference of a big language model without losing accuracy?", "how-to"),
        ("How can we reduce the memory of training?", "how-to"),
        ("Summarise what the corpus says about mixture-of-experts load balancing", "summary"),
        ("What is known about speculative decoding?", "summary"),
        ("What speedup does COAT report?", "lookup"),
        ("How does federated averaging protect privacy?", "lookup"),
        ("How many papers are from 2023?", "metadata"),
        ("Which paper has the most authors?", "metadata"),
        ("What year is the FP8 paper from?", "metadata"),
    ],
)
def test_the_kind_of_answer_asked_for(question, kind):
    intent = read_question(question)
    assert intent.kind == kind
    assert intent.is_list is (kind in ("list", "how-to"))
    assert intent.is_summary is (kind == "summary")


@pytest.mark.parametrize(
    ("question", "one"),
    [
        ("Which paper trains language models in 8-bit floating point?", True),
        ("Which work makes an image model forget a class?", True),
        ("which papers are about language models?", False),
        ("Which paper or papers study language models?", False),
        ("What methods compress the KV cache?", False),
    ],
)
def test_a_question_for_one_paper_is_told_from_a_list_question(question, one):
    assert read_question(question).one is one


@pytest.mark.parametrize(
    ("question", "filter_only"),
    [
        ("Which papers are from 2019?", True),
        ("papers published in 2021", True),
        ("papers from 2019 about speech", False),
        ("Which papers study speech?", False),
    ],
)
def test_a_question_of_filter_and_no_topic(question, filter_only):
    assert read_question(question).filter_only is filter_only


# ---------------------------------------------------------------- follow-ups


@pytest.mark.parametrize(
    "question",
    [
        "What speedup does it report?",
        "Who wrote them?",
        "How large is their dataset?",
        "And the memory?",
        "What about 2020?",
    ],
)
def test_pronoun_or_short_question_needs_history(question):
    assert read_question(question).continues


@pytest.mark.parametrize(
    "question",
    [
        "Which papers study federated learning on mobile keyboards?",
        "How accurate is protein structure prediction with attention?",
    ],
)
def test_standalone_question_needs_no_history(question):
    assert not read_question(question).continues


@pytest.mark.parametrize(
    ("question", "back", "ordinal", "yes_no"),
    [
        ("Which of those is from 2024?", "many", None, False),
        ("Does it need retraining?", "one", None, True),
        ("What speedup does the second one report?", "one", 2, False),
        ("Is the last paper open source?", "one", -1, True),
        ("Which papers study speech?", None, None, False),
        ("Is this possible without labels?", None, None, True),
    ],
)
def test_pointing_back_at_the_previous_answer(question, back, ordinal, yes_no):
    intent = read_question(question)
    assert (intent.back, intent.ordinal, intent.yes_no) == (back, ordinal, yes_no)


def test_a_question_holding_undecodable_bytes_is_one_clear_error():
    """A shell passes bytes that are not UTF-8 as lone surrogates; the tokenizer would crash on them."""
    from rag.errors import QuestionError

    with pytest.raises(QuestionError, match=r"not text \(\\udcff at character 5\)"):
        check_request("fp8 \udcff training", Filters(), None, 2000)
    check_request("FP8 training on H100 — 1.4× faster?", Filters(), None, 2000)  # non-ASCII text is fine


@pytest.mark.parametrize(
    ("question", "known"),
    [
        ("Which of those have no known year?", False),
        ("which of them are undated?", False),
        ("Which of those has a known publication date?", True),
        ("Which of those is from 2024?", None),
        ("Which of those use LoRA?", None),
    ],
)
def test_a_follow_up_can_ask_whether_the_year_is_recorded(question, known):
    assert read_question(question).year_known is known


@pytest.mark.parametrize(
    ("question", "concepts"),
    [
        (
            "Which papers defend trained networks against theft or unauthorised reuse?",
            ["defend trained networks", "theft", "unauthorised reuse"],
        ),
        ("What does the corpus say about mixture-of-experts load balancing?", ["mixture-of-experts load balancing"]),
        ("Which papers are from 2019?", []),  # the year is a filter, "papers" names nothing
    ],
)
def test_a_question_s_concepts_are_its_runs_of_words_that_name_something(question, concepts):
    assert read_question(question).concepts == concepts
