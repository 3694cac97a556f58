"""The HTTP API (`rag serve`) as clients use it: the real openai client against uvicorn on 127.0.0.1,
over the small fixture index; schemathesis against the OpenAPI schema."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import openai
import pytest
import schemathesis
import uvicorn
from conftest import FakeLLM, free_port
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from rag.answer import Engine
from rag.api import ANSWER_THREADS, create_app, serve
from rag.errors import ConfigError, LLMError, QuestionError
from rag.types import Filters

FP8_Q = "How much did FP8 training improve throughput on Hopper GPUs?"
SPEECH_Q = "How can speech recognition work for low-resource languages with little transcribed audio?"
FOLLOW_UP = "By how much did it reduce the word error rate?"
OFF_TOPIC = "What is the best recipe for sourdough bread with rye flour?"
KEY = "test-api-key-5f3a9c"
LOAD_CLIENTS = 50
LIMITS = {"max_question_chars": 300, "api_max_body_bytes": 20_000, "api_max_k": 20}


@contextmanager
def live(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class WaitingLLM:
    """A ChatModel whose answers wait until `release` is set; `waiting` counts the answers held."""

    def __init__(self) -> None:
        self.name, self.endpoint = "waiting-fake", "fake://waiting"
        self.release = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def yes_probability(self, messages: list[dict[str, str]]) -> None:
        return None  # no verdict: the offline judgement stands, and the answers go on to wait in `stream`

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        with self._lock:
            self.waiting += 1
        self.release.wait(120)
        yield "FP8 training raised throughput [1]."


@pytest.fixture(scope="module")
def api_settings(shared_index):
    return shared_index.settings.model_copy(update=LIMITS)


@pytest.fixture(scope="module")
def engine(api_settings, retriever) -> Engine:
    return Engine(api_settings, retriever, None)


@pytest.fixture(scope="module")
def base_url(api_settings, engine) -> Iterator[str]:
    with live(create_app(api_settings, engine)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="no-key-needed", max_retries=0, timeout=60)


def ask(
    client: openai.OpenAI, question: str, history: tuple[dict[str, str], ...] = (), **extra: Any
) -> tuple[Any, dict]:
    """A non-streamed completion and its extra fields (citations, search_results, rag)."""
    r = client.chat.completions.create(
        model="whatever", messages=[*history, {"role": "user", "content": question}], extra_body=extra or None
    )
    return r, r.model_extra


def without_timings(rag: dict) -> dict:
    return {k: v for k, v in rag.items() if k != "timings"}


# ---------------------------------------------------------------- answers


def test_answer_text_keeps_markers_and_sources_travel_in_n_order(client, engine, pid_of):
    r, extra = ask(client, FP8_Q)
    rag = extra["rag"]
    assert r.model == engine.model == "extractive (no LLM)"
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == rag["answer"] and "[1]" in rag["answer"]
    assert not rag["refused"] and rag["citations"][0]["paper_id"] == pid_of("FP8 Formats Accelerate")
    sources = rag["sources"]
    cited_ns = sorted({c["n"] for c in rag["citations"]})
    assert extra["citations"] == [sources[n - 1]["title"] for n in cited_ns]  # only the cited ones; no link here
    assert [s["title"] for s in extra["search_results"]] == [s["title"] for s in sources]
    for n, (result, source) in enumerate(zip(extra["search_results"], sources), 1):
        assert result["url"] is None and result["date"] == (source["date"] or None)
        quotes = [c["quote"] for c in rag["citations"] if c["n"] == n]
        if quotes:
            assert result["snippet"] == quotes[0]
        else:  # the abstract's first sentence
            assert source["abstract"].startswith(result["snippet"]) and len(result["snippet"]) < len(source["abstract"])
    cited = rag["citations"][0]
    abstract = sources[cited["n"] - 1]["abstract"]
    assert abstract[cited["quote_start"] : cited["quote_end"]] == cited["quote"] and cited["supported"]
    assert extra["search_results"][cited["n"] - 1]["snippet"] == cited["quote"]
    assert "1.4x" in cited["quote"]


@pytest.mark.slow
def test_answer_is_the_one_rag_ask_json_prints(client, shared_index, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env.update(RAG_DATA_DIR=str(shared_index.settings.data_dir), ANONYMIZED_TELEMETRY="False")
    proc = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", "--json", FP8_Q],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    _, extra = ask(client, FP8_Q)
    assert without_timings(extra["rag"]) == without_timings(json.loads(proc.stdout))


def test_stream_sends_text_pieces_then_sources_in_the_finishing_chunk(client):
    stream = client.chat.completions.create(
        model="whatever", messages=[{"role": "user", "content": FP8_Q}], stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert all("rag" not in (c.model_extra or {}) for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    final = chunks[-1].model_extra
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == final["rag"]["answer"] and "[1]" in text
    _, extra = ask(client, FP8_Q)
    assert without_timings(final["rag"]) == without_timings(extra["rag"])
    assert final["citations"] == extra["citations"] and final["search_results"] == extra["search_results"]


def test_a_follow_up_about_it_reads_the_paper_the_earlier_answer_named(client, pid_of):
    """The API's messages carry only text: the earlier answer's paper is found by the title it names."""
    first, _ = ask(client, SPEECH_Q)
    history = (
        {"role": "user", "content": SPEECH_Q},
        {"role": "assistant", "content": first.choices[0].message.content},
    )
    r, extra = ask(client, FOLLOW_UP, history)
    rag = extra["rag"]
    assert rag["question"] == FOLLOW_UP and len({c["paper_id"] for c in rag["citations"]}) == 1
    assert rag["citations"][0]["paper_id"] == pid_of("Self-Supervised Speech")
    assert "35%" in r.choices[0].message.content
    _, alone = ask(client, FOLLOW_UP)
    assert alone["rag"]["standalone_question"] == FOLLOW_UP


def test_year_and_source_filters_and_k_come_as_extra_body_fields(client):
    _, extra = ask(client, "Which papers train neural networks?", year_from=2019, year_to=2021, k=3)
    sources = extra["rag"]["sources"]
    assert 1 <= len(sources) <= 3 and all(2019 <= s["year"] <= 2021 for s in sources)
    _, extra = ask(client, "Which papers train neural networks?", sources=["science_and_robotics.jsonl"])
    assert extra["rag"]["sources"] and all(
        s["sources"] == ["science_and_robotics.jsonl"] for s in extra["rag"]["sources"]
    )


def test_filters_that_match_nothing_and_off_topic_questions_are_refused(client):
    r, extra = ask(client, FP8_Q, year_from=1990, year_to=1991)
    assert extra["rag"]["refused"] and "No paper matches the filters" in r.choices[0].message.content
    r, extra = ask(client, OFF_TOPIC)
    assert extra["rag"]["refused"] and r.choices[0].message.content.startswith("The corpus does not answer this.")
    assert extra["citations"] == [] and extra["rag"]["sources"]  # a refusal cites nothing


@pytest.mark.slow
def test_fifty_concurrent_clients_get_the_serial_answers(base_url, client):
    """50 clients start together, each asking one question and then searching for it: every answer and every
    hit list equals the one the same request got alone."""
    questions = [FP8_Q, SPEECH_Q, OFF_TOPIC, "Which papers predict protein structure?", FOLLOW_UP]

    def search(q: str) -> dict:
        return httpx.post(f"{base_url}/v1/search", json={"query": q}, timeout=60).json()

    alone = [(without_timings(ask(client, q)[1]["rag"]), search(q)) for q in questions]
    start = threading.Barrier(LOAD_CLIENTS)

    def one_client(i: int) -> tuple[dict, dict]:
        start.wait(timeout=60)
        q = questions[i % len(questions)]
        return without_timings(ask(client, q)[1]["rag"]), search(q)

    began = time.monotonic()
    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        together = list(pool.map(one_client, range(LOAD_CLIENTS)))
    assert together == [alone[i % len(questions)] for i in range(LOAD_CLIENTS)]
    assert time.monotonic() - began < 120


@pytest.mark.slow
def test_answers_waiting_on_a_slow_llm_leave_search_free(api_settings, retriever):
    """More answers than the server has answer threads all wait on the LLM; a search is still served at once."""
    llm = WaitingLLM()
    body = {"messages": [{"role": "user", "content": FP8_Q}]}
    with (
        live(create_app(api_settings, Engine(api_settings, retriever, llm))) as url,
        ThreadPoolExecutor(ANSWER_THREADS + 5) as pool,
    ):
        try:
            held = [
                pool.submit(httpx.post, f"{url}/v1/chat/completions", json={**body, "stream": i % 2 == 0}, timeout=180)
                for i in range(ANSWER_THREADS + 5)
            ]
            deadline = time.monotonic() + 120
            while llm.waiting < ANSWER_THREADS:
                assert time.monotonic() < deadline, f"only {llm.waiting} answers reached the LLM"
                time.sleep(0.1)
            started = time.monotonic()
            r = httpx.post(f"{url}/v1/search", json={"query": FP8_Q}, timeout=30)
            assert r.status_code == 200 and r.json()["results"] and time.monotonic() - started < 10
            assert not any(f.done() for f in held)
        finally:
            llm.release.set()
        assert [f.result().status_code for f in held] == [200] * len(held)
        assert all("[1]" in f.result().text for f in held)


def test_conversation_pairs_each_user_message_with_the_reply_after_it():
    from rag.api import ChatMessage, conversation_of

    messages = [
        ChatMessage(role=r, content=c)
        for r, c in [
            ("system", "be brief"),
            ("user", "A?"),
            ("assistant", "a [1]"),
            ("user", "B?"),
            ("user", "C?"),
            ("tool", "t"),
        ]
    ] + [ChatMessage(role="user", content=[{"type": "text", "text": "D "}, {"type": "text", "text": "then?"}])]
    question, history = conversation_of(messages)
    assert question == "D then?"
    assert [(t.question, t.answer) for t in history.turns] == [("A?", "a [1]"), ("B?", ""), ("C?", "")]


# ---------------------------------------------------------------- the other routes


def test_models_names_the_answering_model(client, engine):
    assert [m.id for m in client.models.list().data] == [engine.model]


def test_search_returns_hits_as_rag_search_json(base_url, retriever):
    from rag.types import Filters

    body = {"query": "protein structure from amino acid sequence", "k": 4, "year_from": 2018, "method": "bm25"}
    r = httpx.post(f"{base_url}/v1/search", json=body, timeout=60)
    assert r.status_code == 200
    expected = [h.to_json() for h in retriever.search(body["query"], 4, Filters(year_from=2018), method="bm25")]
    assert r.json() == {"results": expected} and expected


def test_category_and_venue_filters_leave_out_papers_without_them(base_url):
    for field, value in (("categories", ["cs.LG"]), ("venues", ["Nature"])):  # the small corpus records neither
        r = httpx.post(f"{base_url}/v1/search", json={"query": "protein structure", field: value}, timeout=60)
        assert r.status_code == 200 and r.json() == {"results": []}


def test_paper_by_id_and_unknown_id(base_url, pid_of):
    pid = pid_of("FP8 Formats Accelerate")
    r = httpx.get(f"{base_url}/v1/papers/{pid}", timeout=30)
    assert r.status_code == 200 and r.json()["paper_id"] == pid and r.json()["year"] == 2023 and "score" not in r.json()
    r = httpx.get(f"{base_url}/v1/papers/0000000000000000", timeout=30)
    assert (
        r.status_code == 404
        and r.json()["error"]["type"] == "not_found_error"
        and "0000000000000000" in r.json()["error"]["message"]
    )


def test_health_needs_nothing(base_url):
    assert httpx.get(f"{base_url}/health", timeout=10).json() == {"status": "ok"}


def test_serve_says_in_one_line_that_the_port_is_taken(api_settings):
    said: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"^cannot listen on 127.0.0.1:{port} \(Address already in use\); choose another --port"
        ):
            serve(api_settings, "127.0.0.1", port, say=said.append)
    assert said == []


# ---------------------------------------------------------------- limits and errors


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": [{"role": "user", "content": "x" * 301}]}, "RAG_MAX_QUESTION_CHARS"),
        ({"messages": [{"role": "user", "content": FP8_Q}], "k": 21}, "RAG_API_MAX_K"),
        ({"messages": [{"role": "user", "content": FP8_Q}], "k": 0}, "k: Input should be greater than or equal to 1"),
        ({"messages": [{"role": "user", "content": FP8_Q}], "year_from": 2024, "year_to": 2020}, "swap them"),
        (
            {"messages": [{"role": "user", "content": FP8_Q}], "year_to": False},
            "year_to: Input should be a valid integer",
        ),
        ({"messages": [{"role": "user", "content": FP8_Q}], "k": "5"}, "k: Input should be a valid integer"),
        ({"messages": [{"role": "system", "content": FP8_Q}]}, "no user message"),
        ({"messages": [{"role": "user", "content": "   "}]}, "question is empty"),
        ({"messages": []}, "messages: List should have at least 1 item"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages.0.content",
        ),
        (
            {"messages": [{"role": "user", "content": "FP8 \ud800 training"}]},
            "messages.0.content: Value error, character 4 is an unpaired surrogate",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "speech \udc00"}]},
                    {"role": "user", "content": "and?"},
                ]
            },
            "messages.0.content: Value error, character 7 is an unpaired surrogate",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x" * 301},
                    {"role": "assistant", "content": "a"},
                    {"role": "user", "content": "and then?"},
                ]
            },
            "the earlier user message 1 has 301 characters, more than the 300 allowed (RAG_MAX_QUESTION_CHARS)",
        ),
        ([{"role": "user", "content": FP8_Q}], "the request body must be a JSON object"),
    ],
)
def test_bad_requests_are_400_with_one_line_saying_what_is_wrong(base_url, body, needle):
    """Bodies go as ASCII JSON, so an unpaired surrogate arrives escaped, as a client's JSON encoder would send it."""
    r = httpx.post(
        f"{base_url}/v1/chat/completions",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and needle in error["message"] and "\n" not in error["message"]


def test_openai_client_raises_bad_request_with_the_message(client):
    with pytest.raises(openai.BadRequestError, match="RAG_API_MAX_K"):
        ask(client, FP8_Q, k=500)


def test_broken_json_and_oversized_bodies(base_url):
    r = httpx.post(
        f"{base_url}/v1/search", content=b'{"query": ', headers={"content-type": "application/json"}, timeout=30
    )
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{base_url}/v1/search", json={"query": "a " * 15_000}, timeout=30)
    assert r.status_code == 413 and "RAG_API_MAX_BODY_BYTES" in r.json()["error"]["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the size is counted as the body arrives
        yield b'{"query": "'
        for _ in range(30):
            yield b"a" * 1000
        yield b'"}'

    r = httpx.post(f"{base_url}/v1/search", content=chunked(), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413


def test_search_wants_utf8_text_in_a_json_object(base_url):
    for body, needle in [
        ('{"query": "FP8 \\ud800"}', "query: Value error, character 4 is an unpaired surrogate"),
        ('{"query": "FP8", "sources": ["a\\udfff"]}', "sources.0: Value error, character 1 is an unpaired surrogate"),
    ]:
        r = httpx.post(f"{base_url}/v1/search", content=body, headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["message"].startswith(needle), r.text
    r = httpx.post(
        f"{base_url}/v1/search",
        content=b'{"query": "FP8 \xff"}',
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(
        f"{base_url}/v1/search", content='{"query": "FP8"}', headers={"content-type": "text/plain"}, timeout=30
    )
    assert r.status_code == 400 and "Content-Type: application/json" in r.json()["error"]["message"]


def test_cors_is_off(base_url):
    """No route answers a browser's cross-origin preflight, so pages on other sites cannot call the API."""
    r = httpx.options(
        f"{base_url}/v1/search", headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"}
    )
    assert r.status_code == 405 and not any(h.startswith("access-control-") for h in r.headers)
    r = httpx.post(
        f"{base_url}/v1/search", json={"query": "FP8"}, headers={"Origin": "http://elsewhere.example"}, timeout=30
    )
    assert r.status_code == 200 and not any(h.startswith("access-control-") for h in r.headers)


def test_an_llm_list_streams_its_first_line_while_the_model_still_reads_the_last_paper(api_settings, retriever):
    question = "Which papers let handsets learn without sending data away?"
    hits = retriever.search(question, api_settings.list_k)
    first, last = hits[0].paper.display_title, hits[-1].paper.display_title
    release = threading.Event()

    def verdict(messages: list[dict[str, str]]) -> float:
        if last in messages[-1]["content"]:
            release.wait(60)  # the model is slow on the last paper
        return 0.9 if first in messages[-1]["content"] else 0.1

    llm = FakeLLM(verdict=verdict)
    engine = Engine(api_settings.model_copy(update={"llm_concurrency": 4}), retriever, llm)
    assert not engine.offline.anchored(question, hits)  # else the model is not asked at all
    with live(create_app(api_settings, engine)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="no-key-needed", max_retries=0, timeout=60)
        try:
            stream = client.chat.completions.create(
                model="whatever", messages=[{"role": "user", "content": question}], stream=True
            )
            shown = ""
            for chunk in stream:
                shown += (chunk.choices[0].delta.content or "") if chunk.choices else ""
                if "[1]" in shown:
                    break
            assert shown.startswith(f"- {first}") and not release.is_set()
        finally:
            release.set()
    assert len(llm.judged) == len(hits)


@pytest.fixture(scope="module")
def failing(api_settings, retriever):
    """Servers whose LLM fails: before any text (LLMError), mid-answer (LLMError), and with a bug (RuntimeError)."""
    engines = {
        "down": Engine(
            api_settings,
            retriever,
            FakeLLM(then=[LLMError("cannot reach the LLM endpoint http://x; start the server")]),
        ),
        "mid": Engine(
            api_settings,
            retriever,
            FakeLLM(then=["FP8 training ", LLMError("the answer stopped before it finished; try again")]),
        ),
        "bug": Engine(
            api_settings,
            retriever,
            FakeLLM(then=[RuntimeError("internal detail at /srv/secret sk-live-abcdefgh12345")]),
        ),
        "bug_mid": Engine(
            api_settings, retriever, FakeLLM(then=["FP8 training ", RuntimeError("internal detail at /srv/secret")])
        ),
    }
    with ExitStack() as stack:
        yield {name: stack.enter_context(live(create_app(api_settings, engine))) for name, engine in engines.items()}


def test_llm_down_gives_the_extractive_answer_with_a_notice_in_both_modes(failing):
    client = openai.OpenAI(base_url=f"{failing['down']}/v1", api_key="x", max_retries=0, timeout=30)
    plain = client.chat.completions.create(model="m", messages=[{"role": "user", "content": FP8_Q}])
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": FP8_Q}], stream=True))
    for rag in (plain.model_extra["rag"], chunks[-1].model_extra["rag"]):
        assert rag["mode"] == "extractive" and not rag["refused"] and rag["citations"], rag
        assert "cannot reach the LLM endpoint http://x" in rag["notice"] and "\n" not in rag["notice"]
    assert plain.choices[0].message.content == plain.model_extra["rag"]["answer"]


def test_failure_mid_stream_ends_the_stream_with_an_error_event(failing):
    client = openai.OpenAI(base_url=f"{failing['mid']}/v1", api_key="x", max_retries=0, timeout=30)
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": FP8_Q}], stream=True)
    pieces = []
    with pytest.raises(openai.APIError, match="stopped before it finished"):
        for chunk in stream:
            pieces.append(chunk.choices[0].delta.content)
    assert pieces == ["FP8 training "]


def test_a_bug_is_a_generic_500_that_reveals_nothing(failing):
    r = httpx.post(
        f"{failing['bug']}/v1/chat/completions", json={"messages": [{"role": "user", "content": FP8_Q}]}, timeout=30
    )
    assert r.status_code == 500
    assert r.json() == {
        "error": {"message": "internal server error; the server log has the details", "type": "server_error"}
    }
    r = httpx.post(
        f"{failing['bug']}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": FP8_Q}], "stream": True},
        timeout=30,
    )
    assert r.status_code == 500 and "secret" not in r.text and "Traceback" not in r.text


def test_a_bug_mid_stream_is_a_generic_error_event(failing):
    r = httpx.post(
        f"{failing['bug_mid']}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": FP8_Q}], "stream": True},
        timeout=30,
    )
    events = [json.loads(line.removeprefix("data: ")) for line in r.text.splitlines() if line.startswith("data: {")]
    assert r.status_code == 200 and events[0]["choices"][0]["delta"]["content"] == "FP8 training "
    assert events[-1] == {
        "error": {"message": "internal server error; the server log has the details", "type": "server_error"},
        "status": 500,
    }
    assert r.text.endswith("data: [DONE]\n\n") and "secret" not in r.text and "Traceback" not in r.text


