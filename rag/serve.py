"""A local OpenAI-compatible LLM server: llama.cpp's own HTTP server run in-process by `xllamacpp`.

`rag llm serve --model FILE.gguf` starts it and prints the RAG_LLM_BASE_URL to use; tests call
`start_server` and stop the returned handle. xllamacpp is optional: `pip install -e '.[local-llm]'`.

xllamacpp has no stop method: `xllamacpp.Server(params)` loads the model, starts the HTTP server
in background threads and returns once it listens; the server stops when the object is freed.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

NOT_INSTALLED = "xllamacpp is not installed; pip install -e '.[local-llm]'"
QUIET = 1  # llama.cpp log verbosity: 1 errors only, 2 and warnings, 3 and progress, 4 debug


class LocalServer:
    """A running llama.cpp server; `stop()` (or leaving a `with` block) shuts it down."""

    def __init__(self, server: Any, address: str, model: str, model_path: Path) -> None:
        self._server: Any = server
        self.address = address  # http://HOST:PORT, as llama.cpp reports it
        self.base_url = f"{address}/v1"  # what RAG_LLM_BASE_URL should be
        self.model = model  # the id /v1/models reports (RAG_LLM_MODEL)
        self.model_path = model_path

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        """Stop serving: dropping the only reference runs xllamacpp's destructor, which joins its threads."""
        server, self._server = self._server, None
        del server

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
    xllamacpp = _xllamacpp()
    if port and _port_taken(host, port):
        raise ConfigError(f"cannot listen on {host}:{port}: the port is in use or the address is not local; choose another --port or --host")

    params = xllamacpp.CommonParams()
    params.model.path = str(path.resolve())
    params.hostnames = [host]
    params.port = port
    params.n_ctx = ctx
    if threads:
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads  # prompt processing, the slow part on a CPU
    name = alias or path.name.removesuffix(".gguf")
    params.model_alias = {name}
    params.verbosity = verbosity
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as e:  # xllamacpp's "Failed to init server"; llama.cpp logged the cause
        raise ConfigError(f"llama.cpp could not serve {path} on {host}:{port} ({e}); "
                          "is it a GGUF model file? llama.cpp's messages above say more") from None
    return LocalServer(server, str(server.listening_address).rstrip("/"), name, path)


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
) -> None:
    """`rag llm serve`: start the server, say how to point `rag` at it, block until Ctrl-C."""
    _xllamacpp()
    say(f"Loading {_model_file(model_path)} ...")
    started = time.perf_counter()
    server = start_server(model_path, host, port, ctx, threads, verbosity=3 if verbose else QUIET)
    with server:
        say(f"Serving {server.model} at {server.address} (ready in {time.perf_counter() - started:.1f} s). Use it with:")
        say(f"  RAG_LLM_BASE_URL={server.base_url}")
        say(f"  RAG_LLM_MODEL={server.model}")
        if not is_loopback(host):
            say(f"Warning: {host} is reachable from other machines and this server has no API key.")
        say("Press Ctrl-C to stop.")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            say("Stopping.")
