"""`rag` command line: a thin layer over the pipeline modules. User mistakes end in one line, not a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from rag.config import Settings, get_settings
from rag.errors import ConfigError, LLMError, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Ask questions of a corpus of paper abstracts.")
corpus_app = typer.Typer(no_args_is_help=True, help="Look at the corpus files.")
app.add_typer(corpus_app, name="corpus")

out = Console()
err = Console(stderr=True)

PathsArg = Annotated[Optional[list[Path]], typer.Argument(help="Corpus files or folders (default: RAG_CORPUS_PATHS).")]
YearFrom = Annotated[Optional[int], typer.Option("--year-from", help="Only papers from this year on.")]
YearTo = Annotated[Optional[int], typer.Option("--year-to", help="Only papers up to this year.")]
SourceOpt = Annotated[Optional[list[str]], typer.Option("--source", help="Only papers from this corpus file (repeatable).")]


def main() -> None:
    try:
        app()
    except UserError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback (done, total) drawn on stderr once work starts, so `--json` output stays clean."""
    bar: Progress | None = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err)
            bar.start()
            bar.add_task(label, total=total)
        bar.update(bar.task_ids[0], completed=done, total=total)

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()


def _embedder(settings: Settings) -> Any:
    from rag.embed import make_embedder

    return make_embedder(settings)


def _report_problems(problems: list) -> None:
    for problem in problems:
        err.print(f"[yellow]skipped[/yellow] {escape(str(problem))}", highlight=False, soft_wrap=True)


def run_ingest(settings: Settings, paths: list[Path], embedder: Any, collection: Any = None, prune: bool = False) -> None:
    from rag.index import ingest

    with progress_bar("embedding") as on_progress:
        report = ingest(paths, settings, embedder, collection=collection, prune=prune, on_progress=on_progress)
    _report_problems(report.corpus.problems)
    err.print(
        f"{len(report.corpus.papers)} papers: {report.added} added, {report.updated} changed, "
        f"{report.relabelled} relabelled, {report.deleted} deleted, {report.unchanged} unchanged; "
        f"{report.embedded} chunks embedded in {report.seconds:.1f} s",
        highlight=False,
    )


@app.command()
def ingest(
    paths: PathsArg = None,
    prune: Annotated[bool, typer.Option(help="Also delete stored papers whose files are not among PATHS.")] = False,
) -> None:
    """Index corpus files: only new or changed papers are embedded; removed ones are deleted."""
    settings = get_settings()
    run_ingest(settings, paths or settings.corpus_paths, _embedder(settings), prune=prune)


def open_retriever(settings: Settings) -> Any:
    """The retriever over the index, ingesting the default corpus first when the index is empty."""
    from rag.index import open_collection
    from rag.retrieve import Retriever

    embedder = _embedder(settings)
    collection = open_collection(settings)
    if collection.count() == 0:
        err.print("The index is empty: ingesting the default corpus first.")
        run_ingest(settings, settings.corpus_paths, embedder, collection=collection)
    return Retriever(settings, embedder, collection)


@app.command()
def search(
    question: str,
    k: Annotated[Optional[int], typer.Option("-k", help="How many papers (default: RAG_TOP_K).")] = None,
    year_from: YearFrom = None,
    year_to: YearTo = None,
    source: SourceOpt = None,
    method: Annotated[str, typer.Option(help="hybrid, bm25 or dense.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, best first.")] = False,
) -> None:
    """Find the papers that best match a question."""
    from rag.types import Filters

    if method not in ("hybrid", "bm25", "dense"):
        raise ConfigError(f"--method {method!r} is not one of hybrid, bm25, dense")
    retriever = open_retriever(get_settings())
    hits = retriever.search(question, k, Filters(year_from, year_to, tuple(source or ())), method=method)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps([h.to_json() for h in hits], indent=2, ensure_ascii=False))
        return
    if not hits:
        out.print("No papers match." + (" The filters exclude every paper." if (year_from or year_to or source) else ""))
        return
    table = Table("#", "score", "date", "source", "title")
    for i, hit in enumerate(hits, 1):
        p = hit.paper
        table.add_row(str(i), f"{hit.score:.4f}", p.date or p.date_raw or "-", p.source, p.display_title)
    out.print(table)