# ---------------------------------------------------------------- the key


@pytest.fixture(scope="module")
def keyed_url(api_settings, engine) -> Iterator[str]:
    with live(create_app(api_settings.model_copy(update={"api_key": SecretStr(KEY)}), engine)) as url:
        yield url


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-123456"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": f"Bearer {KEY}x"},
    ],
)
@pytest.mark.parametrize(
    "route",
    [
        "GET /v1/models",
        "POST /v1/search",
        "POST /v1/chat/completions",
        "GET /v1/papers/x",
        "GET /openapi.json",
        "GET /docs",
    ],
)
def test_every_route_but_health_wants_the_key(keyed_url, route, headers):
    method, path = route.split()
    r = httpx.request(
        method, keyed_url + path, headers=headers, json={"query": "x"} if method == "POST" else None, timeout=30
    )
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "authentication_error" and "RAG_API_KEY" in r.json()["error"]["message"]
    assert "wrong-key" not in r.text and KEY not in r.text


def test_right_key_works_and_health_is_open(keyed_url):
    assert httpx.get(f"{keyed_url}/health", timeout=10).status_code == 200
    client = openai.OpenAI(base_url=f"{keyed_url}/v1", api_key=KEY, max_retries=0, timeout=60)
    r, extra = ask(client, FP8_Q)
    assert "[1]" in r.choices[0].message.content and extra["rag"]["citations"]
    with pytest.raises(openai.AuthenticationError):
        ask(openai.OpenAI(base_url=f"{keyed_url}/v1", api_key="wrong", max_retries=0, timeout=60), FP8_Q)


