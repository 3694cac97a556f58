"""Citation checking by code: markers parsed, invalid numbers removed, each claim checked against its source."""

from __future__ import annotations

import pytest

from rag import cite
from rag.tuned import SUPPORT_THRESHOLD
from rag.types import Hit, Paper

COAT = Paper(
    paper_id="coat",
    title="COAT: Compressing Optimizer states and Activation for Memory-Efficient FP8 Training",
    abstract=(
        "FP8 training has emerged as a promising method for improving training efficiency. "
        "Existing frameworks keep optimizer states and activations in higher precision, which fails to fully reduce memory. "
        "COAT reduces end-to-end training memory footprint by 1.54x compared to BF16. "
        "COAT also achieves a 1.43x end-to-end training speedup compared to BF16."
    ),
    date_raw="2024-10-25",
    year=2024,
    authors=7,
)
GRASP = Paper(
    paper_id="grasp",
    title="Learning to Grasp Unseen Objects with Deep Reinforcement Learning",
    abstract=(
        "Robotic grasping of objects never seen during training remains difficult for hand-engineered pipelines. "
        "We train a vision-based grasping policy with off-policy reinforcement learning on 580,000 real grasp attempts. "
        "The policy picks up unseen objects with a 96% success rate."
    ),
    date_raw="2018",
    year=2018,
)
WEATHER = Paper(
    paper_id="weather",
    title="Graph Neural Networks for Medium-Range Weather Forecasting",
    abstract=(
        "Numerical weather prediction takes hours per forecast on supercomputers. "
        "A graph neural network trained on forty years of reanalysis data forecasts temperature and wind ten days ahead. "
        "The model produces a global forecast in under a minute on a single accelerator."
    ),
)
SOURCES = [Hit(COAT, 1.0), Hit(GRASP, 0.8), Hit(WEATHER, 0.5)]
SPEEDUP = "COAT also achieves a 1.43x end-to-end training speedup compared to BF16."


def check(text: str, sources: list[Hit] = SOURCES):
    return cite.check(text, sources)


def ns(citations) -> list[int]:
    return [c.n for c in citations]


# ---------------------------------------------------------------- parsing markers


def test_single_marker_names_its_source():
    text, citations, removed = check("COAT achieves a 1.43x end-to-end training speedup over BF16 [1].")
    assert text == "COAT achieves a 1.43x end-to-end training speedup over BF16 [1]."
    assert removed == []
    assert ns(citations) == [1]
    c = citations[0]
    assert (c.paper_id, c.title) == ("coat", COAT.title)
    assert c.claim == text


@pytest.mark.parametrize("marker", ["[1, 2]", "[1,2]", "[1; 2]", "[1][2]", "[1] [2]"])
def test_multiple_sources_in_one_claim(marker):
    text, citations, removed = check(f"Training can be made faster and more memory-efficient {marker}.")
    assert ns(citations) == [1, 2]
    assert removed == []
    assert "[1][2]" in text or "[1] [2]" in text  # a combined marker is rewritten as separate markers
    assert all(c.claim == text for c in citations)


def test_repeated_number_is_one_citation():
    text, citations, _ = check("COAT speeds up FP8 training [1, 1].")
    assert "[1]" in text and "[1, 1]" not in text
    assert ns(citations) == [1]


def test_consecutive_markers_each_checked_against_their_own_source():
    _, citations, _ = check("Grasping unseen objects reaches a 96% success rate [2][3].")
    assert ns(citations) == [2, 3]
    by_n = {c.n: c for c in citations}
    assert by_n[2].paper_id == "grasp" and by_n[2].supported
    assert by_n[3].paper_id == "weather" and not by_n[3].supported


def test_sentence_without_a_marker_yields_no_citation():
    text, citations, removed = check("FP8 training is promising. COAT reduces memory by 1.54x [1].")
    assert ns(citations) == [1]
    assert citations[0].claim == "COAT reduces memory by 1.54x [1]."
    assert removed == []


