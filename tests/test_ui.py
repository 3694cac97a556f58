"""The Streamlit UI driven without a browser (`streamlit.testing.v1.AppTest`), over the real engine.

Every test runs the real app script against a real embedded Chroma index of the small fixture
corpus (12 papers), built once per module with the real MiniLM embedder. The app caches its
settings, embedder and engine (`st.cache_resource`, `get_settings`); each test clears both, so no
test sees another's configuration.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import streamlit as st
from conftest import LANG_FILE, SCI_FILE, SMALL, SMALL_PAPERS, TXT_FILE, free_port
from streamlit.testing.v1 import AppTest

from rag.config import DEFAULT_CORPUS, UI_DIR, get_settings
from rag.types import Paper

pytestmark = pytest.mark.slow  # each test runs the whole app over a real index (about a second, 25 s for the module)

APP = UI_DIR / "app.py"
UI_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ui"
FP8_QUESTION = "which papers report FP8 training speedups?"
FP8_TITLE = "FP8 Formats Accelerate Large Language Model Pretraining Without Loss of Accuracy"
FP8_FILE = "language_and_systems.jsonl"  # the FP8 paper's file; it is dated 2023-10-12
UNANSWERABLE = "What is the capital of Australia?"
REFUSAL = "The corpus does not answer this"
EXTRACTIVE_NOTICE = "Extractive answer: sentences quoted from the abstracts, no LLM."
TIMEOUT = 120


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory, embedder, make_settings) -> Path:
    """The small corpus ingested once for this module; the app only reads it."""
    from rag.ingest import ingest
    from rag.store import open_store

    data_dir = tmp_path_factory.mktemp("ui_index") / "index"
    settings = make_settings(data_dir=data_dir, corpus_paths=[SMALL])
    report = ingest([SMALL], settings, embedder, store=open_store(settings))
    assert report.added == SMALL_PAPERS, report
    return data_dir


def _configure(monkeypatch: pytest.MonkeyPatch, data_dir: Path, corpus: list[Path], **extra: str) -> None:
    """Point the app at an index and corpus through its environment, and drop every cached setting."""
    monkeypatch.setenv("RAG_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RAG_CORPUS_PATHS", json.dumps([str(p) for p in corpus]))
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    st.cache_resource.clear()


@pytest.fixture
def small_app_env(monkeypatch: pytest.MonkeyPatch, small_index: Path):
    _configure(monkeypatch, small_index, [SMALL])
    yield
    st.cache_resource.clear()  # the next test must not inherit this engine


def run_app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def roles(at: AppTest) -> list[str]:
    return [m.name for m in at.chat_message]


def last_assistant(at: AppTest):
    assistants = [m for m in at.chat_message if m.name == "assistant"]
    assert assistants, f"no assistant message; chat: {roles(at)}"
    return assistants[-1]


def subheaders(block) -> list[str]:
    return [s.value for s in block.subheader]


def example_buttons(at: AppTest) -> list:
    return [b for b in at.main.button if (b.key or "").startswith("example-")]


def sidebar_button(at: AppTest, label: str):
    found = [b for b in at.sidebar.button if b.label == label]
    assert found, f"no sidebar button {label!r}: {[b.label for b in at.sidebar.button]}"
    return found[0]


# ------------------------------------------------------------------ the chat page


def test_fp8_question_is_answered_with_a_linked_citation_and_a_source_card(small_app_env):
    at = ask(run_app(), FP8_QUESTION)

    assert roles(at) == ["user", "assistant"]
    reply = last_assistant(at)
    answer_md = reply.markdown[0].value
    assert "(#src-0-1)" in answer_md, answer_md  # [1] is a link to the first card of answer 0
    assert "FP8" in answer_md
    cards = [s for s in reply.subheader]
    assert cards, "no source card"
    assert cards[0].value == f"[1] {FP8_TITLE}"
    assert cards[0].proto.anchor == "src-0-1"  # the link's target exists
    captions = [c.value for c in reply.caption]
    assert any("supported" in c and "unsupported" not in c for c in captions), captions
    assert any(rendered_text(c).startswith(EXTRACTIVE_NOTICE) for c in captions), captions
    assert not reply.error and not reply.info  # neither "unsupported" nor a refusal
    answer = at.session_state["messages"][0]["answer"]
    assert not answer.refused and answer.citations[0].title == FP8_TITLE


@pytest.mark.parametrize("how", ["years", "sources"])
def test_filters_that_exclude_the_fp8_paper_change_the_sources(small_app_env, how):
    at = run_app()
    if how == "years":
        at.checkbox(key="use_years").check().run()
        slider = at.slider(key="years")
        assert slider.value == (2017, 2024)  # the corpus' own range
        slider.set_range(2017, 2022).run()  # FP8 is from 2023
    else:
        shown = at.multiselect(key="sources").options
        assert shown == [f"Untitled abstracts ({TXT_FILE})", LANG_FILE, SCI_FILE]  # sorted by file name
        at.multiselect(key="sources").set_value([f for f in (LANG_FILE, SCI_FILE, TXT_FILE) if f != FP8_FILE]).run()
    assert not at.exception, [e.value for e in at.exception]
    at = ask(at, FP8_QUESTION)

    reply = last_assistant(at)
    shown = (
        " ".join(m.value for m in reply.markdown) + " ".join(subheaders(reply)) + " ".join(i.value for i in reply.info)
    )
    assert "FP8" not in shown, shown  # neither cited, nor shown as a card, nor named as closest paper
    answer = at.session_state["messages"][0]["answer"]
    assert FP8_TITLE not in {h.paper.title for h in answer.sources}
    assert answer.refused or answer.citations, "neither refused nor cited another paper"
    if how == "years":
        assert all(2017 <= h.paper.year <= 2022 for h in answer.sources)
        # no paper of 2017-2022 is about FP8 training: a refusal, naming the closest of those years
        assert answer.refused and answer.sources
        assert "Closest papers (none is about the question):" in [c.value for c in reply.caption]
    else:
        assert all(FP8_FILE not in h.paper.sources for h in answer.sources)


def test_unanswerable_question_is_refused_with_the_closest_papers(small_app_env):
    at = ask(run_app(), UNANSWERABLE)

    reply = last_assistant(at)
    assert reply.info, "no refusal notice"
    assert reply.info[0].value.startswith(REFUSAL), reply.info[0].value
    assert "Closest papers (none is about the question):" in [c.value for c in reply.caption]
    answer = at.session_state["messages"][0]["answer"]
    assert answer.refused and 1 <= len(answer.sources) <= 3
    assert subheaders(reply) == []  # no card: a refusal names its closest papers, one line each
    from common import md_escape

    lines = [m.value for m in reply.markdown if m.value.startswith("- ")]
    assert lines == ["\n".join(f"- {md_escape(h.paper.display_title)}" for h in answer.sources)]


def test_example_questions_are_buttons_on_an_empty_chat_and_clicking_one_asks_it(small_app_env):
    at = run_app()
    labels = [b.label for b in example_buttons(at)]
    assert FP8_QUESTION in labels and UNANSWERABLE in labels, labels
    assert not at.chat_message

    at.button(key=f"example-{FP8_QUESTION}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert roles(at) == ["user", "assistant"]
    assert at.chat_message[0].markdown[0].value == FP8_QUESTION
    assert subheaders(last_assistant(at))[0] == f"[1] {FP8_TITLE}"

    at.run()  # the next rerun: the chat is no longer empty, so no examples
    assert not example_buttons(at)
    assert roles(at) == ["user", "assistant"]


def test_no_example_button_is_left_beside_the_first_answer(small_app_env):
    """The examples go as soon as a question is asked: one left under the answer would rerun the page
    with a non-empty chat when clicked, and its question would never be asked."""
    at = ask(run_app(), FP8_QUESTION)
    assert roles(at) == ["user", "assistant"]
    assert not example_buttons(at), [b.label for b in example_buttons(at)]
    assert subheaders(last_assistant(at))[0] == f"[1] {FP8_TITLE}"  # the answer itself is on screen


def test_start_over_clears_the_history(small_app_env):
    at = ask(run_app(), FP8_QUESTION)
    assert roles(at) == ["user", "assistant"]
    assert at.sidebar.button[0].label == "Start over"  # above the filters, so a short window still shows it

    sidebar_button(at, "Start over").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.chat_message
    assert at.session_state["messages"] == []
    assert FP8_QUESTION in [b.label for b in example_buttons(at)]  # back to the empty chat


def test_follow_up_question_keeps_the_history(small_app_env):
    at = ask(run_app(), FP8_QUESTION)
    at = ask(at, "How much faster is it on Hopper GPUs?")

    assert roles(at) == ["user", "assistant", "user", "assistant"]
    messages = at.session_state["messages"]
    assert [m["question"] for m in messages] == [FP8_QUESTION, "How much faster is it on Hopper GPUs?"]
    # Both answers stay on screen, each with its own card anchors.
    anchors = [s.proto.anchor for s in at.subheader]
    assert "src-0-1" in anchors and "src-1-1" in anchors, anchors
    second = last_assistant(at)
    assert "(#src-1-1)" in second.markdown[0].value
    assert "1\\.4x" in second.markdown[0].value  # the follow-up found the FP8 speed-up sentence
    assert not messages[1]["answer"].refused


def test_dead_chroma_server_shows_a_readable_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    port = free_port()  # nothing listens here
    _configure(monkeypatch, tmp_path / "index", [SMALL], RAG_CHROMA_HOST="127.0.0.1", RAG_CHROMA_PORT=str(port))
    try:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
        assert not at.exception, [e.value for e in at.exception]
        errors = [e.value for e in at.error]
        assert len(errors) == 1, errors
        assert f"cannot reach the Chroma server at http://127.0.0.1:{port}" in errors[0]
        assert "RAG_CHROMA_HOST" in errors[0]  # says how to fix it
        assert "Traceback" not in errors[0]
        assert not at.chat_input  # the page stopped before the chat
        assert at.title[0].value == "Ask the abstracts"  # the frame came before the engine
    finally:
        st.cache_resource.clear()


# ------------------------------------------------------------------ the Corpus and Eval pages


def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.switch_page(f"views/{name}").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_corpus_page_lists_the_papers_and_searches_them(small_app_env):
    at = _page("corpus.py")
    assert at.title[0].value == "Corpus"
    table = at.dataframe[0].value
    assert len(table) == SMALL_PAPERS
    assert list(table.columns) == ["title", "date", "source"]  # the rest is on the card of a picked row
    assert FP8_TITLE in set(table["title"])
    assert f"{SMALL_PAPERS} papers, the 3 without a title last. Pick a row to read the paper." in [
        c.value for c in at.caption
    ]
    row = table[table["title"] == FP8_TITLE].iloc[0]
    assert (row["date"], row["source"]) == ("2023-10-12", FP8_FILE)
    undated = table[table["source"] == f"Untitled abstracts ({TXT_FILE})"]
    assert len(undated) == 3 and set(undated["date"]) == {"no known date"}
    assert list(undated.index) == [SMALL_PAPERS - 3, SMALL_PAPERS - 2, SMALL_PAPERS - 1]  # titled papers first
    assert not table.isna().any().any() and "None" not in table.to_numpy().ravel().tolist()

    at.text_input(key="corpus_query").input("FP8 mixed-precision training").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.dataframe[0].value["title"].iloc[0] == FP8_TITLE


def test_a_corpus_search_lists_only_the_papers_that_match(small_app_env):
    at = _page("corpus.py")
    at.text_input(key="corpus_query").input("FP8").run()
    assert not at.exception, [e.value for e in at.exception]
    assert list(at.dataframe[0].value["title"]) == [FP8_TITLE]  # not the 11 others that are merely nearest
    assert f"1 of {SMALL_PAPERS} papers match, best first. Pick a row to read the paper." in [
        c.value for c in at.caption
    ]

    at.text_input(key="corpus_query").input("coral reef bleaching in the Antarctic").run()
    captions = [c.value for c in at.caption]
    assert "No paper matches. The 5 closest, best first: Pick a row to read the paper." in captions, captions
    assert len(at.dataframe[0].value) == 5


def test_corpus_page_on_scraped_files_names_them_and_says_which_years_are_unknown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """The bundled corpus files are named by number and hash: the table says what each is, and a
    listing date without a year ("Jul 14") says the year is unknown instead of passing for a full date."""
    listing, untitled = DEFAULT_CORPUS / "003_48a1b423d80b1307.txt", DEFAULT_CORPUS / "000_a558503d1355f8be.txt"
    _configure(monkeypatch, tmp_path / "index", [listing, untitled], RAG_EMBED_BACKEND="hashing")
    try:
        AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()  # the chat page builds the index
        table = _page("corpus.py").dataframe[0].value
    finally:
        st.cache_resource.clear()
    assert set(table["source"]) == {f"Daily Papers, Dec 8 ({listing.name})", f"Untitled abstracts ({untitled.name})"}
    dates = table["date"].tolist()
    one_way = r"\d{4}-\d{2}-\d{2}|\d{4}|[A-Z][a-z]{2} \d{1,2} \((year unknown|listing page)\)|no known date"
    assert all(re.fullmatch(one_way, d) for d in dates), dates
    assert any(d.endswith("(year unknown)") for d in dates) and any(d[:4].isdigit() for d in dates), dates
    assert not table.isna().any().any() and "None" not in table.to_numpy().ravel().tolist()


LISTING = (
    "Daily Papers\n\nbyAK and the research community\n\nMar 11\n\nA Title\n\n" + "An abstract sentence. " * 20 + "\n"
)


@pytest.mark.parametrize(
    ("year", "raw", "iso", "listed", "shown"),
    [
        (2024, "2024-01-28", "2024-01-28", False, "2024-01-28"),
        (2023, "Jun 30, 2023", "2023-06-30", True, "2023-06-30"),
        (None, "Jul 14", "", True, "Jul 14 (year unknown)"),
        (None, "", "", True, "Mar 11 (listing page)"),
        (None, "", "", False, "no known date"),
        (2018, "2018", "", False, "2018"),
    ],
)
def test_a_card_shows_one_date_written_one_way_and_where_it_came_from(
    monkeypatch, tmp_path, year, raw, iso, listed, shown
):
    """The paper's own date (ISO, or its year), its day without a year, else the day of the listing page it was
    scraped from: never "no date" beside a listing page's date."""
    monkeypatch.syspath_prepend(str(UI_DIR))
    from common import paper_caption, shown_date

    page = tmp_path / "004_listing.txt"
    page.write_text(LISTING if listed else "Abstract: An abstract sentence.\n")
    paper = Paper("p", "t", "a", date_raw=raw, date=iso, year=year, sources=[page.name], paths=[str(page)])
    assert shown_date(paper) == shown
    assert paper_caption(paper).startswith(shown + " · ")


