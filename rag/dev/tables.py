"""The terminal tables `rag eval` prints: retrieval, answers and conversations per split, the LLM beside
extractive, a BEIR run. Built here beside the figures they show; the CLI only prints them."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from rag.dev.evaluate_chat import FIGURES
from rag.dev.metrics import ANSWERS

RETRIEVAL = {"hit@5": "hit@5", "recall@10": "recall@10", "mrr": "MRR", "ndcg@10": "nDCG@10"}


def table(title: str, *columns: str, labels: list[str]) -> Table:
    """Compact, with a first column wide enough for every label, so that no label or figure is cut."""
    shown = Table(title=title, box=None, padding=(0, 1), collapse_padding=True, pad_edge=False)
    shown.add_column(columns[0], no_wrap=True, min_width=max(map(len, [columns[0], *labels])))
    for name in columns[1:]:
        shown.add_column(name, justify="right", no_wrap=True, min_width=max(len(name), 4))
    return shown


def cell(value: object) -> str:
    return "-" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))


def summary(splits: dict) -> list[Table]:
    """Retrieval for every split, then each split's answers (and conversations when it ran some)."""
    retrieval = table(
        "Retrieval (answerable questions)", "split", "retriever", *RETRIEVAL.values(), labels=list(splits)
    )
    for split, s in splits.items():
        for method, f in (s["retrieval"]["all"] or {}).items():
            retrieval.add_row(split, method, *(cell(f[m]) for m in RETRIEVAL))
    tables = [retrieval]
    for split, s in splits.items():
        answers = table(
            f"Answers, {split} split", "group", *(short for short, _ in ANSWERS.values()), labels=list(s["answers"])
        )
        for group, f in s["answers"].items():
            answers.add_row(group, *(cell(f[name]) for name in ANSWERS))
        tables.append(answers)
        if "conversations" in s:
            chats = table(
                f"Conversations, {split} split (last turn)", "group", *FIGURES, labels=list(s["conversations"])
            )
            for group, f in s["conversations"].items():
                chats.add_row(group, *(cell(f[name]) for name in FIGURES))
            tables.append(chats)
    return tables


def legend() -> str:
    """What each short column name of the answer tables means, one line each (Rich markup escaped)."""
    return "\n".join(f"{short}: {escape(meaning)}" for short, meaning in ANSWERS.values())


def comparison(rows: list[tuple[str, list[Any]]], modes: list[str]) -> Table:
    shown = table("Extractive vs LLM (all questions run)", "figure", *modes, labels=[label for label, _ in rows])
    for label, values in rows:
        shown.add_row(label, *(cell(v) for v in values))
    return shown


def beir(result: dict, metrics: tuple[str, ...]) -> Table:
    shown = table(
        f"BEIR {result['dataset']}: {result['queries']} test queries",
        "retriever",
        *metrics,
        labels=list(result["methods"]),
    )
    for method, f in result["methods"].items():
        shown.add_row(method, *(f"{f[m]:.3f}" for m in metrics))
    return shown
