"""Console output shared by the command-line doors (`rag` and `rag chat`): progress bars, ingest reports and
answers with their checked citations. Only stdout and stderr are written here; nothing is computed."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from rag.config import Settings
from rag.safety import terminal_safe

out = Console()
err = Console(stderr=True)


@dataclass
class Session:
    """What this `rag` process did, which decides how it may end (see `rag.cli.main`)."""

    read_only: bool = False  # a search or an answer, which writes nothing ...
    wrote: bool = False  # ... unless it had to ingest the default corpus first


session = Session()


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback (done, total) drawn on stderr once work starts, so `--json` output stays clean;
    it shows the rate since its first report (items a second), what a user tuning a remote embedder watches."""
    bar: Progress | None = None
    first = (0, 0.0)  # (done, time) at the first report: the rate counts from there

    def update(done: int, total: int) -> None:
        nonlocal bar, first
        now = time.perf_counter()
        if bar is None:
            columns = (
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
            )
            bar = Progress(*columns, console=err)
            bar.start()
            bar.add_task(label, total=total, rate="")
            first = (done, now)
        rate = (done - first[0]) / (now - first[1]) if now > first[1] else 0.0
        shown = "" if done == first[0] else f"{rate:,.1f}/s" if rate < 10 else f"{rate:,.0f}/s"
        bar.update(bar.task_ids[0], completed=done, total=total, rate=shown)

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()


def report_problems(problems: list, notices: list) -> None:
    """What was skipped (the exit code says so), then what was read all the same but is worth knowing."""
    for problem in problems:
        err.print(f"[yellow]skipped[/yellow] {escape(str(problem))}", highlight=False, soft_wrap=True)
    for notice in notices:
        err.print(f"[cyan]notice[/cyan] {escape(str(notice))}", highlight=False, soft_wrap=True)


SKIPPED_EXIT = 3  # `rag ingest` stored what it could, but skipped entries or files (listed above the summary)


def run_ingest(
    settings: Settings, paths: list[Path], embedder: Any, store: Any = None, prune: bool = False, rebuild: bool = False
) -> int:
    """Ingest with a progress bar; print what was skipped and a summary line; return the exit code."""
    from rag.ingest import ingest

    session.wrote = True
    with progress_bar("papers read and stored") as on_progress:
        report = ingest(paths, settings, embedder, store=store, prune=prune, rebuild=rebuild, on_progress=on_progress)
    problems = report.corpus.problems if report.corpus else []  # no corpus: the files were unchanged, not read
    report_problems(problems, report.corpus.notices if report.corpus else [])
    papers = report.added + report.updated + report.repaired + report.relabelled + report.refreshed + report.unchanged
    rare = "".join(f", {n} {what}" for n, what in ((report.repaired, "repaired"), (report.refreshed, "refreshed")) if n)
    err.print(
        f"{papers} papers: {report.added} added, {report.updated} changed, "
        f"{report.relabelled} relabelled, {report.deleted} deleted, {report.unchanged} unchanged{rare}; "
        f"{report.embedded} chunks embedded in {report.seconds:.1f} s"
        + (f"; {len(problems)} problem(s), see above" if problems else ""),
        highlight=False,
    )
    return SKIPPED_EXIT if problems else 0


def reading(done: int, total: int, title: str) -> None:
    """The paper an LLM judge has just read, on one stderr line (the offline judge, instant, reports no title)."""
    if title:
        end = "\n" if done == total else "\r"
        line = f"read {done}/{total}: {terminal_safe(title)[:70]}"
        err.print(line.ljust(90), end=end, style="dim", markup=False, highlight=False, soft_wrap=True)


def print_answer_footer(answer: Any, how_to: bool = False) -> None:
    """After the streamed text: what the citation check found, and the sources. `how_to` adds the answering
    model and how to configure an LLM: said on request (or once per chat), since it is the same every time,
    and never under a refusal, where it would read as the reason for it."""
    notes, configure = _split_notice(answer.notice)
    if not answer.refused:
        _print_citations(answer)
    for note in notes:  # each on its own line: a list of left-out titles must not run into the next note
        out.print(f"[dim]{escape(note)}[/dim]", highlight=False, soft_wrap=True)
    if how_to and not answer.refused:
        model = answer.model if answer.model.startswith(answer.mode) else f"{answer.mode}, {answer.model}"
        out.print(f"[dim]{escape(f'({model}) {configure}'.strip())}[/dim]", highlight=False)


def _split_notice(notice: str) -> tuple[list[str], str]:
    """The engine joins its notes into one string: (what this answer needs said, each apart; how to configure
    an LLM, which every extractive answer carries)."""
    from rag.extractive import EXTRACTIVE_NOTICE

    configure = EXTRACTIVE_NOTICE if EXTRACTIVE_NOTICE in notice else ""
    rest = notice.replace(EXTRACTIVE_NOTICE, "").strip()
    return [part.strip() for part in _UNKNOWN_YEAR.split(rest) if part.strip()], configure


_UNKNOWN_YEAR = re.compile(r"(?=\b\d+ more match but have no known year: )")


def _print_citations(answer: Any) -> None:
    if answer.unsupported:
        out.print("[red]Unsupported: no claim in this answer kept a citation that its source backs.[/red]")
    if answer.removed:
        out.print(f"[yellow]Removed citations to sources that were not given: {answer.removed}[/yellow]")
    out.print()
    shown: set[int] = set()
    for c in answer.citations:
        if c.n not in shown:
            shown.add(c.n)
            link = answer.sources[c.n - 1].paper.link if 1 <= c.n <= len(answer.sources) else None
            title = f"[bold]\\[{c.n}][/bold] {escape(terminal_safe(c.title))}"
            out.print(title + (f" {escape(link)}" if link else ""), highlight=False)
        if c.quote:  # a computed metadata answer quotes nothing
            flag = "" if c.supported else " (unsupported)"
            out.print(f'    "{terminal_safe(c.quote)}"{flag}', markup=False, highlight=False)
    if answer.uncited:
        titles = "; ".join(
            terminal_safe(h.paper.display_title) for h in answer.sources if h.paper.paper_id in answer.uncited
        )
        out.print(f"[yellow]Also relevant but not in the answer:[/yellow] {escape(titles)}", highlight=False)


def short_time(iso: str | None) -> str:
    """An ISO timestamp as a short local time (`2024-03-11 14:05`), the way every page writes dates."""
    if not iso:
        return "never"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso
