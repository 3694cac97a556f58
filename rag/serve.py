"""A local OpenAI-compatible LLM server: llama.cpp's own HTTP server, run by `xllamacpp`.

`rag llm serve --model FILE.gguf` starts it and prints the RAG_LLM_BASE_URL to use; tests call
`start_server` and stop the returned handle. xllamacpp is optional: `pip install -e '.[local-llm]'`.

xllamacpp has no stop method, and its destructor joins threads that do not always end (a stop
could hang for good). So the server runs in a child process (`python -m rag.serve`), which says
READY or ERROR on its first line of output; stopping it is a signal with a bounded wait.
"""

from __future__ import annotations

import ipaddress
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

NOT_INSTALLED = "xllamacpp is not installed; pip install -e '.[local-llm]'"
QUIET = 1  # llama.cpp log verbosity: 1 errors only, 2 and warnings, 3 and progress, 4 debug
READY_TIMEOUT = 300.0  # seconds for the model to load before start_server gives up
STOP_TIMEOUT = 10.0  # seconds between asking the child to stop and killing it


class LocalServer:
    """A running llama.cpp server; `stop()` (or leaving a `with` block) shuts it down."""

    def __init__(self, process: subprocess.Popen | None, address: str, model: str, model_path: Path) -> None:
        self._process = process
        self.address = address  # http://HOST:PORT, as llama.cpp reports it
        self.base_url = f"{address}/v1"  # what RAG_LLM_BASE_URL should be
        self.model = model  # the id /v1/models reports (RAG_LLM_MODEL)
        self.model_path = model_path

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop serving within STOP_TIMEOUT: SIGTERM, then SIGKILL if the child is still there."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError:
        raise ConfigError(NOT_INSTALLED) from None
    return xllamacpp


def _port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as llama.cpp does: a closing socket is no conflict
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _model_file(model_path: str | Path) -> Path:
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model file {path} not found; pass --model a .gguf file")
    return path


def start_server(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    ctx: int = 8192,
    threads: int | None = None,
    alias: str | None = None,
    verbosity: int = QUIET,
    parallel: int = 1,
) -> LocalServer:
    """Load the GGUF model and serve it on host:port (port 0: any free port); returns once it listens.

    The model is listed under `alias` (default: the file name without .gguf). User mistakes raise
    one-line `ConfigError`s: xllamacpp missing, no such model file, port taken, model not loadable.
    """
    path = _model_file(model_path)
    if ctx < 1:
        raise ConfigError(f"--ctx must be positive, not {ctx}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be positive, not {threads}")
    if parallel < 1:
        raise ConfigError(f"--parallel must be positive, not {parallel}")
    _xllamacpp()  # missing: say so before starting a child that would only fail
    if port and _port_taken(host, port):
        raise ConfigError(
            f"cannot listen on {host}:{port}: the port is in use or the address is not local; choose another --port or --host"
        )

    name = alias or path.name.removesuffix(".gguf")
    spec = {
        "model": str(path.resolve()),
        "host": host,
        "port": port,
        "ctx": ctx,
        "threads": threads,
        "alias": name,
        "verbosity": verbosity,
        "parallel": parallel,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "rag.serve", json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    server = LocalServer(process, "", name, path)
    line = _status_line(process, READY_TIMEOUT)
    if not line.startswith("READY "):
        server.stop()
        cause = line.removeprefix("ERROR ").strip() or f"no answer within {READY_TIMEOUT:.0f} s"
        raise ConfigError(
            f"llama.cpp could not serve {path} on {host}:{port} ({cause}); "
            "is it a GGUF model file? llama.cpp's messages above say more"
        )
    server.address = line.removeprefix("READY ").strip().rstrip("/")
    server.base_url = f"{server.address}/v1"
    return server


def _status_line(process: subprocess.Popen, timeout: float) -> str:
    """The child's READY or ERROR line, or "" if it exits or says neither within `timeout` seconds."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while selector.select(max(0.0, deadline - time.monotonic())):
            line = process.stdout.readline()
            if not line or line.startswith(("READY ", "ERROR ")):
                return line
    return ""


def _serve_in_this_process(spec: dict[str, Any]) -> None:
    """The child: load the model, report READY with the address (or ERROR), serve until a signal."""
    xllamacpp = _xllamacpp()
    params = xllamacpp.CommonParams()
    params.model.path = spec["model"]
    params.hostnames = [spec["host"]]
    params.port = spec["port"]
    params.n_ctx = spec["ctx"]
    if spec["threads"]:
        params.cpuparams.n_threads = spec["threads"]
        params.cpuparams_batch.n_threads = spec["threads"]  # prompt processing, the slow part on a CPU
    params.n_parallel = spec["parallel"]  # slots: requests decoded together (the judge sends several at once)
    params.kv_unified = spec["parallel"] > 1  # the slots share one context of n_ctx tokens
    params.model_alias = {spec["alias"]}
    params.verbosity = spec["verbosity"]
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as e:  # xllamacpp's "Failed to init server"; llama.cpp logged the cause
        print(f"ERROR {e}", flush=True)
        os._exit(1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))  # skip the destructor: it may never return
    print(f"READY {server.listening_address}", flush=True)
    sys.stdin.read()  # returns when the parent closes the pipe or dies: never outlive it
    os._exit(0)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_forever(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    ctx: int = 8192,
    threads: int | None = None,
    verbose: bool = False,
    say: Any = print,
    parallel: int = 1,
) -> None:
    """`rag llm serve`: start the server, say how to point `rag` at it, block until Ctrl-C."""
    _xllamacpp()
    say(f"Loading {_model_file(model_path)} ...")
    started = time.perf_counter()
    server = start_server(model_path, host, port, ctx, threads, verbosity=3 if verbose else QUIET, parallel=parallel)
    with server:
        say(
            f"Serving {server.model} at {server.address} (ready in {time.perf_counter() - started:.1f} s). Use it with:"
        )
        say(f"  RAG_LLM_BASE_URL={server.base_url}")
        say(f"  RAG_LLM_MODEL={server.model}")
        say("  RAG_LLM_SOURCE_SENTENCES=3")
        say(
            "(the last shows a small model three sentences per source: on 2 cores, the first token in 15 s instead of 31 s)"
        )
        if not is_loopback(host):
            say(f"Warning: {host} is reachable from other machines and this server has no API key.")
        say("Press Ctrl-C to stop.")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            say("Stopping.")


if __name__ == "__main__":  # the child process of start_server
    _serve_in_this_process(json.loads(sys.argv[1]))
