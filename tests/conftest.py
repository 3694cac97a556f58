"""Shared fixtures for the index, retrieval and CLI tests: real embedder, real Chroma (embedded and server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag.config import Settings, get_settings

SMALL = Path(__file__).resolve().parent / "fixtures" / "small"
LANG_FILE = "language_and_systems.jsonl"  # 5 papers, one with no date
SCI_FILE = "science_and_robotics.jsonl"  # 4 papers, one with an abstract split into several chunks
TXT_FILE = "abstracts.txt"  # 3 papers, `Abstract:` per line: no title, no date
SMALL_PAPERS = 12


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
    from rag.index import ingest, open_store

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
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
            try:
                chromadb.HttpClient(host=host, port=port, settings=ChromaSettings(anonymized_telemetry=False)).heartbeat()
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail(f"chroma server did not answer within 30 s:\n{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.2)
        yield host, port
    finally:
        stop(proc)