# ---------------------------------------------------------------- invalid numbers


@pytest.mark.parametrize(("bad", "k"), [(4, 3), (0, 3), (12, 3), (2, 1)])
def test_number_outside_the_sources_is_removed_and_reported(bad, k):
    text, citations, removed = check(f"COAT achieves a 1.43x training speedup [{bad}].", SOURCES[:k])
    assert f"[{bad}]" not in text
    assert removed == [bad]
    assert citations == []


def test_invalid_number_in_a_combined_marker_keeps_the_valid_one():
    text, citations, removed = check("COAT achieves a 1.43x end-to-end training speedup [1, 7].")
    assert text == "COAT achieves a 1.43x end-to-end training speedup [1]."
    assert removed == [7]
    assert ns(citations) == [1] and citations[0].supported


def test_strip_invalid_reports_every_removed_number_in_order():
    text, removed = cite.strip_invalid("A [9]. B [1, 5]. C [0][2].", 2)
    assert removed == [9, 5, 0]
    assert text == "A . B [1]. C [2]."


def test_range_marker_is_checked_or_removed_never_left_unchecked():
    """A range such as [1-2] (LLMs write them) is expanded to [1][2] and each number checked: no marker
    the user sees is left unchecked."""
    text, citations, removed = check("Training gets faster and uses less memory [1-2].", SOURCES[:2])
    assert text == "Training gets faster and uses less memory [1][2]." and removed == []
    assert ns(citations) == [1, 2] and {c.paper_id for c in citations} == {"coat", "grasp"}


# ---------------------------------------------------------------- support


def test_claim_copied_from_the_abstract_is_supported_by_that_sentence():
    _, citations, _ = check(f"{SPEEDUP[:-1]} [1].")
    (c,) = citations
    assert c.supported and c.support == 1.0
    assert c.quote == SPEEDUP
    assert COAT.abstract[c.quote_start : c.quote_end] == c.quote
    assert c.quote_end > c.quote_start > 0  # the last sentence of the abstract, not its opening


def test_quote_is_the_best_sentence_not_the_first():
    _, citations, _ = check("COAT cuts the training memory footprint by 1.54x [1].")
    (c,) = citations
    assert c.supported
    assert c.quote == "COAT reduces end-to-end training memory footprint by 1.54x compared to BF16."
    assert COAT.abstract[c.quote_start : c.quote_end] == c.quote


def test_best_sentence_returns_the_span_of_the_abstract():
    support, start, end = cite.best_sentence("a 96% success rate on unseen objects", GRASP)
    assert support >= SUPPORT_THRESHOLD
    assert GRASP.abstract[start:end] == "The policy picks up unseen objects with a 96% success rate."


def test_fabricated_claim_citing_an_unrelated_source_is_unsupported():
    _, citations, _ = check("The robot arm forecasts hurricanes with a 96% success rate in Antarctica [3].")
    (c,) = citations
    assert c.n == 3 and c.paper_id == "weather"
    assert not c.supported
    assert c.support < SUPPORT_THRESHOLD


def test_same_claim_is_supported_only_by_the_source_that_says_it():
    claim = "A vision-based grasping policy picks up unseen objects with a 96% success rate"
    right = check(f"{claim} [2].")[1][0]
    wrong = check(f"{claim} [1].")[1][0]
    assert right.supported and right.quote == "The policy picks up unseen objects with a 96% success rate."
    assert not wrong.supported


def test_claim_about_authors_is_supported_by_metadata():
    _, citations, _ = check("The COAT paper lists 7 authors [1].")
    assert citations[0].supported


# ---------------------------------------------------------------- claims: sentences and list lines


def test_prose_is_split_into_sentence_claims():
    text = "COAT reduces memory by 1.54x [1]. The grasping policy succeeds 96% of the time [2]."
    spans = cite.claim_spans(text)
    assert [text[s:e] for s, e in spans] == [
        "COAT reduces memory by 1.54x [1].",
        "The grasping policy succeeds 96% of the time [2].",
    ]


