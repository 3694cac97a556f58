"""`rag` command line: a thin layer over the pipeline modules. User mistakes end in one line, not a traceback."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from rag.app import open_retriever
from rag.config import Settings, get_settings
from rag.console import (
    err,
    out,
    print_answer_footer,
    progress_bar,
    reading,
    run_ingest,
    session,
    short_time,
)
from rag.errors import ConfigError, LLMError, UserError, require_extra
from rag.safety import terminal_safe

EVAL_MODULES = ("matplotlib",)  # the eval extra: `rag eval` and `rag bench` draw their plots with it


class Method(str, Enum):
    hybrid = "hybrid"
    bm25 = "bm25"
    dense = "dense"


class Mode(str, Enum):
    extractive = "extractive"
    llm = "llm"


class Split(str, Enum):
    dev = "dev"
    test = "test"
    all = "all"


app = typer.Typer(add_completion=False, no_args_is_help=True, help="Ask questions of a corpus of paper abstracts.")
corpus_app = typer.Typer(no_args_is_help=True, help="Look at the corpus files.")
app.add_typer(corpus_app, name="corpus")

PathsArg = Annotated[Optional[list[Path]], typer.Argument(help="Corpus files or folders (default: RAG_CORPUS_PATHS).")]
YearFrom = Annotated[Optional[int], typer.Option("--year-from", help="Only papers from this year on.")]
YearTo = Annotated[Optional[int], typer.Option("--year-to", help="Only papers up to this year.")]
SourceOpt = Annotated[
    Optional[list[str]], typer.Option("--source", help="Only papers from this corpus file (repeatable).")
]
CategoryOpt = Annotated[
    Optional[list[str]], typer.Option("--category", help="Only papers in this category (repeatable).")
]
VenueOpt = Annotated[Optional[list[str]], typer.Option("--venue", help="Only papers from this venue (repeatable).")]


def main() -> None:
    """The `rag` command. A read-only command that succeeded ends at once, its output flushed: the
    interpreter's teardown of Chroma's embedded index, loaded in memory for the search, takes ~0.35 s
    at 100k chunks and saves nothing. Every other command ends the usual way."""
    try:
        app()
    except UserError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit as e:
        if e.code in (0, None) and session.read_only and not session.wrote:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        raise


def _embedder(settings: Settings) -> Any:
    from rag.embed import make_embedder

    return make_embedder(settings)


@app.command()
def ingest(
    paths: PathsArg = None,
    prune: Annotated[bool, typer.Option(help="Also delete stored papers whose files are not among PATHS.")] = False,
    rebuild: Annotated[
        bool, typer.Option(help="Drop the index and embed everything again (e.g. after changing the embedder).")
    ] = False,
    repair: Annotated[
        bool, typer.Option(help="Embed the chunks again from the stored papers (after a crash); reads no corpus file.")
    ] = False,
) -> None:
    """Index corpus files: only new or changed papers are embedded; removed ones are deleted.

    Exits 3 when entries or files were skipped (each listed with its reason), 1 on an error.
    """
    settings = get_settings()
    if repair:
        raise typer.Exit(run_repair(settings, paths, rebuild))
    raise typer.Exit(
        run_ingest(settings, paths or settings.corpus_paths, _embedder(settings), prune=prune, rebuild=rebuild)
    )


def run_repair(settings: Settings, paths: list[Path] | None, rebuild: bool) -> int:
    """`rag ingest --repair`: from the paper records alone, so it works when the corpus files are gone."""
    from rag.ingest import repair

    if paths or rebuild:
        raise ConfigError("--repair reads no corpus file and keeps the index: give it no PATHS and no --rebuild")
    session.wrote = True
    with progress_bar("embedding stored papers") as on_progress:
        restored = repair(settings, _embedder(settings), on_progress)
    err.print(
        f"{restored.store.count()} papers stored; {restored.papers} embedded again ({restored.chunks} chunks) "
        "from their stored abstracts",
        highlight=False,
    )
    return 0


@app.command()
def search(
    question: str,
    k: Annotated[Optional[int], typer.Option("-k", help="How many papers (default: RAG_TOP_K).")] = None,
    year_from: YearFrom = None,
    year_to: YearTo = None,
    source: SourceOpt = None,
    category: CategoryOpt = None,
    venue: VenueOpt = None,
    method: Annotated[
        Method, typer.Option(help="Which retriever: both fused, or one alone for comparison.")
    ] = Method.hybrid,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, best first.")] = False,
) -> None:
    """Find the papers that best match a question."""
    session.read_only = True
    from rag.question import check_request
    from rag.types import Filters

    settings = get_settings()
    filters = Filters(year_from, year_to, tuple(source or ()), tuple(category or ()), tuple(venue or ()))
    check_request(question, filters, k, settings.max_question_chars)
    retriever = open_retriever(settings)
    hits = retriever.search(question, k, filters, method=method.value)
    if as_json:
        print(json.dumps([h.to_json() for h in hits], indent=2, ensure_ascii=False))
        return
    if not hits:
        out.print("No papers match." + (" The filters exclude every paper." if filters.active() else ""))
        return
    table = Table("#", "score", "date", "source", "title")
    for i, hit in enumerate(hits, 1):
        p = hit.paper
        table.add_row(str(i), f"{hit.score:.4f}", p.date or p.date_raw or "-", p.source, p.display_title)
    out.print(table)


@app.command()
def ask(
    question: str,
    k: Annotated[
        Optional[int],
        typer.Option(
            "-k", help="Papers given to the answerer (default: RAG_ANSWER_K, or RAG_LIST_K for 'which papers')."
        ),
    ] = None,
    year_from: YearFrom = None,
    year_to: YearTo = None,
    source: SourceOpt = None,
    category: CategoryOpt = None,
    venue: VenueOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of streaming text.")] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown with a reference list.")] = False,
    bib: Annotated[Optional[Path], typer.Option("--bib", help="Also write the cited papers as BibTeX here.")] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also name the answering model and how to configure one.")
    ] = False,
) -> None:
    """Answer a question with citations [n] checked against the cited abstracts."""
    session.read_only = True
    from rag.answer import Streamed, make_engine
    from rag.types import Filters

    settings = get_settings()
    engine = make_engine(settings, open_retriever(settings))
    filters = Filters(year_from, year_to, tuple(source or ()), tuple(category or ()), tuple(venue or ()))
    streamed = Streamed(engine.ask_stream(question, filters, k, on_progress=reading))
    for piece in streamed:
        if not (as_json or as_markdown):
            out.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
    answer = streamed.answer
    assert answer is not None  # set when the stream ends
    if bib:
        _write_bib(bib, answer)
    if as_json:
        from rag.references import answer_json

        print(json.dumps(answer_json(answer), indent=2, ensure_ascii=False))
    elif as_markdown:
        from rag.references import markdown

        print(terminal_safe(markdown(answer)), end="")
    else:
        out.print()
        print_answer_footer(answer, how_to=verbose)


def _write_bib(path: Path, answer: Any) -> None:
    """The cited papers as BibTeX; a file that cannot be written is one line on stderr, after the answer."""
    from rag.references import bibtex

    try:
        path.write_text(bibtex([p for _, p in answer.cited()]), encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror}); give a writable --bib path") from None


@app.command("eval")
def eval_command(
    dataset: Annotated[
        Optional[list[Path]],
        typer.Option(
            help="Question file (JSONL) or folder of them; repeatable (default: every *.jsonl in eval/datasets/)."
        ),
    ] = None,
    split: Annotated[Split, typer.Option(help="Run only the dev or the test questions, or all.")] = Split.all,
    mode_opt: Annotated[
        Mode, typer.Option("--mode", help="extractive, or llm (the configured endpoint).")
    ] = Mode.extractive,
    compare: Annotated[
        bool, typer.Option(help="With --mode llm: run extractive on the same questions too and write compare.md.")
    ] = False,
    beir: Annotated[
        Optional[Path],
        typer.Option(
            help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv): score the retrievers on it instead."
        ),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where results.json, report.md and the plots go.")] = Path(
        "eval/out"
    ),
    check: Annotated[
        Optional[Path], typer.Option(help="Thresholds file: exit 1 when a test-split figure fails it.")
    ] = None,
    judge: Annotated[
        bool, typer.Option(help="With --mode llm: also llama-index Faithfulness/Relevancy, judged by the same LLM.")
    ] = False,
) -> None:
    """Score retrieval (BM25, dense, hybrid) and answers per split, file, kind and style; write a report with plots."""
    require_extra("rag eval", "eval", *EVAL_MODULES)
    from rag.answer import Engine
    from rag.dev import evaluate, tables
    from rag.llm import make_chat_model

    if beir:
        return _beir_eval(beir, out_dir)
    mode = mode_opt.value
    if compare and mode != "llm":
        raise ConfigError("--compare sets extractive beside the LLM: use it with --mode llm")
    limits = evaluate.read_thresholds(check) if check else None
    settings = get_settings()
    questions = evaluate.select(evaluate.load_datasets(dataset or [evaluate.DATASETS]), split.value)
    chats = evaluate.load_chats(dataset or [evaluate.DATASETS], split.value)
    llm = make_chat_model(settings) if mode == "llm" else None
    if mode == "llm" and llm is None:
        raise LLMError("--mode llm needs an LLM: set RAG_LLM_BASE_URL or RAG_LLM_BACKEND=openai")
    retriever = open_retriever(settings)
    runs = {}
    for name, model in ({"extractive": None, "llm": llm} if compare else {mode: llm}).items():
        with progress_bar(f"{name} questions") as on_progress:
            engine = Engine(settings, retriever, model)
            runs[name] = evaluate.timed_run(
                engine,
                questions,
                out_dir / name if compare else out_dir,
                on_progress,
                judged=judge and model is not None,
                chats=chats,
            )
    result, timing = runs[mode]
    for shown in tables.summary(evaluate.by_split(result)):
        out.print(shown)
    out.print(tables.legend(), style="dim", highlight=False)
    report = out_dir / mode / "report.md" if compare else out_dir / "report.md"
    talks = f" and {len(chats)} conversations" if chats else ""
    out.print(f"{len(questions)} questions{talks} in {timing['seconds']:.1f} s; report: {report}", highlight=False)
    if compare:
        out.print(tables.comparison(evaluate.write_comparison(runs, out_dir), list(runs)))
        out.print(f"Side by side: {out_dir / 'compare.md'}", highlight=False)
    if limits is not None:
        failures = evaluate.check_thresholds(evaluate.by_split(result), limits, mode)
        for line in failures:
            err.print(f"[red]threshold failed:[/red] {escape(line)}", highlight=False, soft_wrap=True)
        if failures:
            raise typer.Exit(1)
        out.print(f"All {mode} figures meet {check}.", highlight=False)


# The project's .streamlit/config.toml, as flags: an installed package has no such file beside it.
STREAMLIT_FLAGS = (
    "--server.address",
    "127.0.0.1",
    "--server.headless",
    "true",
    "--browser.gatherUsageStats",
    "false",
    "--client.toolbarMode",
    "viewer",
)


def _beir_eval(folder: Path, out_dir: Path) -> None:
    """Ingest a BEIR folder into its own collection and score the three retrievers on its test queries."""
    from rag.dev import beir, tables

    settings = get_settings()
    with progress_bar("embedding") as on_progress:
        bench = beir.prepare(folder, settings, _embedder(settings), on_progress)
    with progress_bar("queries") as on_progress:
        result = beir.score(bench, on_progress)
    beir.write(result, out_dir)
    out.print(tables.beir(result, beir.METRICS))
    out.print(
        f"{result['indexed']} of {result['documents']} documents indexed in collection {result['collection']!r} "
        f"({bench.ingest_s:.1f} s); results: {out_dir / 'beir.json'}, {out_dir / 'beir.png'}",
        highlight=False,
    )


@app.command()
def ui(port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8501) -> None:
    """Start the chat UI (Streamlit) on 127.0.0.1; Ctrl-C or SIGTERM stops it."""
    require_extra("rag ui", "ui", "streamlit")
    import os

    from rag.config import UI_DIR

    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(UI_DIR / "app.py"),
        "--server.port",
        str(port),
        *STREAMLIT_FLAGS,
    ]
    out.print(f"Open http://127.0.0.1:{port}", highlight=False)
    sys.stdout.flush()
    # Streamlit replaces this process, so a signal sent to `rag ui` stops the server itself
    # (a child process would outlive its parent and keep serving).
    os.execv(sys.executable, cmd)


@corpus_app.command("stats")
def corpus_stats(paths: PathsArg = None) -> None:
    """Papers per file, duplicates merged, entries skipped and why."""
    from rag import corpus
    from rag.ingest import last_ingest
    from rag.types import Corpus

    settings = get_settings()
    loaded = Corpus(papers=[])
    files = corpus.expand(paths or settings.corpus_paths, loaded.problems)
    years = sum(1 for p in corpus.scan(files, loaded) if p.year)  # streamed: an arXiv dump is never held whole
    table = Table("file", "papers")
    for name, n in loaded.per_file.items():
        table.add_row(name, str(n))
    out.print(table)
    out.print(f"{loaded.distinct} papers after merging {loaded.merged} duplicate(s); {years} with a known year.")
    for problem in loaded.problems:
        out.print(f"skipped {escape(str(problem))}", highlight=False)
    for notice in loaded.notices:
        out.print(f"notice {escape(str(notice))}", highlight=False)
    if record := last_ingest(settings):
        out.print(_ingest_line(record), highlight=False)


def _ingest_line(record: dict) -> str:
    """When the index last changed, and the last ingest when it changed nothing (so it is not taken for a sync)."""
    at = record.get("at")
    changed = (
        f"Index last changed: {short_time(at)} (collection {record.get('collection')!r})."
        if at
        else "Index never changed."
    )
    attempt = record.get("attempt") or {}
    if attempt.get("changed", True) or not attempt.get("at"):
        return changed
    problems = attempt.get("problems", 0)
    said = f" ({problems} problem(s))." if problems else "."
    return f"{changed} Last ingest: {short_time(attempt['at'])}, changed nothing{said}"


llm_app = typer.Typer(no_args_is_help=True, help="Run a local LLM for `rag ask` (needs the local-llm extra).")
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def llm_serve(
    model: Annotated[Path, typer.Option("--model", help="A GGUF model file.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    host: Annotated[
        str, typer.Option(help="Address to listen on; keep 127.0.0.1 unless others must reach it (no API key).")
    ] = "127.0.0.1",
    ctx: Annotated[
        int, typer.Option(help="Context window in tokens (prompt plus answer); match RAG_LLM_CONTEXT.")
    ] = 8192,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: llama.cpp's choice).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show llama.cpp's log.")] = False,
    parallel: Annotated[
        int,
        typer.Option(
            help="Requests decoded together (llama.cpp slots); match RAG_LLM_CONCURRENCY to judge papers in parallel."
        ),
    ] = 1,
) -> None:
    """Serve a GGUF model with llama.cpp's OpenAI-compatible server until Ctrl-C; prints the RAG_LLM_BASE_URL to set."""
    require_extra("rag llm serve", "local-llm", "xllamacpp")
    from rag.serve import serve_forever

    serve_forever(
        model,
        host,
        port,
        ctx,
        threads,
        verbose,
        parallel=parallel,
        say=lambda line: out.print(line, highlight=False, markup=False, soft_wrap=True),
    )


