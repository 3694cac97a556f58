"""No link from an abstract in the browser: a card may link only to what the app builds from a validated
identifier, never to a target written in the abstract's text (a bare URL, www., an e-mail address, a
Markdown link or an HTML anchor). A real `rag ui` and headless Chromium, as in test_browser.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from test_browser import ANSWER_TIMEOUT_MS, MESSAGE, Server, browser, open_chat, page, start_server, type_question  # noqa: F401

pytestmark = pytest.mark.slow  # a Streamlit server and Chromium

TARGETS = ("github.com/example", "example.org", "example.net", "mailto:")
ABSTRACT = (
    "We release FastGrad, a gradient compression library for distributed training, at https://github.com/example/fastgrad "
    "with benchmarks at www.example.org/fastgrad and questions to team@example.org. "
    'The [documentation](https://docs.example.net/fastgrad) and <a href="https://evil.example.net">a mirror</a> list the settings. '
    "FastGrad cuts gradient traffic by 40% per step."
)


@pytest.fixture(scope="module")
def linked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ui_links")
    corpus = root / "linked.jsonl"
    rows = [
        {"title": "FastGrad: Gradient Compression at https://fastgrad.example.org", "abstract": ABSTRACT},
        {
            "title": "Coral Reef Bleaching",
            "abstract": "Mass coral bleaching events are hard to monitor from the air. " * 3,
        },
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    yield from start_server(root, corpus)


def test_no_card_links_to_a_target_from_the_abstract(linked_server: Server, page) -> None:  # noqa: F811
    open_chat(page, linked_server)
    type_question(page, "Where is the FastGrad gradient compression library released?")
    card = page.locator("h3#src-0-1")
    card.wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    page.wait_for_timeout(500)
    answer = page.locator(MESSAGE).nth(1)
    assert "github.com/example/fastgrad" in answer.inner_text()  # the abstract is shown, as text
    hrefs = page.locator("a").evaluate_all("links => links.map(a => a.href)")
    assert not [h for h in hrefs if any(t in h for t in TARGETS)], hrefs
    assert not page.js_errors, page.js_errors
