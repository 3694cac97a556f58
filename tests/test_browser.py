"""The UI end to end: a real `rag ui` server and headless Chromium driven by Playwright.

Needs Debian's Chromium and the `playwright` Python package (its own browser download does not
work offline, so it drives /usr/bin/chromium):

    apt-get update && apt-get install -y chromium chromium-driver
    .venv/bin/pip install playwright        # not `playwright install`

Every run writes screenshots of the first page (loading, then ready), an answer with its cards, a refusal,
the corpus page and the eval page to test-artifacts/ at the repo root (gitignored), each taken once the
test has checked what it shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SMALL, free_port, log_tail, stop, wait_for_ui

pytestmark = pytest.mark.slow  # a Streamlit server and Chromium

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
UI_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ui"
INJECTION = UI_FIXTURES / "injection.jsonl"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
INSTALL = (
    "install the browser stack with:\n"
    "    apt-get update && apt-get install -y chromium chromium-driver\n"
    "    .venv/bin/pip install playwright\n"
    "(do not run `playwright install`: the tests drive /usr/bin/chromium)"
)

CHAT_INPUT = '[data-testid="stChatInputTextArea"]'
MESSAGE = '[data-testid="stChatMessage"]'
SCROLLER = '[data-testid="stAppScrollToBottomContainer"]'  # the main column scrolls, not the document
VIEWPORT = {"width": 1280, "height": 420}  # short, so the first source card starts below the fold
FP8_QUESTION = "which papers report FP8 training speedups?"
FP8_TITLE = "FP8 Formats Accelerate Large Language Model Pretraining Without Loss of Accuracy"
INJECTION_QUESTION = "How does the cleaner remove inline markup from crawled web pages?"
UNANSWERABLE = "What is the capital of Australia?"
TALL = {"width": 1280, "height": 1000}  # a laptop window: the sidebar's buttons must fit without scrolling
FIRST_LOAD_TIMEOUT_MS = 120_000  # the first session loads the embedder (and may build the index)
ANSWER_TIMEOUT_MS = 60_000


def browser_stack_problem() -> str | None:
    problems = []
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} not found")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed")
    return f"browser tests need Chromium and Playwright: {'; '.join(problems)}; {INSTALL}" if problems else None


def test_browser_stack_is_installed():
    problem = browser_stack_problem()
    if problem:
        pytest.fail(problem)


# ------------------------------------------------------------------ the server


@dataclass
class Server:
    url: str
    log: Path
    start_seconds: float

    def log_tail(self) -> str:
        return log_tail(self.log)


def start_server(root: Path, corpus: Path) -> Iterator[Server]:
    """`rag ui` on a free port with its own empty index (the app builds it on first load), started in
    `root`, where it finds the eval report under eval/out."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env.update(RAG_DATA_DIR=str(root / "index"), RAG_CORPUS_PATHS=json.dumps([str(corpus)]))
    log = root / "streamlit.log"
    cmd = [sys.executable, "-m", "rag.cli", "ui", "--port", str(port)]
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    server = Server(f"http://127.0.0.1:{port}", log, 0.0)
    try:
        wait_for_ui(proc, server.url, log)
        server.start_seconds = time.perf_counter() - started
        print(f"\n[timing] streamlit start ({corpus.name}): Popen -> healthy in {server.start_seconds:.2f} s")
        yield server
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ui_small")
    shutil.copytree(UI_FIXTURES / "eval_out", root / "eval" / "out")
    yield from start_server(root, SMALL)


@pytest.fixture(scope="module")
def injection_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_server(tmp_path_factory.mktemp("ui_injection"), INJECTION)


@pytest.fixture(scope="module")
def browser():
    problem = browser_stack_problem()
    if problem:
        pytest.fail(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.js_errors = errors
    try:
        yield page
    finally:
        context.close()


def open_chat(page, server: Server) -> float:
    """Load the app and wait until the chat input is usable; returns the page.goto start time."""
    t0 = time.perf_counter()
    page.goto(server.url)
    try:
        page.locator(CHAT_INPUT).wait_for(state="visible", timeout=FIRST_LOAD_TIMEOUT_MS)
    except Exception:
        pytest.fail(f"no chat input after {FIRST_LOAD_TIMEOUT_MS / 1000:.0f} s; server log:\n{server.log_tail()}")
    return t0


def screenshot(page, name: str, full_page: bool = False) -> Path:
    """Save what the page shows now as test-artifacts/NAME.png, saying where, for a reviewer to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(shot), full_page=full_page)
    assert shot.stat().st_size > 10_000, f"{shot} is nearly empty"
    print(f"\n[screenshot] {shot}")
    return shot


def type_question(page, question: str) -> None:
    box = page.locator(CHAT_INPUT)
    box.fill(question)
    box.press("Enter")


# ------------------------------------------------------------------ tests


def test_the_first_page_shows_its_frame_while_the_engine_loads(small_server: Server, page):
    """The first visit loads the embedder and builds the index: the title and a loading notice show at once, so a
    screenshot taken early is not blank; then the chat input and the sidebar arrive, Start over in full view."""
    from playwright.sync_api import expect

    page.set_viewport_size(TALL)
    page.goto(small_server.url)
    expect(page.locator("h1")).to_have_text("Ask the abstracts", timeout=30_000)
    # How long the first load takes depends on the machine: under the title the page shows either its loading
    # state or the chat input (on a loaded machine the notice can take seconds to follow the title).
    loading = page.get_by_text(re.compile(r"Loading the embedding model|Loading the index|Reading the index"))
    expect(page.locator(CHAT_INPUT).or_(loading).first).to_be_visible(timeout=30_000)
    screenshot(page, "ui-loading")

    page.locator(CHAT_INPUT).wait_for(state="visible", timeout=FIRST_LOAD_TIMEOUT_MS)
    expect(page.get_by_role("button", name=FP8_QUESTION)).to_be_visible()
    expect(page.get_by_role("button", name="Start over")).to_be_in_viewport(ratio=1)
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("12 papers in 3 files")
    screenshot(page, "ui-first-page")
    assert not page.js_errors, page.js_errors


def test_a_refusal_names_its_closest_papers_without_cards(small_server: Server, page):
    from playwright.sync_api import expect

    page.set_viewport_size(TALL)
    open_chat(page, small_server)
    type_question(page, UNANSWERABLE)
    assistant = page.locator(MESSAGE).nth(1)
    expect(assistant).to_contain_text("The corpus does not answer this", timeout=ANSWER_TIMEOUT_MS)
    expect(assistant).to_contain_text("Closest papers (none is about the question):")
    expect(assistant.locator("li")).not_to_have_count(0)
    assert assistant.locator("h3").count() == 0, "a refusal shows no source card"
    screenshot(page, "ui-refusal")
    assert not page.js_errors, page.js_errors


def test_fp8_answer_and_citation_link_in_a_real_browser(small_server: Server, page):
    from playwright.sync_api import expect

    t0 = open_chat(page, small_server)
    ready = time.perf_counter() - t0
    type_question(page, FP8_QUESTION)
    t_asked = time.perf_counter()
    assistant = page.locator(MESSAGE).nth(1)
    # The answer's [1] is a link to its first source card.
    link = assistant.locator(
        '[data-testid="stMarkdownContainer"] a[href="#src-0-1"]', has_text="[1]"
    ).first  # one per quoted sentence
    link.wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    expect(assistant).to_contain_text(f"{FP8_TITLE}:")  # the answer line names the paper
    first_answer = time.perf_counter() - t0
    print(f"\n[timing] page load -> chat input ready: {ready:.2f} s")
    print(f"[timing] question submitted -> answer text: {time.perf_counter() - t_asked:.2f} s")
    print(f"[timing] page load -> first answer text: {first_answer:.2f} s")

    expect(page.locator(MESSAGE).nth(0)).to_contain_text(FP8_QUESTION)
    expect(assistant).to_contain_text("Extractive answer: sentences quoted from the abstracts, no LLM.")
    card = page.locator("h3#src-0-1")
    expect(card).to_have_text(f"[1] {FP8_TITLE}")
    expect(assistant.get_by_text("supported", exact=True)).to_be_visible()

    # Scroll back to the top (the app sticks to the bottom while it renders, so wait until it has
    # settled), so the card is below the fold; then follow the citation.
    page.wait_for_timeout(500)
    for _ in range(2):
        page.evaluate(f"document.querySelector('{SCROLLER}').scrollTop = 0")
        page.wait_for_timeout(300)
    before = card.bounding_box()
    assert before["y"] + before["height"] > VIEWPORT["height"], (
        f"the card was already in full view before the click: {before}"
    )
    link.click()
    page.wait_for_function("location.hash === '#src-0-1'", timeout=5_000)
    assert page.evaluate("location.hash") == "#src-0-1"
    expect(card).to_be_in_viewport(ratio=1)
    after = card.bounding_box()
    print(
        f"[layout] card heading top before the click: {before['y']:.0f} px, after: {after['y']:.0f} px "
        f"(viewport {VIEWPORT['height']} px)"
    )
    assert after["y"] < before["y"], "following the citation did not scroll to the card"

    # The example questions went when the first question was asked: none is left to click in vain.
    assert page.get_by_role("button", name=FP8_QUESTION).count() == 0

    page.set_viewport_size(TALL)  # room for the answer and its card in one picture
    page.wait_for_timeout(300)
    expect(card).to_be_in_viewport()
    screenshot(page, "ui-answer")
    assert not page.js_errors, page.js_errors


def overflowing_tables(page) -> list[dict]:
    """Tables whose columns are wider than the table: the reader would have to scroll sideways."""
    return page.evaluate(
        """[...document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller')]
             .map(s => ({scroll: s.scrollWidth, client: s.clientWidth}))
             .filter(s => s.scroll > s.client + 1)"""
    )


def test_pages_in_the_navigation_no_deploy_button_and_tables_that_fit(small_server: Server, page):
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1280, "height": 900})
    open_chat(page, small_server)
    nav = page.locator('[data-testid="stSidebarNav"]')
    names = [re.compile(rf"{name}$") for name in ("Ask", "Corpus", "Eval report")]  # after the icon
    expect(nav.locator("a")).to_have_text(names)
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
    assert page.get_by_role("button", name="Deploy").count() == 0

    nav.get_by_text("Corpus", exact=True).click()
    table = page.locator('[data-testid="stDataFrame"]')
    table.wait_for(state="visible", timeout=FIRST_LOAD_TIMEOUT_MS)
    expect(page.locator("h1")).to_have_text("Corpus")
    expect(page.get_by_text("12 papers, the 3 without a title last.")).to_be_visible()
    page.wait_for_timeout(1000)  # the grid draws its columns after the frame appears
    assert page.locator(".dvn-scroller").count() >= 1, "the table grid was not drawn"
    assert not overflowing_tables(page), overflowing_tables(page)
    box = table.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's tick box (header 35 px, rows 35 px)
    card = page.locator("h3#paper")
    expect(card).to_contain_text(
        FP8_TITLE, timeout=ANSWER_TIMEOUT_MS
    )  # titled papers first: the first file's first paper
    expect(page.get_by_text("2023-10-12 · language_and_systems.jsonl")).to_be_visible()  # one date, one way
    expect(page.get_by_text("Paper id")).to_have_count(0)
    expect(page.get_by_text("gold list")).to_have_count(0)
    card.scroll_into_view_if_needed()
    screenshot(page, "ui-corpus-card", full_page=True)

    page.get_by_label("Search the papers").fill("FP8")
    page.get_by_label("Search the papers").press("Enter")
    expect(page.get_by_text("1 of 12 papers match, best first.")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    page.wait_for_timeout(1000)
    screenshot(page, "ui-corpus")

    nav.get_by_text("Eval report", exact=True).click()
    expect(page.locator("h1")).to_have_text("Eval report", timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(3, timeout=ANSWER_TIMEOUT_MS)
    expect(page.get_by_text("Refusals: no unanswerable questions in this set")).to_be_visible()
    page.wait_for_timeout(1000)
    assert not overflowing_tables(page), overflowing_tables(page)
    screenshot(page, "ui-eval", full_page=True)

    # A page's own address goes through the same navigation (not a page list of file names).
    page.goto(f"{small_server.url}/corpus")
    expect(page.locator("h1")).to_have_text("Corpus", timeout=ANSWER_TIMEOUT_MS)
    expect(nav.locator("a")).to_have_text(names)
    assert not page.js_errors, page.js_errors


def test_html_in_the_corpus_and_the_question_is_shown_as_text(injection_server: Server, page):
    from playwright.sync_api import expect

    open_chat(page, injection_server)
    type_question(page, INJECTION_QUESTION)
    card = page.locator("h3#src-0-1")
    card.wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    page.wait_for_timeout(500)  # time for an injected onerror handler to fire, if there were one

    # The poisoned paper is the cited source; the engine stripped its markup before anything showed it.
    expect(card).to_contain_text("[1] Cleaning bold Markup from Crawled Web Pages")
    assert page.locator("h3#src-0-1 b").count() == 0
    body = page.locator('[data-testid="stVerticalBlock"]').filter(has=card).last  # the card's own block
    expect(body).not_to_contain_text("<script>")
    expect(body).not_to_contain_text("onerror")
    expect(page.locator(MESSAGE).nth(1).locator('[data-testid="stMarkdownContainer"]').first).not_to_contain_text(
        "<script>"
    )

    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator('img[src="x"]').count() == 0
    assert page.evaluate("[...document.scripts].filter(s => s.textContent.includes('__pwned')).length") == 0

    # The user's own question is untrusted too.
    question = '<img src=x onerror="window.__pwned=3"> does the cleaner handle <script> tags?'
    type_question(page, question)
    expect(page.locator(MESSAGE)).to_have_count(4, timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator(MESSAGE).nth(2)).to_contain_text(question)
    page.wait_for_timeout(500)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator('img[src="x"]').count() == 0
    print("\n[injection] second answer:", page.locator(MESSAGE).nth(3).inner_text()[:300].replace("\n", " | "))
    page.locator(MESSAGE).nth(2).evaluate("e => e.scrollIntoView({block: 'center'})")  # the HTML question, as text
    page.wait_for_timeout(300)
    screenshot(page, "ui-injection")
    assert not page.js_errors, page.js_errors