@app.command()
def ask(
    question: str,
    k: Annotated[Optional[int], typer.Option("-k", help="Papers given to the answerer (default: RAG_ANSWER_K, or RAG_LIST_K for 'which papers').")] = None,
    year_from: YearFrom = None,
    year_to: YearTo = None,
    source: SourceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of streaming text.")] = False,
) -> None:
    """Answer a question with citations [n] checked against the cited abstracts."""
    from rag.answer import Streamed, make_engine
    from rag.types import Filters

    settings = get_settings()
    engine = make_engine(settings, open_retriever(settings))
    streamed = Streamed(engine.ask_stream(question, Filters(year_from, year_to, tuple(source or ())), k))
    for piece in streamed:
        if not as_json:
            out.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
    answer = streamed.answer
    if as_json:
        print(json.dumps(answer.to_json(), indent=2, ensure_ascii=False))
        return
    out.print()
    _print_answer_footer(answer)


def _print_answer_footer(answer: Any) -> None:
    """After the streamed text: what the citation check found, and the sources."""
    if answer.refused:
        out.print(f"[dim]({answer.mode}, {answer.model})[/dim]")
        return
    if answer.unsupported:
        out.print("[red]Unsupported: no claim in this answer kept a citation that its source backs.[/red]")
    if answer.removed:
        out.print(f"[yellow]Removed citations to sources that were not given: {answer.removed}[/yellow]")
    out.print()
    for c in answer.citations:
        flag = "" if c.supported else " [red](unsupported)[/red]"
        out.print(f"[bold]\\[{c.n}][/bold] {escape(c.title)}{flag}", highlight=False)
        out.print(f"    \"{c.quote}\"", markup=False, highlight=False)
    if answer.uncited:
        titles = "; ".join(h.paper.display_title for h in answer.sources if h.paper.paper_id in answer.uncited)
        out.print(f"[yellow]Also relevant but not in the answer:[/yellow] {escape(titles)}", highlight=False)
    if answer.notice:
        out.print(f"[dim]{answer.notice}[/dim]")


@app.command("eval")
def eval_command(
    dataset: Annotated[Path, typer.Option(help="Question set (JSONL).")] = Path("eval/datasets/default.jsonl"),
    mode: Annotated[str, typer.Option(help="extractive, or llm (the configured endpoint).")] = "extractive",
    out_dir: Annotated[Path, typer.Option("--out", help="Where results.json, report.md and the plots go.")] = Path("eval/out"),
    check: Annotated[Optional[Path], typer.Option(help="Thresholds file: exit 1 when a figure falls below it.")] = None,
    judge: Annotated[bool, typer.Option(help="With --mode llm: also llama-index Faithfulness/Relevancy, judged by the same LLM.")] = False,
) -> None:
    """Score retrieval (BM25, dense, hybrid) and answers on a question set; write a report with plots."""
    from rag import evaluate
    from rag.answer import Engine
    from rag.llm import make_chat_model

    if mode not in ("extractive", "llm"):
        raise ConfigError(f"--mode {mode!r} is not one of extractive, llm")
    settings = get_settings()
    questions = evaluate.load_dataset(dataset)
    llm = make_chat_model(settings) if mode == "llm" else None
    if mode == "llm" and llm is None:
        raise LLMError("--mode llm needs an LLM: set RAG_LLM_BASE_URL or RAG_LLM_BACKEND=openai")
    engine = Engine(settings, open_retriever(settings), llm)
    with progress_bar("questions") as on_progress:
        result, seconds = evaluate.timed_run(engine, questions, out_dir, on_progress, judged=judge)
    _print_summary(result["summary"])
    out.print(f"{len(questions)} questions in {seconds:.1f} s; report: {out_dir / 'report.md'}", highlight=False)
    if check:
        failures = evaluate.check_thresholds(result["summary"], check)
        for line in failures:
            err.print(f"[red]below threshold:[/red] {escape(line)}", highlight=False)
        if failures:
            raise typer.Exit(1)
        out.print(f"All figures meet {check}.", highlight=False)