@app.command()
def bench(
    sizes: Annotated[
        Optional[str], typer.Option(help="Corpus sizes in chunks, comma-separated (default 10000,100000).")
    ] = None,
    runs: Annotated[Optional[int], typer.Option(help="Runs per timed step; figures are medians (default 3).")] = None,
    server: Annotated[bool, typer.Option(help="Also measure against a `chroma run` server on 127.0.0.1.")] = True,
    model_sample: Annotated[
        Optional[int], typer.Option(help="Real abstracts embedded with MiniLM for its rates (default 300).")
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="A ~500-chunk corpus, 1 run, 20 MiniLM abstracts: proves the harness works.")
    ] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the corpora, bench.json and bench.png go.")] = Path(
        "bench-out"
    ),
) -> None:
    """Measure ingest, cold start and search speed on synthetic corpora of 10k-100k chunks."""
    require_extra("rag bench", "eval", *EVAL_MODULES)
    from rag.dev import bench as bench_mod

    options = bench_mod.parse_options(sizes, runs, server, out_dir, quick, model_sample)
    result = bench_mod.run(options, err)
    for table in bench_mod.tables(result):
        out.print(table)
    out.print(
        f"{out_dir / 'bench.json'}, {out_dir / 'bench.png'}; {result['meta']['elapsed_s']:.0f} s", highlight=False
    )


