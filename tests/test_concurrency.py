"""One engine, many threads: 20 `ask` calls at once (as the UI and the HTTP API make them) must all
succeed and give exactly the answers the same questions get one at a time, extractive and with an
LLM endpoint over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import pytest
from test_endpoints import FakeEndpoint
from test_endpoints import settings as endpoint_settings

from rag.answer import Engine
from rag.llm import OpenAIChat
from rag.types import Filters

QUESTIONS = [
    "What helps speech recognition in low-resource languages?",
    "How is federated learning kept private on keyboards?",
    "Which papers are about machine translation?",
    "How do robots learn to grasp objects?",
    "What improves weather forecasting?",
    "Which papers report results on protein structure?",
    "How many papers are from 2022?",
    "What does the paper on speech representations report?",
    "Which papers study language models?",
    "What is FP4 training?",  # a refusal: no paper mentions FP4
    "Summarize the work on translation without parallel data.",
    "Which paper has the most authors?",
]
THREADS = 20


def answered(engine: Engine, question: str) -> dict:
    """The checked answer as `rag ask --json` prints it, minus timings, and the streamed text."""
    stream = engine.ask_stream(question, Filters(), None)
    pieces: list[str] = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as done:
            out = done.value.to_json()
            break
    out.pop("timings", None)
    out["streamed"] = "".join(pieces)
    return out


def all_at_once(engine: Engine, questions: list[str]) -> list[dict]:
    """Every question on its own thread, released together by a barrier so that they really overlap."""
    barrier = threading.Barrier(len(questions))

    def run(question: str) -> dict:
        barrier.wait(timeout=60)
        return answered(engine, question)

    with ThreadPoolExecutor(max_workers=len(questions)) as pool:
        return list(pool.map(run, questions, timeout=300))


class SlowChat(FakeEndpoint):
    """The fake endpoint taking half a second per answer, as a real model does, so that concurrent calls overlap there."""

    def _answer(self, h: BaseHTTPRequestHandler, mode: str, number: int, body: dict) -> None:
        time.sleep(0.5)
        super()._answer(h, mode, number, body)


@pytest.fixture
def llm_endpoint() -> Iterator[FakeEndpoint]:
    server = SlowChat()
    yield server
    server.close()


def batch() -> list[str]:
    return [QUESTIONS[i % len(QUESTIONS)] for i in range(THREADS)]


@pytest.mark.slow
def test_twenty_concurrent_extractive_asks_match_serial_answers(shared_index, retriever) -> None:
    engine = Engine(shared_index.settings, retriever, None)
    serial = {q: answered(engine, q) for q in QUESTIONS}
    questions = batch()
    for question, got in zip(questions, all_at_once(engine, questions)):
        assert got == serial[question], question
    assert any(not a["refused"] for a in serial.values()) and any(a["refused"] for a in serial.values())


@pytest.mark.slow
def test_twenty_concurrent_llm_asks_match_serial_answers(shared_index, retriever, llm_endpoint) -> None:
    model = OpenAIChat(
        "fake-model", llm_endpoint.base_url, "local-key", endpoint_settings(llm_timeout=20.0, llm_max_retries=0)
    )
    engine = Engine(shared_index.settings, retriever, model)
    serial = {q: answered(engine, q) for q in QUESTIONS}
    questions = batch()
    for question, got in zip(questions, all_at_once(engine, questions)):
        assert got == serial[question], question
    assert llm_endpoint.max_in_flight > 1  # the calls did overlap at the endpoint
