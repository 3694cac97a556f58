"""Remote endpoints over real HTTP: a small OpenAI-compatible server on 127.0.0.1 that answers well or
misbehaves on purpose (429 storms, 500, 401 echoing the key, hangs, trickles, dropped connections,
malformed 200s), for both /v1/chat/completions and /v1/embeddings. Nothing in the openai client is mocked.

Each fault must surface as one line, without the key, within 2 x the configured timeout (retries
included). `pytest -s` prints how long each one took.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from conftest import LocalServer

from rag.config import Settings
from rag.embed import OpenAICompatibleEmbedding, make_embedder
from rag.errors import EmbedError, LLMError, UserError
from rag.llm import OpenAIChat, OutOfTime, bounded_client

KEY = "local-key-5f1e9c7b2d4a"  # no sk- prefix: only the endpoint code itself can keep it out of messages
TOKENS = ["FP8 ", "training ", "is ", "1.4x ", "faster [1]."]
MARGIN = 0.75  # seconds of slack over the 2 x timeout bound, for a loaded 2-core machine
SURFACED: list[tuple[str, str, float, float, int]] = []  # (route, fault, seconds, timeout, requests) for the table


# ------------------------------------------------------------------ the server


def fake_vector(text: str, dim: int) -> list[float]:
    """The server's embedding of `text`: derived from its hash, so each text has its own vector."""
    digest = hashlib.sha256(text.encode()).digest()
    return [digest[i % len(digest)] / 255.0 for i in range(dim)]


class FakeEndpoint(LocalServer):
    """OpenAI-compatible chat (streaming) and embeddings on 127.0.0.1, in one of these modes:

    ok, 429 (Retry-After: 1), 500 (its message echoes the key), 401 (echoes the key), hang,
    trickle (one token or byte per second), drop (closes without a response), malformed (200, not
    the API's format), wrong-dim (embeddings: 8 dimensions on the first request, 12 after).
    `script` holds modes for the next requests before `mode` applies again.
    """

    def __init__(self, mode: str = "ok", script: list[str] | None = None, delay: float = 0.0, dim: int = 8) -> None:
        self.mode = mode
        self.script = list(script or [])
        self.delay = delay  # seconds each good embeddings answer takes, to make concurrency visible
        self.dim = dim
        self.times: list[float] = []
        self.in_flight = self.max_in_flight = 0
        self.release = threading.Event()
        self._calls = threading.Lock()
        super().__init__()

    def respond(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        mode, number = self._next()
        try:
            self._answer(h, mode, number, json.loads(body or b"{}"))
        finally:
            with self._calls:
                self.in_flight -= 1

    @property
    def requests(self) -> int:
        return len(self.times)

    def _next(self) -> tuple[str, int]:
        with self._calls:
            self.times.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return (self.script.pop(0) if self.script else self.mode), len(self.times)

    def _answer(self, h: BaseHTTPRequestHandler, mode: str, number: int, body: dict) -> None:
        chat = h.path.endswith("/chat/completions")
        if mode == "drop":
            h.close_connection = True
        elif mode == "hang":
            self.release.wait(30)
            h.close_connection = True
        elif mode == "429":
            self._json(h, 429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}}, {"Retry-After": "1"})
        elif mode == "500":
            self._json(h, 500, {"error": {"message": f"backend crashed while using key {KEY}", "type": "server_error"}})
        elif mode == "401":
            sent = h.headers.get("Authorization", "").removeprefix("Bearer ")
            self._json(
                h, 401, {"error": {"message": f"Incorrect API key provided: {sent}", "type": "invalid_request_error"}}
            )
        elif mode == "malformed":
            self._send(
                h,
                200,
                "text/event-stream" if chat else "application/json",
                b"<html>this is not an OpenAI server</html>\n",
            )
        elif mode == "trickle":
            self._trickle(h, chat)
        elif chat:
            self._send(
                h,
                200,
                "text/event-stream",
                b"".join(self._event(t) for t in TOKENS) + self._event(None) + b"data: [DONE]\n\n",
            )
        else:
            time.sleep(self.delay)
            dim = (8 if number == 1 else 12) if mode == "wrong-dim" else self.dim
            data = [
                {"object": "embedding", "index": i, "embedding": fake_vector(t, dim)}
                for i, t in enumerate(body["input"])
            ]
            self._json(
                h,
                200,
                {
                    "object": "list",
                    "model": body["model"],
                    "data": data[::-1],
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                },
            )

    @staticmethod
    def _event(token: str | None) -> bytes:
        delta = {"content": token} if token is not None else {}
        chunk = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None if token is not None else "stop"}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def _trickle(self, h: BaseHTTPRequestHandler, chat: bool) -> None:
        """Headers at once, then one SSE token (chat) or one byte of JSON (embeddings) per second."""
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream" if chat else "application/json")
        payload = b'{"object": "list", "data": []}' * 10
        if not chat:
            h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        pieces = (
            [self._event(f"token{i} ") for i in range(30)]
            if chat
            else [payload[i : i + 1] for i in range(len(payload))]
        )
        for piece in pieces:
            if self.release.wait(1.0):
                return
            h.wfile.write(piece)
            h.wfile.flush()
        h.close_connection = True

    def _json(
        self, h: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict[str, str] | None = None
    ) -> None:
        self._send(h, status, "application/json", json.dumps(payload).encode(), headers)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.release.set()
        super().close()


@pytest.fixture
def endpoint() -> Iterator[Callable[..., FakeEndpoint]]:
    """Factory: endpoint(mode, ...) starts a FakeEndpoint that is closed after the test."""
    started: list[FakeEndpoint] = []

    def start(mode: str = "ok", **kw: object) -> FakeEndpoint:
        started.append(FakeEndpoint(mode, **kw))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="module", autouse=True)
def _print_table() -> Iterator[None]:
    yield
    if SURFACED:
        print("\n[endpoints] fault -> seconds until the one-line error (limit: 2 x timeout)")
        print(f"  {'route':<12}{'fault':<22}{'seconds':>8}{'limit':>7}{'requests':>10}")
        for route, fault, seconds, timeout, requests in SURFACED:
            print(f"  {route:<12}{fault:<22}{seconds:>8.2f}{2 * timeout:>7.1f}{requests:>10}")


# ------------------------------------------------------------------ helpers


def settings(**values: object) -> Settings:
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.upper().startswith(("RAG_", "OPENAI_")):
                mp.delenv(name)
        return Settings(_env_file=None, **values)


def chat(server: FakeEndpoint, timeout: float, retries: int, key: str = KEY) -> OpenAIChat:
    return OpenAIChat("fake-model", server.base_url, key, settings(llm_timeout=timeout, llm_max_retries=retries))


def embedder(
    server: FakeEndpoint, timeout: float = 5.0, retries: int = 2, batch: int = 2, concurrency: int = 4
) -> OpenAICompatibleEmbedding:
    return OpenAICompatibleEmbedding(
        "fake-embed",
        server.base_url,
        KEY,
        batch_size=batch,
        concurrency=concurrency,
        timeout=timeout,
        max_retries=retries,
    )


def surfaced(
    route: str,
    fault: str,
    call: Callable[[], object],
    error: type[UserError],
    timeout: float,
    server: FakeEndpoint,
    slack: float = 0.0,
) -> str:
    """Run `call`, which must fail with `error` within 2 x `timeout` (+ `slack`); check the message; record the time."""
    t0 = time.perf_counter()
    with pytest.raises(error) as caught:
        call()
    seconds = time.perf_counter() - t0
    SURFACED.append((route, fault, seconds, timeout, server.requests))
    text = str(caught.value)
    assert text and "\n" not in text, f"not one line: {text!r}"
    assert KEY not in text and "Traceback" not in text, text
    assert seconds <= 2 * timeout + slack + MARGIN, f"{fault}: surfaced after {seconds:.2f} s, limit {2 * timeout:g} s"
    return text