# ---------------------------------------------------------------- the schema


def test_every_schema_field_is_described(base_url):
    schema = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    assert set(schema["paths"]) == {
        "/health",
        "/v1/chat/completions",
        "/v1/search",
        "/v1/papers/{paper_id}",
        "/v1/models",
    }
    undocumented = [
        f"{name}.{field}"
        for name, model in schema["components"]["schemas"].items()
        for field, spec in model.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undocumented == []
    assert "ChatCompletionChunk" in schema["components"]["schemas"]


def test_schema_states_this_servers_limits(base_url):
    models = httpx.get(f"{base_url}/openapi.json", timeout=30).json()["components"]["schemas"]
    assert [models[m]["properties"]["k"]["anyOf"][0]["maximum"] for m in ("ChatRequest", "SearchRequest")] == [
        LIMITS["api_max_k"]
    ] * 2
    assert models["SearchRequest"]["properties"]["query"]["maxLength"] == LIMITS["max_question_chars"]
    assert models["ChatRequest"]["properties"]["messages"]["contains"]["properties"]["role"] == {"const": "user"}


def test_docs_page_shows_every_route_and_field_and_loads_nothing_from_elsewhere(base_url):
    from html import escape

    schema = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    r = httpx.get(f"{base_url}/docs", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert not any(fetch in page for fetch in ("<script", "src=", "href='http", "@import", "url("))
    for path, ops in schema["paths"].items():
        assert all(f"<code>{method.upper()} {path}</code>" in page for method in ops)
    for name, model in schema["components"]["schemas"].items():
        table = page.split(f"<h2 id='{name}'>", 1)[1].split("<h2", 1)[0]
        for field, spec in model.get("properties", {}).items():
            assert f"<code>{field}</code>" in table and escape(spec["description"]) in table, f"{name}.{field}"


TAKES_INPUT = ["POST /v1/chat/completions", "POST /v1/search", "GET /v1/papers/{paper_id}"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_server_error(api_settings, engine, mode):
    """Requests generated from the schema for each operation (valid ones, then invalid ones), in-process over ASGI."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(api_settings, engine))
    operations = {op.label: op for op in (result.ok() for result in schema.get_all_operations())}
    assert sorted(operations) == sorted(TAKES_INPUT + ["GET /v1/models", "GET /health"])
    for label in operations if mode.is_positive else TAKES_INPUT:  # nothing to make invalid in a request without input

        @given(case=operations[label].as_strategy(mode))
        @settings(
            max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        check()


def test_the_api_and_the_engine_refuse_a_long_question_at_one_limit_with_one_message(base_url, engine):
    """One setting bounds a question at every door: what passes the API's check also passes the engine's."""
    limit = engine.settings.max_question_chars
    r = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x" * (limit + 1)}]},
        timeout=30,
    )
    with pytest.raises(QuestionError) as refused:
        engine.ask("x" * (limit + 1))
    assert r.status_code == 400 and r.json()["error"]["message"] == str(refused.value)
    fits = "x" * limit
    engine.validate(fits, Filters(), None)  # what the API lets through, the engine takes


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b'{"messages": [{"role": "user", "content": "hi"}', "not valid JSON: Expecting ',' delimiter at character 47"),
        ('{"messages": [{"role": "user", "content": "caf\xe9"}]}'.encode("latin-1"), "send JSON encoded as UTF-8"),
    ],
)
def test_a_body_that_is_not_json_or_not_utf8_says_which_and_where(base_url, raw, said):
    r = httpx.post(
        f"{base_url}/v1/chat/completions", content=raw, headers={"content-type": "application/json"}, timeout=30
    )
    assert r.status_code == 400 and said in r.json()["error"]["message"], r.text
