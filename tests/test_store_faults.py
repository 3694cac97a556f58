"""The index under faults a user meets: a damaged or read-only `chroma.sqlite3`, a Chroma server that is
stopped (SIGSTOP) or killed, and vectors of another embedder. Each must end in one `StoreError` line
(one `error:` line and exit 1 from the CLI), within a bounded time, and never cost a stored paper.

Everything is real: embedded Chroma files, a `chroma run` server on 127.0.0.1, an OpenAI-compatible
embeddings server speaking HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import SMALL, SMALL_PAPERS, build_settings, free_port, stop
from test_endpoints import FakeEndpoint

import rag
from rag import corpus
from rag import store as store_mod
from rag.embed import HashingEmbedding, OpenAICompatibleEmbedding
from rag.errors import StoreError
from rag.ingest import ingest
from rag.retrieve import Retriever
from rag.store import open_store

ROOT = Path(rag.__file__).resolve().parent.parent  # the checkout whose `rag` is under test
TIMEOUT = 2.0  # CHROMA_TIMEOUT while a test stops the server: the fault must surface within 2x (+ slack)
SLACK = 3.0  # seconds for a loaded 2-core machine


def cli(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    launch: tuple[str, ...] = ("-m", "rag.cli"),
) -> subprocess.CompletedProcess:
    """`python -m rag.cli ARGS` on an index folder, with the small corpus as the default paths."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    base.update(
        PYTHONPATH=str(ROOT), RAG_DATA_DIR=str(data_dir), RAG_CORPUS_PATHS=f'["{SMALL}"]', RAG_EMBED_BACKEND="hashing"
    )
    base.update(env or {})
    return subprocess.run(
        [*prefix, sys.executable, *launch, *args], capture_output=True, text=True, env=base, timeout=120
    )


def one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The CLI failed with exit 1 and a single `error:` line that holds `words`, and no traceback."""
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "panicked" not in result.stderr, result.stderr[-2000:]
    text = " ".join(lines)
    assert (
        lines and lines[0].startswith("error:") and all(not line.startswith(("error:", "  File")) for line in lines[1:])
    ), lines
    for word in words:
        assert word in text, text
    return text


def one_line(error: pytest.ExceptionInfo, *words: str) -> str:
    text = str(error.value)
    assert "\n" not in text and "Traceback" not in text, text
    for word in words:
        assert word in text, text
    return text


def within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run `call` on a thread; fail the test if it has not ended after `seconds` (a hang), else return what it raised."""
    caught: list[BaseException | None] = [None]

    def run() -> None:
        try:
            call()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            caught[0] = e

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds:.0f} s: a hang"
    print(f"[faults] surfaced after {time.monotonic() - started:.2f} s (limit {seconds:.1f} s)")
    return caught[0]