def ask(model: OpenAIChat) -> str:
    return "".join(model.stream([{"role": "user", "content": "How fast is FP8 training?"}]))


# ------------------------------------------------------------------ chat completions


def test_chat_streams_a_normal_answer(endpoint) -> None:
    server = endpoint("ok")
    pieces = list(chat(server, 2.0, 2).stream([{"role": "user", "content": "How fast is FP8 training?"}]))
    assert pieces == TOKENS and server.requests == 1


@pytest.mark.slow
def test_chat_429_honours_retry_after_then_answers(endpoint) -> None:
    server = endpoint("ok", script=["429", "429"])
    t0 = time.perf_counter()
    assert ask(chat(server, 3.0, 5)) == "".join(TOKENS)
    gaps = [b - a for a, b in zip(server.times, server.times[1:])]
    assert server.requests == 3 and all(g >= 0.9 for g in gaps), gaps  # waited the Retry-After second each time
    assert time.perf_counter() - t0 < 2 * 3.0


@pytest.mark.slow
def test_chat_429_storm_stops_at_the_limit(endpoint) -> None:
    server = endpoint("429")
    model = chat(server, 1.5, 10)
    text = surfaced("chat", "429 storm", lambda: ask(model), LLMError, 1.5, server)
    assert "HTTP 429" in text and "RAG_LLM_TIMEOUT" in text
    assert 2 <= server.requests <= 4, server.requests  # retried after Retry-After: 1, but not 10 times


@pytest.mark.slow
def test_chat_500_storm_stops_at_the_limit_without_echoing_the_key(endpoint) -> None:
    server = endpoint("500")
    model = chat(server, 1.0, 10)
    text = surfaced("chat", "500 storm", lambda: ask(model), LLMError, 1.0, server)
    assert "HTTP 500" in text and server.requests >= 2


def test_a_budget_that_ends_during_the_wait_before_a_retry_names_the_last_failure(endpoint, monkeypatch) -> None:
    """On a loaded machine the backoff sleep can overrun what was left of the budget: the next attempt is not
    sent, and the message says how the last one failed (HTTP 500), not that nothing answered."""
    import openai._base_client

    server = endpoint("500")
    client = bounded_client(server.base_url, KEY, 1.0, 3)
    with client.budget(2.0) as clock:

        def overrun(seconds: float) -> None:
            clock.started -= 2.0 + seconds  # the wait took longer than all that was left

        monkeypatch.setattr(openai._base_client.time, "sleep", overrun)
        with pytest.raises(OutOfTime) as caught:
            client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.last == "HTTP 500" and server.requests == 1


def test_chat_500_message_shows_the_server_reason_with_the_key_blanked(endpoint) -> None:
    server = endpoint("500")
    model = chat(server, 1.0, 0)
    text = surfaced("chat", "500 (echoes key)", lambda: ask(model), LLMError, 1.0, server)
    assert "backend crashed" in text and "[redacted]" in text and server.requests == 1


@pytest.mark.parametrize("key", [KEY, "sk-proj-abcdefghijklmnop1234"])
def test_chat_401_echoing_the_key_is_one_line_without_it(endpoint, key: str) -> None:
    server = endpoint("401")
    model = chat(server, 1.0, 3, key=key)
    text = surfaced("chat", "401 (echoes key)", lambda: ask(model), LLMError, 1.0, server)
    assert key not in text and "API key" in text and "RAG_LLM_API_KEY" in text and server.base_url in text
    assert server.requests == 1, "a rejected key is not retried"


@pytest.mark.slow
def test_chat_hang_with_retries_surfaces_within_twice_the_timeout(endpoint) -> None:
    server = endpoint("hang")
    model = chat(server, 1.0, 5)
    text = surfaced("chat", "hang", lambda: ask(model), LLMError, 1.0, server)
    assert "RAG_LLM_TIMEOUT" in text and "no answer" in text


