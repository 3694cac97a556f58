"""Metadata questions: recognising them (and leaving content questions alone), and computing answers."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime
from pathlib import Path

import pytest

from rag.corpus import load
from rag.metadata import EXAMPLES, answer, month_of
from rag.question_dates import Period
from rag.question_meta import ASKS, AuthorRange, MetaQuery, parse
from rag.types import Paper

ROOT = Path(__file__).resolve().parent.parent


def paper(
    pid: str, when: str = "", authors: int | None = None, org: str = "", title: str | None = None, abstract: str = ""
) -> Paper:
    """A paper dated the way the corpus reader dates it: "Mar 3, 2024" has a year, "Jul 14" does not."""
    year, date = None, ""
    if re.search(r"\d{4}$", when):
        d = datetime.strptime(when, "%b %d, %Y")
        year, date = d.year, d.date().isoformat()
    return Paper(
        paper_id=pid,
        title=f"Paper {pid}" if title is None else title,
        abstract=abstract or f"An abstract about {pid}.",
        date_raw=when,
        date=date,
        year=year,
        authors=authors,
        organisation=org,
    )


# ---------------------------------------------------------------- parse: what is asked


@pytest.mark.parametrize(
    ("question", "period"),
    [
        ("how many papers are from 2023", Period((2023, 1), (2023, 12))),
        ("How many papers were published in 2023?", Period((2023, 1), (2023, 12))),
        ("How many of the papers came out in 2023?", Period((2023, 1), (2023, 12))),
        ("number of papers published in March 2024", Period((2024, 3), (2024, 3))),
        ("Count the papers from Mar 2024", Period((2024, 3), (2024, 3))),
        ("How many 2023 papers are there?", Period((2023, 1), (2023, 12))),
        ("How many papers between 2019 and 2021?", Period((2019, 1), (2021, 12))),
        ("how many papers were published from 2019 to 2021", Period((2019, 1), (2021, 12))),
        ("How many papers in the corpus are from 2019-2021?", Period((2019, 1), (2021, 12))),
        ("how many papers appeared in Q1 2024", Period((2024, 1), (2024, 3))),
        ("how many papers are from the second quarter of 2023", Period((2023, 4), (2023, 6))),
        ("How many papers are from the first half of 2024?", Period((2024, 1), (2024, 6))),
        ("How many papers were published before 2020?", Period(None, (2019, 12))),
        ("How many papers came out after June 2024?", Period((2024, 7), None)),
        ("How many papers since 2023?", Period((2023, 1), None)),
        ("How many papers are from no earlier than 2021?", Period((2021, 1), None)),
        ("how many papers are from March to June 2024", Period((2024, 3), (2024, 6))),
        ("how many papers are from between March 2023 and June 2024", Period((2023, 3), (2024, 6))),
        ("How many papers were published in May?", Period(months=(5, 5))),
        ("how many papers are from july", Period(months=(7, 7))),
        ("How many papers are from November to February?", Period(months=(11, 2))),
        ("What's the number of papers from 2024?", Period((2024, 1), (2024, 12))),
    ],
)
def test_counts_with_a_period(question, period):
    query = parse(question)
    assert query is not None and query.ask == "count", query
    assert query.period == period
    assert query.topic == ""


@pytest.mark.parametrize(
    ("question", "missing"),
    [
        ("how many papers have no date", "date"),
        ("How many papers are undated?", "date"),
        ("How many papers lack a date?", "date"),
        ("how many papers have no year", "year"),
        ("How many papers have no known year?", "year"),
        ("How many papers have an unknown publication year?", "year"),
        ("How many papers are without a year?", "year"),
        ("how many papers have an unknown number of authors", "authors"),
        ("How many papers have no author count?", "authors"),
        ("Which papers have no organisation?", "organisation"),
    ],
)
def test_papers_missing_a_field(question, missing):
    query = parse(question)
    assert query is not None and query.ask in ("count", "list")
    assert query.missing == missing


@pytest.mark.parametrize(
    ("question", "ask", "n", "topic"),
    [
        ("which paper has the most authors", "most_authors", 1, ""),
        ("Which paper in the corpus lists the most authors, and how many are there?", "most_authors", 1, ""),
        ("What paper has the largest number of authors?", "most_authors", 1, ""),
        ("Which paper has the longest author list?", "most_authors", 1, ""),
        ("top 5 papers by number of authors", "most_authors", 5, ""),
        ("the three papers with the most authors", "most_authors", 3, ""),
        ("Which paper has the fewest authors?", "fewest_authors", 1, ""),
        ("Which paper about speech has the least authors?", "fewest_authors", 1, "speech"),
        ("the earliest paper about speculative decoding", "earliest", 1, "speculative decoding"),
        ("What is the oldest paper in the corpus?", "earliest", 1, ""),
        ("Which paper was published first?", "earliest", 1, ""),
        ("Which paper is the oldest?", "earliest", 1, ""),
        ("What is the latest paper?", "latest", 1, ""),
        ("Which is the newest paper on quantization?", "latest", 1, "quantization"),
        ("What was the most recently published paper about mixture of experts?", "latest", 1, "mixture of experts"),
        ("Which paper has the latest full publication date in the corpus?", "latest", 1, ""),
        ("What are the three most recent papers?", "latest", 3, ""),
        ("Show the latest 4 papers", "latest", 4, ""),
        (
            "What is the earliest vision-and-language pre-training paper in the corpus, and when was it published?",
            "earliest",
            1,
            "vision-and-language pre-training",
        ),
    ],
)
def test_superlatives(question, ask, n, topic):
    query = parse(question)
    assert query is not None
    assert (query.ask, query.n, query.topic) == (ask, n, topic)


def test_a_superlative_keeps_its_period():
    query = parse("Among papers from 2024, which has the most authors?")
    assert query == MetaQuery(ask="most_authors", period=Period((2024, 1), (2024, 12)))
    assert parse("Which 2023 papers have the most authors?").period == Period((2023, 1), (2023, 12))


@pytest.mark.parametrize(
    ("question", "query"),
    [
        ("papers from March to June 2024", MetaQuery("list", period=Period((2024, 3), (2024, 6)))),
        ("papers in Q1 2024", MetaQuery("list", period=Period((2024, 1), (2024, 3)))),
        ("Which papers were published in May?", MetaQuery("list", period=Period(months=(5, 5)))),
        ("papers from July 2024", MetaQuery("list", period=Period((2024, 7), (2024, 7)))),
        ("Which papers in the corpus were published before 2018?", MetaQuery("list", period=Period(None, (2017, 12)))),
        (
            "Which vision-language model papers came out between March and June 2024?",
            MetaQuery("list", period=Period((2024, 3), (2024, 6)), topic="vision-language model"),
        ),
        ("papers from Google", MetaQuery("list", organisation="Google")),
        ("papers by Meta", MetaQuery("list", organisation="Meta")),
        ("papers credited to DeepMind", MetaQuery("list", organisation="DeepMind")),
        ("which papers did Google publish", MetaQuery("list", organisation="Google")),
        (
            "Is any paper from Google DeepMind about reasoning?",
            MetaQuery("list", organisation="Google DeepMind", topic="reasoning"),
        ),
        ("How many papers are from NVIDIA?", MetaQuery("count", organisation="NVIDIA")),
        ("Which papers were written by a single author?", MetaQuery("list", authors=AuthorRange(1, 1))),
        ("How many single-author papers are there?", MetaQuery("count", authors=AuthorRange(1, 1))),
        ("how many papers have more than 10 authors", MetaQuery("count", authors=AuthorRange(11, None))),
        ("papers with 20+ authors", MetaQuery("list", authors=AuthorRange(20, None))),
        ("how many papers have exactly 4 authors", MetaQuery("count", authors=AuthorRange(4, 4))),
        (
            "Which papers have fewer than 3 authors and are from 2024?",
            MetaQuery("list", period=Period((2024, 1), (2024, 12)), authors=AuthorRange(None, 2)),
        ),
        (
            "Which papers written by a single author apply language models to materials science or mechanics?",
            MetaQuery(
                "list", authors=AuthorRange(1, 1), topic="apply language models to materials science or mechanics"
            ),
        ),
        (
            "Which papers about model merging have no known publication year?",
            MetaQuery("list", missing="year", topic="model merging"),
        ),
        (
            "Which papers name the organisation behind them, and which organisations are they?",
            MetaQuery("list", recorded="organisation"),
        ),
        ("How many papers have a known year?", MetaQuery("count", recorded="year")),
        (
            "How many papers from 2019 are about vision-language pretraining?",
            MetaQuery("count", period=Period((2019, 1), (2019, 12)), topic="vision-language pretraining"),
        ),
        (
            "How many RLHF papers were published in 2024?",
            MetaQuery("count", period=Period((2024, 1), (2024, 12)), topic="RLHF"),
        ),
        ("How many papers about speculative decoding are there?", MetaQuery("count", topic="speculative decoding")),
        ("How many papers are in the corpus?", MetaQuery("count")),
        ("How many papers does the corpus contain?", MetaQuery("count")),
        ("How many papers per year?", MetaQuery("per_year")),
        ("What is the breakdown of papers by year?", MetaQuery("per_year")),
        ("What is the average number of authors?", MetaQuery("average_authors")),
        (
            "How many authors do papers from 2023 have on average?",
            MetaQuery("average_authors", period=Period((2023, 1), (2023, 12))),
        ),
        ("Which paper has the most citations?", MetaQuery("unrecorded", unrecorded="citation counts")),
        ("How many times was PaLM cited?", MetaQuery("unrecorded", unrecorded="citation counts")),
        ("Which conference was the PaLM paper published at?", MetaQuery("unrecorded", unrecorded="venues")),
    ],
)
def test_whole_queries(question, query):
    assert parse(question) == query
    assert query.ask in ASKS


@pytest.mark.parametrize(
    ("question", "fields", "topic"),
    [
        ("how many authors wrote the MegaScale paper", ("authors",), "MegaScale"),
        ("How many authors does the Large Concept Model paper list?", ("authors",), "Large Concept Model"),
        ("What is the number of authors of PaLM?", ("authors",), "PaLM"),
        (
            "How many authors are listed on the paper that trained a 540-billion-parameter dense language model on 6144 TPU v4 chips?",
            ("authors",),
            "trained a 540-billion-parameter dense language model on 6144 TPU v4 chips",
        ),
        ("How many people co-wrote the Dolma paper?", ("authors",), "Dolma"),
        ("when was MegaScale published", ("date",), "MegaScale"),
        ("When did the LoRA paper come out?", ("date",), "LoRA"),
        ("What's the publication date of the Dolma paper?", ("date",), "Dolma"),
        (
            "When was Sophia, the second-order optimizer for language model pre-training, published?",
            ("date",),
            "Sophia, the second-order optimizer for language model pre-training",
        ),
        (
            (
                "In what year was the work that trained an 8.3-billion-parameter GPT-2-like model with intra-layer model parallelism "
                "on 512 GPUs published, and how many authors does it have?"
            ),
            ("authors", "date"),
            "trained an 8.3-billion-parameter GPT-2-like model with intra-layer model parallelism on 512 GPUs",
        ),
        (
            "Which company published the work on front-loading reasoning data?",
            ("organisation",),
            "front-loading reasoning data",
        ),
    ],
)
def test_a_named_papers_metadata(question, fields, topic):
    query = parse(question)
    assert query is not None and query.ask == "paper"
    assert (query.fields, query.topic) == (fields, topic)


def test_who_wrote_says_names_are_not_recorded():
    query = parse("Who wrote the MegaScale paper?")
    assert query == MetaQuery("paper", fields=("authors",), unrecorded="author names", topic="MegaScale")


# ---------------------------------------------------------------- parse: content questions stay content questions


def _content_questions() -> list[str]:
    rows = [
        json.loads(line)
        for line in (ROOT / "eval" / "datasets" / "default.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return [r["question"] for r in rows if r["kind"] != "metadata"]


def test_content_questions_of_the_eval_set_are_not_metadata_questions():
    questions = _content_questions()
    assert len(questions) > 50
    assert [q for q in questions if parse(q) is not None] == []


@pytest.mark.parametrize(
    "question",
    [
        "papers from 2019 about vision-language pretraining",
        "Which papers from 2019 are about vision-and-language pre-training?",
        "Which papers from 2022 report a training speedup?",
        "Which papers published in 2021 propose self-supervised pre-training for speech?",
        "robot grasping papers after 2020",
        "papers that may help with quantization",
        "Which papers march towards general intelligence?",
        "How many GPUs were used to train GPT-4, and for how long?",
        "How many PetaFLOPs does the 2019 Megatron-LM approach sustain on 512 GPUs?",
        "In the shared challenge for training on a child-sized text budget, how many entries were there and what design won?",
        "Which company released the dataset of news stories?",
        "Which papers use a context length of 2048 tokens?",
        "What are the latest techniques for KV cache compression?",
        "Which paper has the most parameters?",
        "What does the first half of the abstract say about MoE?",
        "What is the capital of Australia?",
    ],
)
def test_topic_questions_are_left_to_retrieval(question):
    assert parse(question) is None


# ---------------------------------------------------------------- answer: counts and lists


MIXED = [
    paper("a1", "Jan 28, 2024", authors=5),
    paper("a2", "Mar 3, 2024", authors=12),
    paper("a3", "Mar 3, 2024", authors=12),
    paper("a4", "Dec 5, 2023", authors=1),
    paper("b1", "Jul 14", authors=4, title=""),  # month, no year, no title
    paper("b2", "Aug 22"),
    paper("c1", abstract="Untitled work on speculative decoding with draft models and verification."),
    paper("c2", authors=3, org="Google DeepMind"),
]
MIXED[6].title = ""


def test_count_is_over_every_paper_in_date_order_then_id_and_counts_the_unknown_ones():
    result = answer(parse("How many papers are from 2024?"), MIXED)
    assert result.value == 3
    assert [p.paper_id for p in result.unknown] == ["b1", "b2", "c1", "c2"]
    assert result.text.endswith(
        "4 more may match but have no year: An abstract about b1; Paper b2; "
        "Untitled work on speculative decoding with draft models and verification; Paper c2."
    )
    assert not result.not_recorded
    assert [p.paper_id for p in result.papers] == ["a1", "a2", "a3"]
    assert re.findall(r"\[(\d+)\]", result.text) == ["1", "2", "3"]
    assert result.text.index("Paper a1") < result.text.index("Paper a2") < result.text.index("Paper a3")


def test_few_unknown_papers_are_named_untitled_ones_by_their_opening_words():
    result = answer(
        parse("How many papers have 3 or more authors?"), [p for p in MIXED if p.paper_id in ("a1", "a4", "c1")]
    )
    assert result.value == 1
    assert [p.paper_id for p in result.unknown] == ["c1"]
    assert result.text.endswith(
        "1 more may match but has no author count: Untitled work on speculative decoding with draft models and verification."
    )


def test_a_count_cites_a_few_examples_and_says_how_many_more():
    papers = [paper(f"p{i:02d}", f"Jan {i + 1}, 2024") for i in range(EXAMPLES + 5)]
    result = answer(parse("how many papers are from January 2024"), papers)
    assert result.value == EXAMPLES + 5
    assert len(result.papers) == EXAMPLES
    assert f"[{EXAMPLES}]" in result.text and f"[{EXAMPLES + 1}]" not in result.text
    assert "and 5 more" in result.text


def test_a_month_without_a_year_matches_a_month_of_any_year_only():
    july = [
        paper("y", "Jul 3, 2024"),
        paper("z", "Jul 9, 2023"),
        paper("n", "Jul 14"),
        paper("o", "Aug 22"),
        paper("u"),
    ]
    any_year = answer(parse("papers from July"), july)
    assert [p.paper_id for p in any_year.papers] == ["z", "y", "n"]
    assert [p.paper_id for p in any_year.unknown] == ["u"]
    in_2024 = answer(parse("papers from July 2024"), july)
    assert [p.paper_id for p in in_2024.papers] == ["y"]
    assert [p.paper_id for p in in_2024.unknown] == ["n", "u"]  # "Aug 22" is from no year's July
    assert in_2024.text.endswith("2 more may match but have no year: Paper n; Paper u.")


def test_a_known_month_rules_out_a_paper_without_a_year_for_a_span_within_one_year():
    papers = [paper("apr", "Apr 4"), paper("aug", "Aug 22"), paper("x", "May 1, 2024")]
    result = answer(parse("How many papers are from March to June 2024?"), papers)
    assert result.value == 1
    assert [p.paper_id for p in result.unknown] == ["apr"]  # April, year unknown: maybe 2024
    assert month_of(papers[1]) == 8


def test_a_wrapping_month_range():
    papers = [paper("nov", "Nov 2, 2023"), paper("jan", "Jan 5"), paper("jun", "Jun 1, 2024")]
    result = answer(parse("How many papers are from November to February?"), papers)
    assert [p.paper_id for p in result.papers] == ["nov", "jan"]


def test_before_and_after_bounds():
    papers = [paper("old", "Dec 31, 2019"), paper("new", "Jan 1, 2020"), paper("later", "Jul 1, 2024")]
    assert [p.paper_id for p in answer(parse("papers published before 2020"), papers).papers] == ["old"]
    assert [p.paper_id for p in answer(parse("papers published after June 2024"), papers).papers] == ["later"]
    assert [p.paper_id for p in answer(parse("papers since 2020"), papers).papers] == ["new", "later"]


def test_organisation_matches_by_words_and_says_when_the_corpus_does_not_record_it():
    google = answer(parse("How many papers are from Google?"), MIXED)
    assert google.value == 1 and [p.paper_id for p in google.papers] == ["c2"]
    assert "Google DeepMind" in google.text
    meta = answer(parse("How many papers are from Meta?"), MIXED)
    assert meta.value == 0 and meta.papers == []
    assert meta.not_recorded
    assert "7 more may match but have no organisation" in meta.text


def test_topic_ids_restrict_the_count_and_the_text_names_the_topic():
    query = parse("How many papers from 2024 are about speculative decoding?")
    assert query.topic == "speculative decoding"
    result = answer(query, MIXED, topic_ids={"a2", "c1", "zz"})
    assert result.value == 1
    assert [p.paper_id for p in result.papers] == ["a2"]
    assert [p.paper_id for p in result.unknown] == ["c1"]
    assert '"speculative decoding"' in result.text
    assert "(of the 2 papers" in result.text


def test_papers_with_a_recorded_field_show_it():
    result = answer(parse("Which papers name the organisation behind them?"), MIXED)
    assert [p.paper_id for p in result.papers] == ["c2"]
    assert "(Google DeepMind, undated) [1]" in result.text


# ---------------------------------------------------------------- answer: superlatives


def test_most_authors_lists_every_paper_tied_for_it_by_date_then_id():
    result = answer(parse("Which paper has the most authors?"), MIXED)
    assert result.value == 12
    assert [p.paper_id for p in result.papers] == ["a2", "a3"]
    assert "2 papers share the most authors, 12 each" in result.text
    assert {p.paper_id for p in result.unknown} == {"b2", "c1"}


def test_top_n_keeps_ties_with_the_last_place():
    result = answer(parse("the two papers with the fewest authors"), MIXED)
    assert [(p.paper_id, p.authors) for p in result.papers] == [("a4", 1), ("c2", 3)]
    three = answer(parse("top 3 papers by number of authors"), MIXED)
    assert [p.paper_id for p in three.papers] == ["a2", "a3", "a1"]


def test_a_single_winner_is_named_with_its_value():
    result = answer(parse("Which paper has the fewest authors?"), MIXED)
    assert result.text.startswith("Paper a4 has the fewest authors: 1 [1].")
    assert result.value == 1


def test_earliest_and_latest_skip_unknown_years_and_say_so():
    earliest = answer(parse("What is the oldest paper?"), MIXED)
    assert [p.paper_id for p in earliest.papers] == ["a4"]
    assert earliest.value == "Dec 5, 2023"
    assert "4 more have no year and could not be compared" in earliest.text
    latest = answer(parse("What is the latest paper?"), MIXED)
    assert [p.paper_id for p in latest.papers] == ["a2", "a3"]  # the same day: both, by id
    assert latest.value == "Mar 3, 2024"


def test_superlative_with_no_known_value_is_not_recorded():
    result = answer(parse("Which paper has the most authors?"), [paper("x"), paper("y")])
    assert result.papers == [] and result.not_recorded
    assert "2 more have no author count" in result.text


def test_answers_do_not_depend_on_input_order():
    queries = [
        "How many papers are from 2024?",
        "Which paper has the most authors?",
        "What is the latest paper?",
        "papers from July",
    ]
    shuffled = MIXED[:]
    random.Random(7).shuffle(shuffled)
    for q in queries:
        a, b = answer(parse(q), MIXED), answer(parse(q), shuffled)
        assert (a.text, [p.paper_id for p in a.papers]) == (b.text, [p.paper_id for p in b.papers])


# ---------------------------------------------------------------- answer: one named paper, statistics


def test_a_named_paper_is_the_candidate_containing_the_name():
    papers = [
        paper("m", "Feb 23, 2024", authors=30, title="MegaScale: Scaling LLM Training"),
        paper("o", "Jan 2, 2024", authors=4, title="Other scaling work"),
    ]
    query = parse("How many authors wrote the MegaScale paper, and when was it published?")
    result = answer(query, papers, topic_ids=["o", "m"])
    assert result.papers[0].paper_id == "m"
    assert result.value == {"date": "Feb 23, 2024", "authors": 30}
    assert result.text == "MegaScale: Scaling LLM Training is dated Feb 23, 2024 and lists 30 authors [1]."


def test_a_named_paper_without_the_field_is_not_recorded():
    result = answer(
        parse("How many authors wrote the Orca paper?"), [paper("x", "Jul 14", title="Orca")], topic_ids=["x"]
    )
    assert result.not_recorded and result.value is None
    assert result.text == "The corpus does not record the number of authors of Orca [1]."


def test_a_named_paper_needs_candidates():
    query = parse("when was MegaScale published")
    assert answer(query, MIXED).papers == []
    assert answer(query, MIXED, topic_ids=["nope"]).text == 'No paper in the corpus matches "MegaScale".'


def test_per_year_and_average():
    per_year = answer(parse("How many papers per year?"), MIXED)
    assert per_year.value == {"2024": 3, "2023": 1}
    assert per_year.text == "Papers per year: 2024: 3, 2023: 1. 4 more have no year."
    average = answer(parse("What is the average number of authors?"), MIXED)
    assert average.value == round((5 + 12 + 12 + 1 + 4 + 3) / 6, 1)
    assert "2 more have no author count" in average.text


def test_unrecorded_fields_are_an_answer_not_a_refusal():
    result = answer(parse("Which paper has the most citations?"), MIXED)
    assert result.not_recorded and result.papers == []
    assert result.text.startswith("The corpus does not record citation counts")


def test_period_from_a_year_filter():
    assert Period.years(2019, None) == Period((2019, 1), None)
    assert Period.years(2019, 2021).label() == "from 2019 to 2021"
    assert Period((2024, 3), (2024, 6)).label() == "from March to June 2024"
    assert Period(None, (2017, 12)).label() == "from 2017 or earlier"


# ---------------------------------------------------------------- the default corpus (figures checked against the raw files)


@pytest.fixture(scope="module")
def corpus() -> list[Paper]:
    return load([ROOT / "data" / "corpus"]).papers


def test_default_corpus_most_authors_is_palm_with_67(corpus):
    result = answer(parse("Which paper has the most authors?"), corpus)
    assert result.value == 67
    assert [p.display_title for p in result.papers] == ["PaLM: Scaling Language Modeling with Pathways"]
    assert len(result.unknown) == 305 - 179  # 179 papers carry a "• N authors" line


def test_default_corpus_counts_by_year(corpus):
    in_2019 = answer(parse("How many papers in the corpus were published in 2019?"), corpus)
    assert in_2019.value == 4
    assert [p.date for p in in_2019.papers] == ["2019-08-20", "2019-09-17", "2019-09-25", "2019-09-27"]
    assert answer(parse("How many of the papers came out in 2022?"), corpus).value == 15
    assert answer(parse("how many papers have no year"), corpus).value == 162


def test_default_corpus_earliest_and_latest(corpus):
    earliest = answer(parse("What is the oldest paper in the corpus?"), corpus)
    assert (earliest.papers[0].date, earliest.value) == ("2015-09-17", "Sep 17, 2015")
    latest = answer(parse("Which paper has the latest full publication date in the corpus?"), corpus)
    assert latest.papers[0].title.startswith("TinyHelen's First Curriculum") and latest.value == "Dec 31, 2024"


def test_default_corpus_single_authors_and_july(corpus):
    single = answer(parse("Which papers were written by a single author?"), corpus)
    assert single.value == 6 and all(p.authors == 1 for p in single.papers)
    july = answer(parse("papers from July"), corpus)
    assert july.value == 9  # 3 from 2023, 2 from 2024, 4 with no year
    july_2024 = answer(parse("papers from July 2024"), corpus)
    assert july_2024.value == 2
    assert len(july_2024.unknown) == 124 + 4  # undated papers and the four "Jul N" ones