def test_the_time_of_the_last_ingest_is_short(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(UI_DIR))
    from rag.console import short_time

    assert re.fullmatch(r"2024-03-1[01] \d{2}:\d{2}", short_time("2024-03-11T00:05:09+00:00"))  # in local time
    assert short_time(None) == "never"


def _eval_page(monkeypatch: pytest.MonkeyPatch, root: Path) -> AppTest:
    """The Eval page of a UI started in `root`: it finds reports in root/eval/out, where `rag eval` writes by default."""
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(root)
    at = _page("eval_report.py")
    assert at.title[0].value == "Eval report"
    return at


def _assert_report(at: AppTest, results: dict) -> None:
    assert not at.info, [i.value for i in at.info]
    assert at.caption[0].value.startswith(
        f"{results['mode']} ({results['model']}) · {len(results['questions'])} questions"
    )
    headers = [s.value for s in at.subheader]
    wrong = sum(1 for q in results["questions"] if not q["correct"])
    assert headers == ["Answers", "Retrieval", f"Answered wrongly ({wrong})"], headers
    assert len(at.dataframe) == 3
    answers = at.dataframe[0].value
    assert list(answers["group"]) == list(results["summary"]["answers"])
    assert not [c for c in answers.columns if c.startswith("refusal_")], list(answers.columns)  # a line of their own
    for table in at.dataframe:
        assert "None" not in table.value.to_numpy().ravel().tolist()


