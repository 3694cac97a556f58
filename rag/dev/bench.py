"""`rag bench`: how ingest and search scale, on synthetic corpora of about 10k and 100k chunks.

The harness drives the product only through its public surface (`rag.ingest.ingest`,
`rag.retrieve.Retriever.search`, and the `rag` CLI in fresh processes), so it measures whichever
storage and retrieval core is installed. Corpora are real sentences of the default corpus
recombined by a seeded generator, so every run on every machine indexes the same texts.
A step that crashes is a result (recorded with its one-line error), never the end of the run.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from pydantic_settings import PydanticBaseSettingsSource
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rag.config import DEFAULT_CORPUS, PROJECT_ROOT, Settings
from rag.errors import ConfigError, redact

SEED = 0
DEFAULT_SIZES = (10_000, 100_000)
QUICK_CHUNKS = 500
QUICK_MODEL_SAMPLE = 20
MODEL_SAMPLE = 300  # real abstracts embedded with MiniLM: about 40 s per pass on one free core
QUERIES = 50
METHODS = ("hybrid", "bm25", "dense")
PROCESS_TIMEOUT = 900.0  # seconds a fresh `rag` process may take before it counts as failed
SERVER_START_TIMEOUT = 60.0
WORDS_PER_ABSTRACT = (280, 400)  # about two 256-word-piece chunks per synthetic abstract
MODEL_QUERY = "which papers report FP8 training speedups?"

# Every figure, with its unit and meaning: the table, the JSON and the tests all read these.
SIZE_FIGURES = {
    "raw_embed_papers_per_s": ("papers/s", "hashing embedder alone on the chunk texts ingest embeds"),
}
STORE_FIGURES = {
    "ingest_s": ("s", "ingest into an empty index, in process (parse, chunk, embed, store)"),
    "ingest_papers_per_s": ("papers/s", "papers / ingest_s"),
    "ingest_vs_raw": ("ratio", "ingest_papers_per_s / raw_embed_papers_per_s"),
    "reingest_s": ("s", "ingest of the unchanged corpus again (nothing to embed)"),
    "cold_search_s": ("s", "`rag search --json` in a fresh process, wall time"),
    "cold_search_rss_mb": ("MB", "peak resident memory of that process"),
    "cold_search_minilm_s": ("s", "cold_search_s + minilm_load_query_s: cold search with the real model"),
    "cold_ask_s": ("s", "`rag ask --json` (extractive) in a fresh process, wall time"),
    "cold_ask_rss_mb": ("MB", "peak resident memory of that process"),
    "retriever_open_s": ("s", "Retriever(settings, embedder) in process"),
    **{
        f"warm_{m}_{p}_ms": ("ms", f"{p} of Retriever.search(method={m!r}) over the questions, in process")
        for m in METHODS
        for p in ("p50", "p95")
    },
    "disk_mb": ("MB", "disk used by the index (embedded data dir, or the server's --path)"),
}
MODEL_FIGURES = {
    "minilm_raw_papers_per_s": ("papers/s", "MiniLM alone on the chunk texts of the sample"),
    "minilm_ingest_papers_per_s": ("papers/s", "ingest of the sample with MiniLM, embedded Chroma"),
    "minilm_ingest_vs_raw": ("ratio", "raw seconds / ingest seconds of the same run"),
    "minilm_load_query_s": ("s", "loading MiniLM and embedding one query, in a fresh process"),
}

DERIVED = ("ingest_vs_raw", "cold_search_minilm_s")  # computed from other figures
CHUNK_TOKENS = Settings.model_fields["chunk_tokens"].default

_LOAD_QUERY = (  # run with `python -c`: what a cold process pays for the real model beyond the hashing one
    "import time\nfrom rag.embed import MiniLMEmbedding\nt = time.perf_counter()\n"
    f"MiniLMEmbedding().get_query_embedding({MODEL_QUERY!r})\nprint(time.perf_counter() - t)\n"
)


class StepFailed(Exception):
    """A measured step did not complete; the message is the one line the report shows."""


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    runs: int = 3
    server: bool = True
    out: Path = Path("bench-out")
    model_sample: int = MODEL_SAMPLE


def parse_options(
    sizes: str | None, runs: int | None, server: bool, out: Path, quick: bool, model_sample: int | None
) -> Options:
    """CLI values -> Options; `--quick` changes the defaults (explicit values still win)."""
    chunk_sizes: tuple[int, ...]
    if sizes is None:
        chunk_sizes = (QUICK_CHUNKS,) if quick else DEFAULT_SIZES
    else:
        try:
            chunk_sizes = tuple(sorted({int(s) for s in sizes.split(",") if s.strip()}))
        except ValueError:
            raise ConfigError(
                f"--sizes {sizes!r} is not a comma-separated list of chunk counts; e.g. --sizes 10000,100000"
            ) from None
        if not chunk_sizes or chunk_sizes[0] < 50:
            raise ConfigError(f"--sizes {sizes!r}: give chunk counts of at least 50, e.g. --sizes 10000,100000")
    runs = runs if runs is not None else (1 if quick else 3)
    if runs < 1:
        raise ConfigError(f"--runs {runs}: give at least 1 (3 or more for a median worth quoting)")
    sample = model_sample if model_sample is not None else (QUICK_MODEL_SAMPLE if quick else MODEL_SAMPLE)
    if sample < 1:
        raise ConfigError(f"--model-sample {sample}: give at least 1 abstract")
    return Options(chunk_sizes, runs, server, out, sample)


# ---------------------------------------------------------------- figures


@dataclass
class Figure:
    """One measured figure: the median of its runs, or the error that stopped it."""

    value: float | None = None
    runs: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # os.getloadavg() when the step started
    error: str | None = None


def one_line(e: BaseException) -> str:
    """The last line of an error (where tracebacks put the cause), with its type unless it is ours."""
    lines = str(e).strip().splitlines()
    kind = "" if isinstance(e, StepFailed) else f"{type(e).__name__}: "
    return redact(f"{kind}{lines[-1] if lines else ''}".rstrip(": ")[:300])


def measure(
    names: list[str], runs: int, fn: Callable[[int], dict[str, float]], say: Callable[[str], None]
) -> dict[str, Figure]:
    """Run `fn` `runs` times; each figure is the median of its runs. A crash fails every figure of the step."""
    load = [round(x, 2) for x in os.getloadavg()]
    samples: dict[str, list[float]] = {name: [] for name in names}
    try:
        for run in range(runs):
            got = fn(run)
            for name in names:
                samples[name].append(got[name])
            say(f"run {run + 1}/{runs}: " + ", ".join(f"{n} {got[n]:.3g}" for n in names) + f"  (load {load[0]:.2f})")
    except Exception as e:  # the code under test may raise anything: record it and go on
        say(f"[red]failed[/red]: {escape(one_line(e))}")
        return {name: Figure(load=load, error=one_line(e)) for name in names}  # keep the load: it may explain a timeout
    return {name: Figure(statistics.median(v), [round(x, 6) for x in v], load) for name, v in samples.items()}


def failed(names: list[str], error: str) -> dict[str, Figure]:
    return {name: Figure(error=error) for name in names}


def derived(fn: Callable[..., float], *inputs: Figure) -> Figure:
    """A figure computed from others (a ratio, a sum); failed when any input failed."""
    missing = [f.error or "missing" for f in inputs if f.value is None]
    if missing:
        return Figure(error=missing[0])
    return Figure(fn(*(f.value for f in inputs)))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# ---------------------------------------------------------------- synthetic corpora


@dataclass
class SynthCorpus:
    path: Path
    papers: int
    texts: list[str]  # what the embedder reads, one per chunk

    @property
    def chunks(self) -> int:
        return len(self.texts)


def sentence_pool(papers: list[Any]) -> tuple[list[str], list[str]]:
    """(sentences, titles) of the default corpus, in corpus order, without fragments and run-ons."""
    from rag.text import sentences

    pool = [s for p in papers for s in sentences(p.abstract) if 20 <= len(s) <= 600]
    return pool, [p.title for p in papers if p.title]


def _title(rng: random.Random, titles: list[str]) -> str:
    """A new title: the head of one real title joined to the tail of another."""
    a, b = rng.sample(titles, 2)
    head = a.split(":", 1)[0] if ":" in a else " ".join(a.split()[: max(1, len(a.split()) // 2)])
    tail = b.split(":", 1)[1] if ":" in b else " ".join(b.split()[len(b.split()) // 2 :])
    return f"{head.strip()}: {tail.strip()}"


def synth_rows(n: int, seed: int, sentences: list[str], titles: list[str]) -> Iterator[dict]:
    """`n` abstracts of real sentences in a new order, with new titles, dates and author counts."""
    rng = random.Random(seed)
    for _ in range(n):
        target = rng.randint(*WORDS_PER_ABSTRACT)
        picked: list[str] = []
        words = 0
        while words < target:
            picked.append(rng.choice(sentences))
            words += len(picked[-1].split())
        yield {
            "title": _title(rng, titles),
            "abstract": " ".join(picked),
            "date": f"{rng.randint(2015, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "authors": rng.randint(1, 30),
        }


def write_jsonl(path: Path, rows: Iterator[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def chunk_texts(path: Path, embedder: Any, max_tokens: int) -> tuple[int, list[str]]:
    """(papers, embedder input per chunk) of a corpus file, chunked exactly as ingest chunks it.

    Sorted by length, the embedder's best case (each batch pads little), so the raw rate is a
    ceiling that ingest can approach but not pass.
    """
    from rag import corpus
    from rag.chunk import chunk_paper, embed_text

    papers = corpus.load([path]).papers
    texts = [embed_text(p, c.text) for p in papers for c in chunk_paper(p, embedder.count_tokens, max_tokens)]
    return len(papers), sorted(texts, key=lambda t: (len(t), t))


# ---------------------------------------------------------------- stores


class _ExplicitSettings(Settings):
    """Settings from explicit values only: a benchmark must not pick up the user's RAG_* or `.env`."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type, init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple:
        return (init_settings,)


def bench_settings(corpus: Path, data_dir: Path, **values: Any) -> Settings:
    return _ExplicitSettings(
        **{
            "corpus_paths": [corpus],
            "data_dir": data_dir,
            "embed_backend": "hashing",
            "llm_backend": "extractive",
            **values,
        }
    )


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a fresh `rag` process use `settings`, and nothing else of the user's RAG_*."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env.update(
        RAG_DATA_DIR=str(settings.data_dir),
        RAG_COLLECTION=settings.collection,
        RAG_CORPUS_PATHS=json.dumps([str(p) for p in settings.corpus_paths]),
        RAG_EMBED_BACKEND=settings.embed_backend,
        RAG_LLM_BACKEND=settings.llm_backend,
    )
    if settings.chroma_host:
        env.update(RAG_CHROMA_HOST=settings.chroma_host, RAG_CHROMA_PORT=str(settings.chroma_port))
    return env


def disk_bytes(path: Path) -> int:
    """Allocated bytes under `path`, as `du` counts them (sparse index files count what they use)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


class Store:
    """Where one index lives. `reset(run)` gives settings for a new, empty index; `stored` is what disk_mb measures."""

    name = ""

    def __init__(self, root: Path, corpus: Path, embed_backend: str = "hashing") -> None:
        self.root, self.corpus, self.embed_backend = root, corpus, embed_backend
        self.settings: Settings | None = None
        self.stored: Path | None = None

    def reset(self, run: int) -> Settings:
        raise NotImplementedError

    @property
    def used(self) -> tuple[Settings, Path]:
        """The settings and folder of the index the last `reset` made."""
        assert self.settings is not None and self.stored is not None, "reset() first"
        return self.settings, self.stored

    def close(self) -> None:
        """Stop what the store runs; its files stay until the bench folder is cleaned."""


class EmbeddedStore(Store):
    name = "embedded"

    def reset(self, run: int) -> Settings:
        if self.stored:
            shutil.rmtree(self.stored, ignore_errors=True)
        self.stored = self.root / f"run{run}"
        self.settings = bench_settings(self.corpus, self.stored, embed_backend=self.embed_backend)
        return self.settings


class ServerStore(Store):
    """A `chroma run` server on a free 127.0.0.1 port, restarted on an empty --path for every run."""

    name = "server"

    def __init__(self, root: Path, corpus: Path, log: Path) -> None:
        super().__init__(root, corpus)
        self.log = log  # outside `root`, so it outlives the index when a start fails; one bench's runs only
        log.unlink(missing_ok=True)
        self.proc: subprocess.Popen | None = None

    def reset(self, run: int) -> Settings:
        self.close()
        if self.stored:
            shutil.rmtree(self.stored, ignore_errors=True)
        self.stored = self.root / f"run{run}"
        port = _free_port()
        self.proc = _start_chroma(self.stored, port, self.log)
        self.settings = bench_settings(self.corpus, self.root / "record", chroma_host="127.0.0.1", chroma_port=port)
        return self.settings

    def close(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chroma_exe() -> str:
    beside = Path(sys.executable).parent / "chroma"
    exe = str(beside) if beside.exists() else shutil.which("chroma")
    if not exe:
        raise StepFailed("no `chroma` command beside Python or on PATH; install chromadb, or run with --no-server")
    return exe


def _start_chroma(path: Path, port: int, log: Path) -> subprocess.Popen:
    """Start `chroma run` and wait for its heartbeat; a server that dies or stays silent is a failed step."""
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    with log.open("ab") as f:
        proc = subprocess.Popen(
            [_chroma_exe(), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=path.parent,
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StepFailed(f"chroma server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=10)
    raise StepFailed(f"chroma server did not answer within {SERVER_START_TIMEOUT:.0f} s; see {log}")


# ---------------------------------------------------------------- cold processes


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one fresh `python -m rag.cli` process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd
        )
        watcher = _Watcher(proc)
        watcher.start()
        try:
            _, status, _ = os.wait4(proc.pid, 0)
        finally:
            watcher.done.set()
            watcher.join()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        reason = f"timed out after {PROCESS_TIMEOUT:.0f} s" if watcher.killed else (lines[-1] if lines else "no output")
        raise StepFailed(f"`rag {args[0]}` exited with {proc.returncode}: {reason}")
    if not watcher.peak_kb:
        raise StepFailed("no /proc/PID/status to read peak memory from (the benchmark needs Linux)")
    return wall, watcher.peak_kb / 1024, stdout


class _Watcher(threading.Thread):
    """Samples a child's VmHWM every 20 ms and kills it past PROCESS_TIMEOUT.

    Not ru_maxrss: Linux carries the parent's peak RSS at fork into the child's, so every child of
    this (large) process would report the parent's memory.
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.proc, self.done = proc, threading.Event()
        self.peak_kb, self.killed = 0, False

    def run(self) -> None:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        status = Path(f"/proc/{self.proc.pid}/status")
        while not self.done.wait(0.02):
            try:
                hwm = next((line for line in status.read_text().splitlines() if line.startswith("VmHWM:")), "")
            except OSError:  # exited between two samples
                hwm = ""
            if hwm:
                self.peak_kb = max(self.peak_kb, int(hwm.split()[1]))
            if time.monotonic() > deadline and not self.killed:
                self.killed = True
                self.proc.kill()


def cold(command: str, settings: Settings, question: str, cwd: Path) -> dict[str, float]:
    """One cold `rag search` / `rag ask` and a check that it printed what its --json promises."""
    wall, rss, stdout = run_cli([command, question, "--json"], cli_env(settings), cwd)
    printed = json.loads(stdout)
    if command == "search" and not (isinstance(printed, list) and printed):
        raise StepFailed("`rag search --json` printed no hits")
    if command == "ask" and not (isinstance(printed, dict) and "answer" in printed):
        raise StepFailed("`rag ask --json` printed no answer")
    return {f"cold_{command}_s": wall, f"cold_{command}_rss_mb": rss}


def model_load_query(cwd: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_QUERY], capture_output=True, text=True, timeout=PROCESS_TIMEOUT, cwd=cwd
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise StepFailed(f"loading MiniLM failed: {lines[-1] if lines else done.returncode}")
    return {"minilm_load_query_s": float(done.stdout.strip().splitlines()[-1])}


# ---------------------------------------------------------------- in-process steps


def warm_search(settings: Settings, embedder: Any, questions: list[str]) -> dict[str, float]:
    """Open a retriever, then time every question with each method (after one warm-up query each).
    Each method starts with no paper classified yet (`safety.inert` caches its verdicts), so every
    figure includes the classifying a process does for papers it has not shown before."""
    from rag.retrieve import Retriever
    from rag.safety import forget_verdicts
    from rag.types import Filters

    opened, retriever = timed(lambda: Retriever(settings, embedder))
    figures = {"retriever_open_s": opened}
    for method in METHODS:
        retriever.search(questions[0], settings.top_k, Filters(), method)
        forget_verdicts()
        ms = [1000 * timed(partial(retriever.search, q, settings.top_k, Filters(), method))[0] for q in questions]
        figures[f"warm_{method}_p50_ms"] = statistics.median(ms)
        figures[f"warm_{method}_p95_ms"] = statistics.quantiles(ms, n=20, method="inclusive")[-1]
    return figures


def load_questions(limit: int = QUERIES) -> list[str]:
    """The first `limit` questions of eval/datasets/*.jsonl, in file order: the same set every run."""
    from rag.dev.evaluate import load_datasets

    questions = [q.question for q in load_datasets([PROJECT_ROOT / "eval" / "datasets"])][:limit]
    if len(questions) < 2:
        raise ConfigError(
            "the benchmark times searches with eval/datasets/*.jsonl questions; that folder has fewer than 2"
        )
    return questions


# ---------------------------------------------------------------- the run


class Bench:
    """One benchmark run: the MiniLM sample, then each corpus size against each store, in that order."""

    def __init__(self, options: Options, console: Console) -> None:
        from rag.embed import HashingEmbedding

        self.o = options
        self.console = console
        self.embedder = HashingEmbedding()
        self.questions = load_questions()
        self.work = options.out / "work"

    def say(self, where: str) -> Callable[[str], None]:
        return lambda text: self.console.print(f"[dim]{escape(where)}[/dim] {text}", highlight=False)

    @contextmanager
    def bar(self, label: str) -> Iterator[Callable[[int, int], None]]:
        """An ingest progress callback drawn as a transient bar."""
        columns = (TextColumn(escape(label)), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(label, total=None)
            yield lambda done, total: progress.update(task, completed=done, total=total)

    def run(self) -> dict:
        started = time.perf_counter()
        shutil.rmtree(self.work, ignore_errors=True)
        self.o.out.mkdir(parents=True, exist_ok=True)
        meta = self.meta()
        model = self.model_block()
        sizes = [self.size_block(n, model["figures"]["minilm_load_query_s"]) for n in self.o.sizes]
        meta.update(load_end=[round(x, 2) for x in os.getloadavg()], elapsed_s=round(time.perf_counter() - started, 1))
        shutil.rmtree(self.work, ignore_errors=True)
        result = json.loads(json.dumps({"meta": meta, "model": model, "sizes": sizes}, default=asdict))
        (self.o.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
        plot(result, self.o.out / "bench.png")
        return result

    def meta(self) -> dict:
        import chromadb

        return {
            "command": shlex.join(["rag", *sys.argv[1:]]),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "load_start": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(),
            "python": platform.python_version(),
            "chromadb": chromadb.__version__,
            "embedder": self.embedder.model_name,
            "runs": self.o.runs,
            "sizes": list(self.o.sizes),
            "server": self.o.server,
            "seed": SEED,
            "questions": len(self.questions),
        }

    def model_block(self) -> dict:
        """MiniLM on the first abstracts of the default corpus: raw rate, ingest rate, cold load cost."""
        from rag import corpus
        from rag.embed import MiniLMEmbedding
        from rag.ingest import ingest

        say = self.say(f"MiniLM, {self.o.model_sample} abstracts")
        path = self.work / "model-sample.jsonl"
        try:
            papers = corpus.load([DEFAULT_CORPUS]).papers[: self.o.model_sample]
            write_jsonl(path, ({"title": p.title, "abstract": p.abstract, "date": p.date_raw} for p in papers))
            embedder = MiniLMEmbedding()
            n, texts = chunk_texts(path, embedder, CHUNK_TOKENS)  # loads the model, so no run pays for it
        except Exception as e:  # e.g. the model package is missing: the rest of the bench still runs
            return {"papers": 0, "chunks": 0, "figures": failed(list(MODEL_FIGURES), one_line(e))}
        store = EmbeddedStore(self.work / "model", path, embed_backend="onnx")

        def pair_run(run: int) -> dict[str, float]:
            """Raw embedding then ingest of the same texts, back to back, so both see the same machine load."""
            raw, _ = timed(lambda: embedder.get_text_embedding_batch(texts))
            settings = store.reset(run)
            with self.bar("MiniLM ingest") as progress:
                seconds, _ = timed(lambda: ingest([path], settings, embedder, on_progress=progress))
            return {
                "minilm_raw_papers_per_s": n / raw,
                "minilm_ingest_papers_per_s": n / seconds,
                "minilm_ingest_vs_raw": raw / seconds,
            }

        f = measure(
            ["minilm_raw_papers_per_s", "minilm_ingest_papers_per_s", "minilm_ingest_vs_raw"],
            self.o.runs,
            pair_run,
            say,
        )
        f |= measure(["minilm_load_query_s"], self.o.runs, lambda _: model_load_query(self.o.out), say)
        return {"papers": n, "chunks": len(texts), "figures": {k: f[k] for k in MODEL_FIGURES}}

    def size_block(self, chunks: int, minilm_load: Figure) -> dict:
        """Build the corpus of about `chunks` chunks, time the raw embedder on it, then every store."""
        from rag import corpus

        say = self.say(f"{chunks:,} chunks")
        path = self.o.out / f"corpus-{chunks}.jsonl"
        block: dict[str, Any] = {"target_chunks": chunks, "papers": 0, "chunks": 0, "corpus": path.name}
        root = self.work / str(chunks)
        stores: list[Store] = [EmbeddedStore(root / "embedded", path)]
        if self.o.server:
            stores.append(ServerStore(root / "server", path, self.o.out / f"chroma-{chunks}.log"))
        try:
            sentences, titles = sentence_pool(corpus.load([DEFAULT_CORPUS]).papers)
            write_jsonl(path, synth_rows(max(1, round(chunks / 2)), SEED, sentences, titles))
            synth = SynthCorpus(path, *chunk_texts(path, self.embedder, CHUNK_TOKENS))
        except Exception as e:  # the corpus is read and chunked by the code under test, which may crash
            say(f"[red]failed[/red]: {escape(one_line(e))}")
            return block | {
                "figures": failed(list(SIZE_FIGURES), one_line(e)),
                "stores": {store.name: failed(list(STORE_FIGURES), one_line(e)) for store in stores},
            }
        say(f"corpus {path.name}: {synth.papers:,} papers, {synth.chunks:,} chunks")

        def raw_run(_: int) -> dict[str, float]:
            return {
                "raw_embed_papers_per_s": synth.papers
                / timed(lambda: self.embedder.get_text_embedding_batch(synth.texts))[0]
            }

        raw = measure(["raw_embed_papers_per_s"], self.o.runs, raw_run, say)
        return block | {
            "papers": synth.papers,
            "chunks": synth.chunks,
            "figures": raw,
            "stores": {
                store.name: self.store_block(store, synth, raw["raw_embed_papers_per_s"], minilm_load)
                for store in stores
            },
        }

    def store_block(self, store: Store, synth: SynthCorpus, raw: Figure, minilm_load: Figure) -> dict[str, Figure]:
        """Every per-index figure for one store; the index of the last ingest run serves the later steps."""
        from rag.ingest import ingest

        say = self.say(f"{synth.chunks:,} chunks, {store.name}")

        def ingest_run(run: int) -> dict[str, float]:
            settings = store.reset(run)
            with self.bar(f"ingest {run + 1}/{self.o.runs}") as progress:
                seconds, _ = timed(lambda: ingest([synth.path], settings, self.embedder, on_progress=progress))
            return {"ingest_s": seconds, "ingest_papers_per_s": synth.papers / seconds}

        def reingest_run(_: int) -> dict[str, float]:
            seconds, report = timed(lambda: ingest([synth.path], store.used[0], self.embedder))
            if report.embedded:
                raise StepFailed(f"re-ingest of an unchanged corpus embedded {report.embedded} chunks")
            return {"reingest_s": seconds}

        def question(run: int) -> str:
            return self.questions[run % len(self.questions)]

        later: list[tuple[list[str], int, Callable[[int], dict[str, float]]]] = [
            (["reingest_s"], self.o.runs, reingest_run),
            (
                ["cold_search_s", "cold_search_rss_mb"],
                self.o.runs,
                lambda r: cold("search", store.used[0], question(r), self.o.out),
            ),
            (
                ["cold_ask_s", "cold_ask_rss_mb"],
                self.o.runs,
                lambda r: cold("ask", store.used[0], question(r), self.o.out),
            ),
            (
                ["retriever_open_s"] + [n for n in STORE_FIGURES if n.startswith("warm_")],
                self.o.runs,
                lambda _: warm_search(store.used[0], self.embedder, self.questions),
            ),
            (["disk_mb"], 1, lambda _: {"disk_mb": disk_bytes(store.used[1]) / 2**20}),
        ]
        try:
            f = measure(["ingest_s", "ingest_papers_per_s"], self.o.runs, ingest_run, say)
            for names, runs, fn in later:  # without an index there is nothing to time
                f |= (
                    measure(names, runs, fn, say)
                    if f["ingest_s"].error is None
                    else failed(names, "not measured: the ingest failed")
                )
        finally:
            store.close()
        f["ingest_vs_raw"] = derived(lambda a, b: a / b, f["ingest_papers_per_s"], raw)
        f["cold_search_minilm_s"] = derived(lambda a, b: a + b, f["cold_search_s"], minilm_load)
        return {k: f[k] for k in STORE_FIGURES}


def run(options: Options, console: Console) -> dict:
    """Run the whole benchmark; writes bench.json and bench.png into options.out and returns the JSON."""
    return Bench(options, console).run()


# ---------------------------------------------------------------- report


def _cell(fig: dict) -> str:
    if fig["value"] is None:
        return "[red]failed[/red]"
    v = fig["value"]
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def tables(result: dict) -> list[Table]:
    """The figures per corpus size and store, the MiniLM sample, and every error in one line."""
    columns = [(s, name) for s in result["sizes"] for name in s["stores"]]
    main = Table(
        "figure",
        "unit",
        *(f"{s['chunks']:,} chunks\n{name}" for s, name in columns),
        title=f"rag bench (median of {result['meta']['runs']})",
    )
    for fig, (unit, _) in {**SIZE_FIGURES, **STORE_FIGURES}.items():
        main.add_row(
            fig,
            unit,
            *(_cell(s["figures"][fig] if fig in SIZE_FIGURES else s["stores"][name][fig]) for s, name in columns),
        )
    model = result["model"]
    sample = Table(
        "figure", "unit", "value", title=f"MiniLM on {model['papers']} real abstracts ({model['chunks']} chunks)"
    )
    for fig, (unit, _) in MODEL_FIGURES.items():
        sample.add_row(fig, unit, _cell(model["figures"][fig]))
    errors = Table("where", "figures", "error", title="Failed steps")
    for where, figures in _failures(result).items():
        for error, names in figures.items():
            errors.add_row(where, ", ".join(names), escape(error))
    return [main, sample] + ([errors] if errors.row_count else [])


def _failures(result: dict) -> dict[str, dict[str, list[str]]]:
    """where -> error -> figures it stopped (derived figures that merely inherit an error are left out)."""
    places = [("MiniLM sample", result["model"]["figures"])]
    for s in result["sizes"]:
        places += [(f"{s['chunks']:,} chunks {name}", {**s["figures"], **figs}) for name, figs in s["stores"].items()]
    out: dict[str, dict[str, list[str]]] = {}
    for where, figures in places:
        for name, fig in figures.items():
            if fig["error"] and name not in DERIVED:
                out.setdefault(where, {}).setdefault(fig["error"], []).append(name)
    return out


_STYLE: dict[str, dict[str, Any]] = {
    "embedded": {"marker": "o", "linestyle": "-"},
    "server": {"marker": "s", "linestyle": "--", "fillstyle": "none", "markersize": 9},
}


def plot(result: dict, path: Path) -> None:
    """Cold start, warm p95, ingest rate and peak memory against corpus size (embedded: filled circles, solid;
    server: open squares, dashed); failed points as red crosses on the axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("cold start (fresh process)", "s", ["cold_search_s", "cold_ask_s"]),
        ("warm search p95", "ms", [f"warm_{m}_p95_ms" for m in METHODS]),
        ("ingest rate", "papers/s", ["ingest_papers_per_s"]),
        ("peak RSS of cold rag search", "MB", ["cold_search_rss_mb"]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    stores = sorted({name for s in result["sizes"] for name in s["stores"]})
    for ax, (title, unit, names) in zip(axes.flat, panels):
        failed_x: list[int] = []
        for store in stores:
            for name in names:
                points = [
                    (s["chunks"], s["stores"][store][name]["value"]) for s in result["sizes"] if store in s["stores"]
                ]
                ok = [(x, y) for x, y in points if y is not None]
                failed_x += [x for x, y in points if y is None]
                if ok:
                    ax.plot(*zip(*ok), color=f"C{names.index(name)}", label=f"{name} ({store})", **_STYLE[store])
        if failed_x:
            ax.plot(failed_x, [0] * len(failed_x), "rx", markersize=10, label="failed (see bench.json)")
        ax.set(title=title, xlabel="chunks", ylabel=unit, xscale="log")
        ax.margins(y=0.15)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.suptitle(f"rag bench, {result['meta']['cpus']} CPUs, load {result['meta']['load_start'][0]:.2f} at start")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- a fake embeddings endpoint


class FakeEmbeddings:
    """A real HTTP `/v1/embeddings` endpoint on 127.0.0.1 answering with the hashing embedder's vectors, for
    benchmarks and tests of remote embedding: each request takes `delay` seconds plus up to `jitter` more
    (seeded: requests then finish out of order), vectors are listed in reverse (the `index` field says which
    is which), and the first `throttle` requests get HTTP 429 with Retry-After. It counts requests in flight."""

    def __init__(self, delay: float = 0.0, jitter: float = 0.0, throttle: int = 0, retry_after: float = 0.2) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from rag.embed import HashingEmbedding

        fake = self
        self.delay, self.jitter, self.throttle, self.retry_after = delay, jitter, throttle, retry_after
        self.throttled = self.served = self.in_flight = self.max_in_flight = 0
        self.vectors = HashingEmbedding()
        self._lock = threading.Lock()
        self._rng = random.Random(SEED)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:
                texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["input"]
                status, body = fake._answer(texts)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                if status == 429:
                    self.send_header("Retry-After", f"{fake.retry_after:g}")
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _answer(self, texts: list[str]) -> tuple[int, dict]:
        with self._lock:
            if self.throttled < self.throttle:
                self.throttled += 1
                return 429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}}
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            pause = self.delay + self._rng.uniform(0.0, self.jitter)
        time.sleep(pause)
        data = [{"object": "embedding", "index": i, "embedding": self.vectors.vector(t)} for i, t in enumerate(texts)]
        with self._lock:
            self.in_flight -= 1
            self.served += 1
        return 200, {"object": "list", "data": data[::-1], "model": "fake-embed"}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