def _print_summary(summary: dict) -> None:
    table = Table("retriever", "hit@5", "recall@10", "MRR", "nDCG@10", title="Retrieval (answerable questions)")
    for method, f in summary["retrieval"]["all"].items():
        table.add_row(method, *(f"{f[m]:.3f}" for m in ("hit@5", "recall@10", "mrr", "ndcg@10")))
    out.print(table)
    table = Table("kind", "n", "acc", "prec", "valid", "citeP", "citeR", "mention", "refP", "refR", title="Answers")
    for kind, f in summary["answers"].items():
        cells = [f[n] for n in ("accuracy", "precision", "citation_validity", "citation_precision", "citation_recall", "must_mention", "refusal_precision", "refusal_recall")]
        table.add_row(kind, str(f["questions"]), *("-" if v is None else f"{v:.2f}" for v in cells))
    out.print(table)


@app.command()
def ui(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8501) -> None:
    """Start the chat UI (Streamlit) on 127.0.0.1."""
    import subprocess

    from rag.config import PROJECT_ROOT

    app_file = PROJECT_ROOT / "ui" / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_file), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    out.print(f"Open http://127.0.0.1:{port}", highlight=False)
    raise typer.Exit(subprocess.call(cmd, cwd=PROJECT_ROOT))


@corpus_app.command("stats")
def corpus_stats(paths: PathsArg = None) -> None:
    """Papers per file, duplicates merged, entries skipped and why."""
    from rag import corpus
    from rag.index import last_ingest

    settings = get_settings()
    loaded = corpus.load(paths or settings.corpus_paths)
    table = Table("file", "papers")
    for name, n in loaded.per_file.items():
        table.add_row(name, str(n))
    out.print(table)
    years = sum(1 for p in loaded.papers if p.year)
    out.print(f"{len(loaded.papers)} papers after merging {loaded.merged} duplicate(s); {years} with a known year.")
    for problem in loaded.problems:
        out.print(f"skipped {escape(str(problem))}", highlight=False)
    if record := last_ingest(settings):
        out.print(f"Last ingest: {record['at']} into collection {record['collection']!r}.")


llm_app = typer.Typer(no_args_is_help=True, help="Run a local LLM for `rag ask` (needs the local-llm extra).")
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def llm_serve(
    model: Annotated[Path, typer.Option("--model", help="A GGUF model file.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on; keep 127.0.0.1 unless others must reach it (no API key).")] = "127.0.0.1",
    ctx: Annotated[int, typer.Option(help="Context window in tokens (prompt plus answer); match RAG_LLM_CONTEXT.")] = 8192,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: llama.cpp's choice).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show llama.cpp's log.")] = False,
) -> None:
    """Serve a GGUF model with llama.cpp's OpenAI-compatible server until Ctrl-C; prints the RAG_LLM_BASE_URL to set."""
    from rag.serve import serve_forever

    serve_forever(model, host, port, ctx, threads, verbose, say=lambda line: out.print(line, highlight=False, markup=False, soft_wrap=True))


# ------------------------------------------------------------ serving: the HTTP API, MCP, a terminal chat


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; keep 127.0.0.1 unless RAG_API_KEY is set.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the OpenAI-compatible HTTP API (cited chat completions, search, papers) until Ctrl-C."""
    from rag.api import serve as serve_api

    serve_api(get_settings(), host, port, say=lambda line: err.print(line, highlight=False, markup=False, soft_wrap=True))


@app.command("mcp")
def mcp_command() -> None:
    """Serve the MCP tools search_papers, ask and get_paper over stdio, for MCP clients."""
    from rag.mcp_server import run_stdio

    run_stdio(get_settings())


@app.command()
def chat(
    k: Annotated[Optional[int], typer.Option("-k", help="Papers given to the answerer (default: RAG_ANSWER_K, or RAG_LIST_K for 'which papers').")] = None,
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