# ---------------------------------------------------------------- a damaged or read-only embedded index


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small corpus in an embedded index (hashing embedder), built once by the CLI; tests copy it."""
    data = tmp_path_factory.mktemp("built") / "index"
    result = cli(data, "ingest")
    assert result.returncode == 0, result.stderr
    return data


def damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if how == "truncated":
            f.truncate(size // 4)
        elif how == "zeroed-pages":
            f.seek(4096 * 5)
            f.write(b"\0" * 4096 * 20)
        elif how == "garbage":
            f.write(os.urandom(size))
        elif how == "header":
            f.write(b"garbage!garbage!")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["search", "ingest"])
@pytest.mark.parametrize("how", ["truncated", "zeroed-pages", "garbage", "header"])
def test_damaged_sqlite_is_one_error_line_and_the_file_is_kept(
    built: Path, tmp_path: Path, how: str, command: str
) -> None:
    data = tmp_path / "index"
    shutil.copytree(built, data)
    sqlite = data / "chroma" / "chroma.sqlite3"
    damage(sqlite, how)
    size = sqlite.stat().st_size
    args = ("search", "speech recognition") if command == "search" else ("ingest",)
    text = one_error_line(cli(data, *args), str(data / "chroma"), "rag ingest")
    assert "damaged" in text or "cannot be used" in text
    assert sqlite.stat().st_size >= size  # not replaced by an empty index: the user may still want to recover it


def read_only(folder: Path) -> tuple[str, ...]:
    """A command prefix that runs with `folder` mounted read-only (chmod means nothing to root)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        for sub in folder.rglob("*"):
            sub.chmod(0o555 if sub.is_dir() else 0o444)
        return ()
    if not shutil.which("unshare") or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("running as root without mount namespaces: cannot make a folder read-only")
    return (
        "unshare",
        "-m",
        "sh",
        "-c",
        f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" && exec "$@"',
        "sh",
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "args", [("search", "speech recognition"), ("ask", "what helps speech recognition?"), ("ingest",)]
)
def test_read_only_data_dir_is_one_error_line(built: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    data = tmp_path / "index"
    shutil.copytree(built, data)
    one_error_line(cli(data, *args, prefix=read_only(data)), str(data), "writable")


# ---------------------------------------------------------------- a full disk


class Failing:
    """A collection whose every call raises `error`: the exception types Chroma and sqlite raise on a full disk."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def count(self) -> int:
        raise self.error


def full_disk_errors() -> list[BaseException]:
    import errno
    import sqlite3

    from chromadb.errors import InternalError

    return [
        OSError(errno.ENOSPC, "No space left on device"),
        sqlite3.OperationalError("database or disk is full"),
        InternalError("Query error: Database error: error returned from database: (code: 13) database or disk is full"),
    ]


@pytest.mark.parametrize("error", full_disk_errors(), ids=["enospc", "sqlite", "chroma"])
def test_a_full_disk_says_so_and_that_the_index_is_intact(built: Path, tmp_path: Path, error: BaseException) -> None:
    data = tmp_path / "index"
    shutil.copytree(built, data)
    with pytest.raises(StoreError) as caught:
        store_mod.Guarded(Failing(error), str(data / "chroma")).count()
    free = shutil.disk_usage(data).free // 2**20
    assert str(caught.value) == (
        f"no space left on the device holding the index ({free} MB free); "
        "free space and run the command again: the index is intact"
    )


def test_rebuilding_is_advised_only_for_an_index_found_damaged(built: Path, tmp_path: Path) -> None:
    """The advice to move the index away follows from a check of its files, not from the error's words."""
    data = tmp_path / "index"
    shutil.copytree(built, data)
    from chromadb.errors import InternalError

    words = store_mod.Guarded(Failing(InternalError("database disk image is malformed")), str(data / "chroma"))
    with pytest.raises(StoreError) as intact:
        words.count()
    assert "passed an integrity check" in str(intact.value) and "move the folder away" not in str(intact.value)
    damage(data / "chroma" / "chroma.sqlite3", "garbage")
    for error in (InternalError("something odd"), *full_disk_errors()):
        with pytest.raises(StoreError) as broken:
            store_mod.Guarded(Failing(error), str(data / "chroma")).count()
        assert "is damaged (chroma.sqlite3" in str(broken.value) and "move the folder away" in str(broken.value)


def in_a_small_filesystem(script: str, size_kb: int, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a shell `script` with a `size_kb` tmpfs mounted at $M, in a mount namespace of its own (root only)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a small filesystem")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode()[:200]}")
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", f'M=$(mktemp -d) && mount -t tmpfs -o size={size_kb}k tmpfs "$M" && {script}'],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.mark.slow
def test_ingest_onto_a_full_disk_is_one_line_and_loses_nothing(built: Path, tmp_path: Path) -> None:
    """A real full filesystem: the ingest of a larger corpus fails with the one line, the search after it
    too; once space is freed the same ingest completes, and every paper stored before is still there."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env = {**base, "PYTHONPATH": str(ROOT), "RAG_CORPUS_PATHS": f'["{SMALL}"]', "RAG_EMBED_BACKEND": "hashing"}
    rag = f"env RAG_DATA_DIR=$M/index {sys.executable} -m rag.cli"
    script = (
        f'cp -r "{built}" "$M/index" && free=$(df -k --output=avail "$M" | tail -1) && '
        'dd if=/dev/zero of="$M/filler" bs=1k count=$((free - 1000)) 2>/dev/null && '
        f'{rag} ingest "{ROOT / "data" / "corpus"}"; echo "ingest=$?"; {rag} search speech; echo "search=$?"; '
        f'rm "$M/filler" && {rag} ingest "{ROOT / "data" / "corpus"}" 2>/dev/null; echo "freed=$?"; '
        f'RAG_DATA_DIR=$M/index {sys.executable} -c "{STORED_IDS}"'
    )
    proc = in_a_small_filesystem(script, 8192, env)
    output = proc.stdout + proc.stderr
    assert "ingest=1" in output and "freed=0" in output, output[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    said = "error: no space left on the device holding the index ("
    assert errors and all(line.startswith(said) and line.endswith("the index is intact") for line in errors), output
    assert "Traceback" not in output
    stored = set(json.loads(proc.stdout.splitlines()[-1]))
    small = {p.paper_id for p in corpus.load([SMALL]).papers}
    assert len(small) == SMALL_PAPERS and small <= stored and len(stored) > SMALL_PAPERS


STORED_IDS = (
    "import json; from rag.config import get_settings; from rag.store import open_store; "
    "print(json.dumps([pid for pid, _, _ in open_store(get_settings()).records()]))"
)


# ---------------------------------------------------------------- a Chroma server that stops or dies


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A private `chroma run` on 127.0.0.1 (this test may stop or kill it), resumed and stopped afterwards."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")} | {"ANONYMIZED_TELEMETRY": "False"}
    log = open(tmp_path / "chroma.log", "wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "chroma"),
            "run",
            "--path",
            str(tmp_path / "srv"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            chromadb.HttpClient(
                host="127.0.0.1", port=port, settings=ChromaSettings(anonymized_telemetry=False)
            ).heartbeat()
            break
        except Exception:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "chroma.log").read_text()[-2000:]
            time.sleep(0.2)
    settings = build_settings(
        data_dir=tmp_path / "index", corpus_paths=[SMALL], chroma_host="127.0.0.1", chroma_port=port
    )
    try:
        yield SimpleNamespace(proc=proc, port=port, settings=settings)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
        stop(proc)
        log.close()


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        store_mod, "CHROMA_TIMEOUT", TIMEOUT, raising=False
    )  # raising=False: an older rag, with no such bound, can be measured too


@pytest.mark.slow
def test_stopped_server_fails_search_within_the_timeout(server, short_timeout) -> None:
    embedder = HashingEmbedding()
    store = open_store(server.settings)
    ingest([SMALL], server.settings, embedder, store=store)
    retriever = Retriever(server.settings, embedder, store)
    server.proc.send_signal(signal.SIGSTOP)
    error = within(2 * TIMEOUT + SLACK, lambda: retriever.search("speech recognition", k=3, method="dense"))
    assert isinstance(error, StoreError), repr(error)
    assert "no answer" in str(error) and f"{TIMEOUT:g} s" in str(error) and "\n" not in str(error)
    error = within(2 * TIMEOUT + SLACK, lambda: open_store(server.settings))  # a new command: connecting is bounded too
    assert isinstance(error, StoreError) and f"127.0.0.1:{server.port}" in str(error), repr(error)


@pytest.mark.slow
def test_stopped_server_fails_ingest_within_the_timeout_and_loses_nothing(
    server, short_timeout, tmp_path: Path
) -> None:
    embedder = HashingEmbedding()
    store = open_store(server.settings)
    ingest([SMALL], server.settings, embedder, store=store)
    server.proc.send_signal(signal.SIGSTOP)
    error = within(2 * TIMEOUT + SLACK, lambda: ingest([SMALL], server.settings, embedder, store=store))
    assert isinstance(error, StoreError) and "no answer" in str(error), repr(error)
    server.proc.send_signal(signal.SIGCONT)
    again = ingest([SMALL], server.settings, embedder)
    assert (again.unchanged, again.embedded) == (SMALL_PAPERS, 0)  # the stopped ingest took nothing away


@pytest.mark.slow
def test_server_killed_between_commands_and_mid_ingest_is_one_line(server, short_timeout) -> None:
    embedder = HashingEmbedding()
    store = open_store(server.settings)
    server.proc.kill()
    server.proc.wait(10)
    error = within(2 * TIMEOUT + SLACK, lambda: ingest([SMALL], server.settings, embedder, store=store))
    assert isinstance(error, StoreError) and "Chroma server" in str(error) and "\n" not in str(error), repr(error)
    with pytest.raises(StoreError) as caught:
        open_store(server.settings)
    one_line(caught, "cannot reach the Chroma server", "chroma run")


@pytest.mark.slow
def test_cli_search_on_a_stopped_server_is_one_line(server) -> None:
    """The real command, with its real 30 s timeout shortened in the process it runs in."""
    embedder = HashingEmbedding()
    ingest([SMALL], server.settings, embedder, store=open_store(server.settings))
    server.proc.send_signal(signal.SIGSTOP)
    code = f"import sys; from rag import store; store.CHROMA_TIMEOUT = {TIMEOUT}; sys.argv = ['rag'] + sys.argv[1:]; from rag.cli import main; main()"
    env = {"RAG_CHROMA_HOST": "127.0.0.1", "RAG_CHROMA_PORT": str(server.port)}
    started = time.monotonic()
    result = cli(server.settings.data_dir, "search", "speech", env=env, launch=("-c", code))
    assert time.monotonic() - started < 2 * TIMEOUT + 15  # imports and the embedder's start included
    one_error_line(result, f"127.0.0.1:{server.port}", "no answer")


# ---------------------------------------------------------------- vectors of another embedder


def remote(endpoint: FakeEndpoint, name: str = "team-embedder") -> OpenAICompatibleEmbedding:
    return OpenAICompatibleEmbedding(
        name, endpoint.base_url, "local-key-5f1e9c7b2d4a", batch_size=8, timeout=5.0, max_retries=0
    )


@pytest.fixture
def endpoints() -> Iterator[Callable[[int], FakeEndpoint]]:
    started: list[FakeEndpoint] = []

    def start(dim: int) -> FakeEndpoint:
        started.append(FakeEndpoint(dim=dim))
        return started[-1]

    yield start
    for e in started:
        e.close()


@pytest.mark.slow
@pytest.mark.parametrize("built_dim, asked_dim", [(64, 384), (384, 64)])
def test_same_model_name_at_another_size_is_refused_with_the_fix(
    settings, endpoints, tmp_path: Path, built_dim: int, asked_dim: int
) -> None:
    """One model name, two servers: the name check passes, the vector size must not."""
    store = open_store(settings)
    ingest([SMALL], settings, remote(endpoints(built_dim)), store=store)
    other = remote(endpoints(asked_dim))
    with pytest.raises(StoreError) as caught:
        Retriever(settings, other, store).search("speech recognition", k=3)
    one_line(caught, "rag ingest --rebuild")
    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        '{"title": "A new paper", "abstract": "Its vectors would be of the other size, so it must not be stored."}\n'
    )
    with pytest.raises(StoreError) as caught:
        ingest([SMALL, extra], settings, other, store=store)
    one_line(caught, f"{built_dim}-dimensional", f"{asked_dim}-dimensional", "rag ingest --rebuild")
    assert (
        store.count() == SMALL_PAPERS and store.stamp()["dimension"] == built_dim
    )  # the refused ingest took nothing away


@pytest.mark.slow
def test_edited_paper_is_kept_when_the_new_vectors_are_refused(settings, endpoints, tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    shutil.copytree(SMALL, folder)
    store = open_store(settings)
    ingest([folder], settings, remote(endpoints(64)), store=store)
    target = folder / "abstracts.txt"
    target.write_text(
        target.read_text().replace("Neural machine translation", "Neural machine translation, edited,", 1)
    )
    with pytest.raises(StoreError):
        ingest([folder], settings, remote(endpoints(384)), store=store)
    assert store.count() == SMALL_PAPERS and sum(store.chunk_counts().values()) == store.chunks.count()


@pytest.mark.slow
@pytest.mark.parametrize(
    "built_with, asked_with", [("hashing", "onnx"), ("onnx", "hashing"), ("remote-64", "onnx"), ("onnx", "remote-64")]
)
def test_another_embedder_is_refused_by_name(settings, endpoints, embedder, built_with: str, asked_with: str) -> None:
    """Two 384-d embedders (MiniLM, hashing) would mix silently by size alone; a 64-d one differs in both."""
    make = {"hashing": HashingEmbedding, "onnx": lambda: embedder, "remote-64": lambda: remote(endpoints(64))}
    store = open_store(settings)
    ingest([SMALL], settings, make[built_with](), store=store)
    asked = make[asked_with]()
    for attempt in (lambda: Retriever(settings, asked, store), lambda: ingest([SMALL], settings, asked, store=store)):
        with pytest.raises(StoreError) as caught:
            attempt()
        one_line(caught, repr(asked.model_name), "rag ingest --rebuild")