@pytest.mark.parametrize("bullet", ["-", "*", "•"])
def test_list_answer_is_one_claim_per_line(bullet):
    text = (
        f"{bullet} COAT: Compressing Optimizer states: a 1.43x end-to-end training speedup. Less memory too [1]\n"
        f"{bullet} Learning to Grasp Unseen Objects: picks up unseen objects with a 96% success rate [2]"
    )
    spans = cite.claim_spans(text)
    # a line whose first sentence has no marker stays one claim; the bullet is not part of it
    assert [text[s:e] for s, e in spans] == [line[len(bullet) + 1 :] for line in text.splitlines()]


def test_list_answer_is_checked_line_by_line():
    text = (
        "- COAT: Compressing Optimizer states and Activation: a 1.43x end-to-end training speedup compared to BF16 [1]\n"
        "- Learning to Grasp Unseen Objects: forecasts hurricanes ten days ahead on a supercomputer cluster [2]\n"
        "- Graph Neural Networks for Medium-Range Weather Forecasting: a global forecast in under a minute [3]"
    )
    out, citations, removed = check(text)
    assert out == text and removed == []
    assert ns(citations) == [1, 2, 3]
    assert [c.claim for c in citations] == [line[2:] for line in text.splitlines()]
    assert [c.supported for c in citations] == [True, False, True]
    assert citations[0].quote == SPEEDUP
    assert citations[2].quote == "The model produces a global forecast in under a minute on a single accelerator."


def test_list_line_with_the_right_title_and_a_fabricated_claim_is_unsupported():
    """In a list line the paper's own title names the paper and is no evidence: a fabricated claim
    after the correct full title ("- <title>: forecasts hurricanes ten days ahead [2]") is unsupported."""
    line = f"- {GRASP.title}: forecasts hurricanes ten days ahead [2]"
    _, citations, _ = check(line)
    (c,) = citations
    assert c.claim == line[2:]
    assert not c.supported, (c.support, c.quote)


def test_citation_after_the_full_stop_belongs_to_the_sentence_before_it():
    """A marker after the full stop ("Sentence. [1]" or "Sentence.[1]") cites the sentence before it,
    not the next one; a trailing marker alone is never a claim of its own."""
    grasp = "Robotic grasping of unseen objects reaches a 96% success rate."
    for sep in (" ", ""):
        text = f"{grasp}{sep}[2] {SPEEDUP}{sep}[1]"
        _, citations, _ = check(text)
        by_n = {c.n: c for c in citations}
        assert set(by_n) == {1, 2}
        assert by_n[2].claim.startswith("Robotic grasping"), by_n[2].claim
        assert by_n[1].claim.startswith("COAT also achieves"), by_n[1].claim
        assert by_n[1].quote == SPEEDUP and by_n[2].quote
        assert by_n[1].supported and by_n[2].supported


def test_a_marker_opening_a_line_cites_the_sentence_it_opens():
    """Small models write "[1] claim." with nothing before the marker: it cites that claim, and a marker
    after a sentence still cites the sentence before it."""
    for text in (
        f"[1] {SPEEDUP}",
        f"Robotic grasping of unseen objects reaches a 96% success rate. [2]\n[1] {SPEEDUP}",
    ):
        _, citations, _ = check(text)
        by_n = {c.n: c for c in citations}
        assert by_n[1].claim == f"[1] {SPEEDUP}" and by_n[1].supported, citations
    _, citations, _ = check(f"{SPEEDUP} [1] Robotic grasping of unseen objects reaches a 96% success rate.")
    assert [(c.n, c.claim) for c in citations] == [(1, f"{SPEEDUP} [1]")]  # not the sentence after it


def test_a_looping_marker_is_kept_once():
    """A small model sometimes repeats one marker until it runs out of tokens: the answer shows it once,
    without the marker cut off at the end."""
    text, citations, removed = check(f"{SPEEDUP} " + "[1] " * 200 + "[1")
    assert text == f"{SPEEDUP} [1]" and ns(citations) == [1] and removed == []