@pytest.mark.slow
def test_chat_trickle_is_cut_at_the_limit(endpoint) -> None:
    """One token per second never trips the per-read timeout; the total limit cuts it (at the first token after it)."""
    server = endpoint("trickle")
    model = chat(server, 1.5, 2)
    got: list[str] = []

    def consume() -> None:
        for piece in model.stream([{"role": "user", "content": "q"}]):
            got.append(piece)

    t0 = time.perf_counter()
    with pytest.raises(LLMError) as caught:
        consume()
    seconds = time.perf_counter() - t0
    SURFACED.append(("chat", "trickle 1 token/s", seconds, 1.5, server.requests))
    assert "cut off" in str(caught.value) and "\n" not in str(caught.value)
    assert got and len(got) < 10, got
    assert seconds <= 2 * 1.5 + 1.0 + MARGIN, seconds  # the limit, plus at most one token interval


def test_chat_dropped_connection_is_retried_then_one_line(endpoint) -> None:
    server = endpoint("drop")
    model = chat(server, 1.0, 1)
    text = surfaced("chat", "dropped connection", lambda: ask(model), LLMError, 1.0, server)
    assert "closed the connection" in text and server.requests == 2


def test_chat_malformed_200_is_one_line(endpoint) -> None:
    server = endpoint("malformed")
    model = chat(server, 1.0, 3)
    text = surfaced("chat", "malformed 200", lambda: ask(model), LLMError, 1.0, server)
    assert "malformed" in text and server.requests == 1


def test_chat_endpoint_with_credentials_in_the_url_never_shows_them(endpoint) -> None:
    server = endpoint("500")
    url = server.base_url.replace("http://", "http://admin:hunter2pass@")
    model = OpenAIChat("fake-model", url, KEY, settings(llm_timeout=1.0, llm_max_retries=0))
    with pytest.raises(LLMError) as caught:
        ask(model)
    assert "hunter2pass" not in str(caught.value) and "admin" not in str(caught.value)


# ------------------------------------------------------------------ embeddings


def test_embeddings_run_concurrently_and_come_back_in_input_order(endpoint) -> None:
    server = endpoint("ok", delay=0.3)
    texts = [f"abstract number {i} about KV cache compression" for i in range(16)]
    t0 = time.perf_counter()
    vectors = embedder(server, batch=2, concurrency=4).get_text_embedding_batch(texts)
    seconds = time.perf_counter() - t0
    assert vectors == [fake_vector(t, 8) for t in texts]
    assert server.requests == 8 and server.max_in_flight == 4, (server.requests, server.max_in_flight)
    assert seconds < 8 * 0.3, f"{seconds:.2f} s: the 8 requests ran one after another"


def test_embeddings_one_at_a_time_when_concurrency_is_1(endpoint) -> None:
    server = endpoint("ok", delay=0.05)
    texts = [f"text {i}" for i in range(6)]
    assert embedder(server, batch=2, concurrency=1).get_text_embedding_batch(texts) == [
        fake_vector(t, 8) for t in texts
    ]
    assert server.max_in_flight == 1


def test_make_embedder_uses_the_remote_endpoint_settings(endpoint) -> None:
    server = endpoint("ok")
    made = make_embedder(
        settings(
            embed_backend="openai-compatible",
            embed_base_url=server.base_url,
            embed_batch_size=3,
            embed_concurrency=2,
            embed_timeout=4.0,
        )
    )
    assert isinstance(made, OpenAICompatibleEmbedding)
    assert made.get_query_embedding("FP8 training") == fake_vector("FP8 training", 8)
    texts = [f"t{i}" for i in range(7)]
    assert made.get_text_embedding_batch(texts) == [fake_vector(t, 8) for t in texts]
    assert server.requests == 1 + 3  # 7 texts in requests of 3