# ------------------------------------------------------------ serving: the HTTP API, MCP, a terminal chat


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; keep 127.0.0.1 unless RAG_API_KEY is set.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the OpenAI-compatible HTTP API (cited chat completions, search, papers) until Ctrl-C."""
    require_extra("rag serve", "api", "fastapi", "uvicorn")
    from rag.api import serve as serve_api

    serve_api(
        get_settings(), host, port, say=lambda line: err.print(line, highlight=False, markup=False, soft_wrap=True)
    )


@app.command("mcp")
def mcp_command() -> None:
    """Serve the MCP tools search_papers, ask and get_paper over stdio, for MCP clients."""
    require_extra("rag mcp", "mcp", "mcp")
    from rag.mcp_server import run_stdio

    run_stdio(get_settings())


@app.command()
def chat(
    k: Annotated[
        Optional[int],
        typer.Option(
            "-k", help="Papers given to the answerer (default: RAG_ANSWER_K, or RAG_LIST_K for 'which papers')."
        ),
    ] = None,
    year_from: YearFrom = None,
    year_to: YearTo = None,
    source: SourceOpt = None,
) -> None:
    """Talk with the corpus: streamed cited answers, follow-up questions, /sources, /filters, /reset, /quit."""
    from rag.answer import make_engine
    from rag.chat import ChatState, run_chat
    from rag.types import Filters

    settings = get_settings()
    engine = make_engine(settings, open_retriever(settings))
    run_chat(engine, ChatState(Filters(year_from, year_to, tuple(source or ())), k))


if __name__ == "__main__":
    main()