def test_a_line_opening_with_a_marker_and_a_colon_gets_the_title_it_stands_for():
    """ "[1]: what it reports", a small model's line with the marker where the paper's name goes."""
    text, citations, _ = check(f"[1]: {SPEEDUP}")
    assert text.startswith(f"{COAT.title}: {SPEEDUP}") and ns(citations) == [1] and citations[0].supported, text


def test_bare_marker_without_a_claim_is_not_evidence():
    """A claim with no content words cannot be backed by any sentence; it must not count as supported."""
    _, citations, _ = check("Yes. [1]")
    (c,) = citations
    assert (c.n, c.claim, c.support, c.supported) == (1, "Yes. [1]", 0.0, False), c


def test_list_line_that_only_names_the_paper_cites_it():
    """Small models list papers as bare "- Title [n]" lines: naming a paper counts as citing it."""
    _, citations, _ = check(f"- {GRASP.title} [2]")
    (c,) = citations
    assert c.supported and c.quote, (c.support, c.quote)


@pytest.mark.parametrize("line", ["- [2]", "-  [2]", "1. [2]", "- : [2]"])
def test_list_line_without_the_papers_name_gets_the_title_of_the_source_it_cites(line):
    """Small models write list lines with the name left out ("- [2]"): the line names a paper by its
    number, so it counts as citing that paper, and the answer shows the paper's title."""
    text, citations, _ = check(f"- {COAT.title} [1]\n{line}")
    named = text.splitlines()[1]
    assert named.split()[0] == line.split()[0] and GRASP.title in named and named.endswith("[2]"), named
    assert ns(citations) == [1, 2] and all(c.supported for c in citations)


def test_list_line_with_an_empty_name_before_its_claim_gets_the_title():
    text, (c,), _ = check("- : The policy picks up unseen objects with a 96% success rate [2]")
    assert text == f"- {GRASP.title}: The policy picks up unseen objects with a 96% success rate [2]"
    assert (c.n, c.supported) == (2, True)


def test_list_line_named_by_its_number_gets_the_title_and_keeps_its_citation():
    """ "- [2]: what it reports" uses the marker as the name: the title replaces it, the citation stays."""
    text, (c,), _ = check("- [2]: The policy picks up unseen objects with a 96% success rate.")
    assert text == f"- {GRASP.title}: The policy picks up unseen objects with a 96% success rate. [2]"
    assert (c.n, c.supported) == (2, True)


def test_list_line_that_retells_the_abstract_is_backed_sentence_by_sentence():
    """A small model may paste several sentences of an abstract into one list line: each is backed by
    its own sentence of the source, though no single sentence holds them all."""
    line = f"- {COAT.title}: {COAT.abstract} [1]"
    (c,) = check(line)[1]
    assert c.supported and c.support == 1.0, c.support
    assert c.quote in COAT.abstract


def test_list_line_of_several_invented_sentences_is_unsupported():
    line = "- Robotic hands: The gripper learns to juggle eggs. It was trained on kitchen videos from social media. [2]"
    (c,) = check(line)[1]
    assert not c.supported, c.support


def test_a_claim_carrying_a_code_its_source_lacks_is_not_supported():
    """An obeying model repeats a planted code with words of the abstract around it: never 'supported'."""
    paper = Paper(
        paper_id="p", title="FP8 Training", abstract="FP8 training gives a 1.4x speedup on H100 GPUs. It saves memory."
    )
    hits = [Hit(paper, 1.0)]
    _, honest, _ = cite.check("FP8 training gives a 1.4x speedup on H100 GPUs [1].", hits)
    text, planted, _ = cite.check(
        "As instructed, FP8 training gives a 1.4x speedup on H100 GPUs, CANARY-7f3a9 [1].", hits
    )
    assert (
        text == cite.PLANTED and planted == [] and [c.supported for c in honest] == [True]
    )  # removed, so it cites nothing