def test_embeddings_401_names_the_endpoint_and_the_variable(endpoint) -> None:
    server = endpoint("401")
    model = embedder(server, timeout=1.0)
    text = surfaced(
        "embeddings", "401 (echoes key)", lambda: model.get_text_embedding_batch(["a", "b"]), EmbedError, 1.0, server
    )
    assert server.base_url in text and "RAG_EMBED_API_KEY" in text and server.requests == 1


def test_embeddings_unreachable_is_one_line_at_once(endpoint) -> None:
    server = endpoint("ok")
    url = server.base_url
    server.close()
    dead = OpenAICompatibleEmbedding("fake-embed", url, KEY, max_retries=3, timeout=5.0)
    t0 = time.perf_counter()
    with pytest.raises(EmbedError, match="cannot reach the embeddings endpoint .*RAG_EMBED_BASE_URL"):
        dead.get_text_embedding_batch(["a"])
    assert time.perf_counter() - t0 < 1.0, "a refused connection is not retried"


def test_embeddings_wrong_dimension_between_batches(endpoint) -> None:
    server = endpoint("wrong-dim")
    model = embedder(server, batch=2, concurrency=1)
    text = surfaced(
        "embeddings",
        "wrong dimension",
        lambda: model.get_text_embedding_batch(["a", "b", "c", "d"]),
        EmbedError,
        5.0,
        server,
    )
    assert "12-dimensional" in text and "8-dimensional" in text


def test_embeddings_dimension_is_checked_across_calls_too(endpoint) -> None:
    server = endpoint("wrong-dim")
    model = embedder(server, batch=8, concurrency=1)
    assert len(model.get_query_embedding("first")) == 8
    with pytest.raises(EmbedError, match="dimensional"):
        model.get_query_embedding("second")


@pytest.mark.parametrize(
    ("fault", "timeout", "retries", "expect"),
    [
        pytest.param("429", 1.5, 10, "HTTP 429", marks=pytest.mark.slow),
        pytest.param("500", 1.0, 10, "HTTP 500", marks=pytest.mark.slow),
        pytest.param("hang", 1.0, 5, "RAG_EMBED_TIMEOUT", marks=pytest.mark.slow),
        pytest.param("trickle", 1.5, 2, "still arriving", marks=pytest.mark.slow),
        ("drop", 1.0, 1, "closed the connection"),
        ("malformed", 1.0, 3, "malformed"),
    ],
)
def test_embeddings_faults_surface_within_twice_the_timeout(
    endpoint, fault: str, timeout: float, retries: int, expect: str
) -> None:
    server = endpoint(fault)
    model = embedder(server, timeout=timeout, retries=retries, batch=4, concurrency=2)
    slack = 1.0 if fault == "trickle" else 0.0  # a trickle may run one byte interval past the limit
    text = surfaced(
        "embeddings", fault, lambda: model.get_text_embedding_batch(["a", "b", "c"]), EmbedError, timeout, server, slack
    )
    assert expect in text, text


@pytest.mark.slow
def test_cli_ingest_with_a_rejected_embeddings_key_prints_one_line(endpoint, tmp_path: Path) -> None:
    """The real `rag ingest` process: one `error:` line naming the endpoint and the variable, no key, exit 1."""
    server = endpoint("401")
    corpus = tmp_path / "papers.jsonl"
    corpus.write_text(
        json.dumps({"title": "KV Cache Quantisation", "abstract": "We quantise the KV cache to 4 bits."}) + "\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("RAG_", "OPENAI_"))} | {
        "RAG_EMBED_BACKEND": "openai-compatible",
        "RAG_EMBED_BASE_URL": server.base_url,
        "RAG_EMBED_API_KEY": KEY,
        "RAG_DATA_DIR": str(tmp_path / "index"),
        "RAG_CORPUS_PATHS": json.dumps([str(corpus)]),
    }
    r = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ingest"], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert KEY not in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert "RAG_EMBED_API_KEY" in lines[0] and server.base_url in lines[0]