def test_eval_page_without_a_report(small_app_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    at = _eval_page(monkeypatch, tmp_path / "root")
    info = [i.value for i in at.info]
    assert len(info) == 1 and info[0].startswith(f"No report yet: none in {tmp_path / 'root' / 'eval' / 'out'},"), info
    assert "rag eval" in info[0]
    assert not at.dataframe

    elsewhere = tmp_path / "reports" / "run1"
    shutil.copytree(UI_FIXTURES / "eval_out", elsewhere)
    at.text_input(key="eval_folder_typed").input(str(elsewhere)).run()
    assert not at.exception, [e.value for e in at.exception]
    _assert_report(at, json.loads((elsewhere / "results.json").read_text()))

    at.text_input(key="eval_folder_typed").input(str(tmp_path / "reports")).run()
    assert [i.value for i in at.info] == [
        f"No report in {tmp_path / 'reports'}: it has no results.json. Type the folder `rag eval --out` wrote."
    ]


def test_eval_page_opens_the_report_rag_eval_last_wrote(
    small_app_env, small_index, embedder, make_settings, monkeypatch, tmp_path
):
    """`rag eval --out DIR` names DIR in the data dir; the page offers it first, before the default eval/out."""
    from rag.answer import make_engine
    from rag.dev.evaluate import LAST_REPORT, Question, timed_run
    from rag.retrieve import Retriever
    from rag.store import open_store

    settings = make_settings(data_dir=small_index, corpus_paths=[SMALL])
    engine = make_engine(settings, Retriever(settings, embedder, open_store(settings)))
    out = tmp_path / "somewhere" / "else"
    try:
        result, _ = timed_run(engine, [Question("q-fp8", FP8_QUESTION, "multi", [], ["FP8"])], out)
        shutil.copytree(UI_FIXTURES / "eval_out", tmp_path / "root" / "eval" / "out")
        at = _eval_page(monkeypatch, tmp_path / "root")
    finally:
        (small_index / LAST_REPORT).unlink(missing_ok=True)  # the index is shared by this module's tests
    assert at.selectbox(key="eval_folder").options == [str(out), str(tmp_path / "root" / "eval" / "out")]
    _assert_report(at, result)


def test_eval_page_renders_a_report(small_app_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    out = tmp_path / "root" / "eval" / "out"
    shutil.copytree(UI_FIXTURES / "eval_out", out)
    results = json.loads((out / "results.json").read_text())
    at = _eval_page(monkeypatch, tmp_path / "root")
    _assert_report(at, results)
    assert "4.2 s" in at.caption[0].value  # from timing.json
    answers = at.dataframe[0].value
    assert answers.loc[answers["group"] == "all", "acc"].iloc[0] == "0.500"  # 1 of the 2 questions is wrong
    assert "Refusals: no unanswerable questions in this set" in [c.value for c in at.caption]
    wrong = at.dataframe[2].value
    assert list(wrong["id"]) == ["q-weather"]


def test_eval_page_gives_refusal_figures_a_line(small_app_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    out = tmp_path / "root" / "eval" / "out"
    shutil.copytree(UI_FIXTURES / "eval_out", out)
    results = json.loads((out / "results.json").read_text())
    results["summary"]["answers"]["all"].update(refusal_precision=0.75, refusal_recall=None)
    (out / "results.json").write_text(json.dumps(results))
    at = _eval_page(monkeypatch, tmp_path / "root")
    _assert_report(at, results)
    assert "Refusals: precision 0.750" in [c.value for c in at.caption]


# ------------------------------------------------------------------ a corpus from a single year


def test_year_filter_on_a_corpus_from_a_single_year(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """When every dated paper has the same year, the year filter is a checkbox for that year, not a
    slider with min == max (which Streamlit rejects, killing the page): the chat stays usable."""
    corpus = UI_FIXTURES / "one_year.jsonl"  # 2 papers, both from 2021
    _configure(monkeypatch, tmp_path / "index", [corpus])
    try:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()  # the app ingests on first run
        assert not at.exception, [e.value for e in at.exception]
        corpus_line = " ".join(m.value for m in at.sidebar.markdown)
        assert "2 papers in 1 files" in corpus_line
        assert re.search(r"Last changed \d{4}-\d{2}-\d{2} \d{2}:\d{2}$", corpus_line), corpus_line  # no raw ISO stamp
        assert at.checkbox(key="use_years").label == "Only papers from 2021"
        at.checkbox(key="use_years").check().run()
        crashed = [e.value for e in at.exception]
        assert not crashed, f"ticking the year filter crashed the page: {crashed}"
        assert at.chat_input, "the chat input is gone"
        at = ask(at, "Which papers use a mixture of experts for translation?")
        assert subheaders(last_assistant(at))[0].startswith("[1] Sparse Mixture")
    finally:
        st.cache_resource.clear()


def test_source_card_links_to_the_paper_by_its_identifier_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A card of a paper with an arXiv id has a link button to arxiv.org; one without an identifier has none."""
    formats = Path(__file__).resolve().parent / "fixtures" / "formats"
    _configure(monkeypatch, tmp_path / "index", [formats], RAG_EMBED_BACKEND="hashing")
    try:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()  # the app ingests on first run
        at = ask(at, "How fast does glacier moss respiration recover?")
        reply = last_assistant(at)
        assert subheaders(reply)[0] == "[1] Respiration of glacier moss under repeated freeze\\-thaw cycles"
        buttons = reply.get("link_button")
        assert buttons and buttons[0].proto.url == "https://arxiv.org/abs/2104.05678"
        cards = len(subheaders(reply))
        linked_cards = [s for s in at.session_state["messages"][0]["answer"].sources[:cards] if s.paper.link]
        assert len(buttons) == len(linked_cards)
    finally:
        st.cache_resource.clear()


# ------------------------------------------------------------------ no link from corpus text

LINKED_ABSTRACT = (
    "We release FastGrad, a gradient compression library for distributed training, at "
    "https://github.com/example/fastgrad with benchmarks at www.example.org/fastgrad; questions go to "
    "team@example.org. FastGrad cuts traffic by 40% per step."
)
# What GitHub-flavoured Markdown links in a text node once its escapes are undone (mdast-util-gfm-autolink-literal).
GFM_URL = re.compile(r"(https?://|www(?=\.))[-.\w]+[^ \t\r\n]*", re.I)
GFM_EMAIL = re.compile(r"[-.\w+]+@[-\w]+(?:\.[-\w]+)+")


def rendered_text(markdown: str) -> str:
    """The text a Markdown source shows: backslash escapes and entities undone."""
    import html

    return html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown))


def test_a_url_in_an_abstract_is_shown_as_text_not_a_link(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    corpus = tmp_path / "linked.jsonl"
    rows = [
        {"title": "FastGrad: Gradient Compression at https://fastgrad.example.org", "abstract": LINKED_ABSTRACT},
        {"title": "Coral Reef Bleaching", "abstract": "Mass coral bleaching events are hard to monitor. " * 3},
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _configure(monkeypatch, tmp_path / "index", [corpus], RAG_EMBED_BACKEND="hashing")
    try:
        at = ask(run_app(), "Where is the FastGrad gradient compression library released?")
    finally:
        st.cache_resource.clear()
    answer = last_assistant(at)
    shown = [m.value for m in answer.markdown] + [s.value for s in answer.subheader] + [c.value for c in answer.caption]
    texts = [rendered_text(value) for value in shown]
    plain = [text.replace("\u2060", "") for text in texts]
    assert any("https://github.com/example/fastgrad" in text and "team@example.org" in text for text in plain), shown
    assert any("FastGrad: Gradient Compression at https://fastgrad.example.org" in text for text in plain), shown
    links = [hit.group(0) for text in texts for hit in [*GFM_URL.finditer(text), *GFM_EMAIL.finditer(text)]]
    assert links == [], f"Markdown would link {links}"


def test_every_sentence_an_answer_quotes_from_a_paper_is_highlighted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(UI_DIR))
    from common import highlighted

    text = "First sentence. Second one here. Third and last."
    shown = highlighted(text, [(0, 15), (33, 48), (0, 15)])
    assert shown.count(":orange-background[") == 2
    assert ":orange-background[First sentence\\.]" in shown and ":orange-background[Third and last\\.]" in shown
    assert highlighted(text, []) == highlighted(text, [(5, 5)])  # nothing quoted, nothing marked
