"""Re-check the answers of an LLM-mode eval with this version's engine, without calling the model again.

Usage: python eval/replay.py OUT/llm/results.json [--dataset FILE ...]
       (same RAG_* settings as the run: the index, RAG_LLM_SOURCE_SENTENCES, RAG_LLM_CONTEXT)

A local model takes a minute per answer; a change to the citation check should not need another
hour of them. Each answer the model wrote (not refused, not declined, not computed from metadata)
is fed back as the reply of a scripted model, so the question, its sources and the model's text are
those of the run, and only the checks are this version's. Prints the figures before and after.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from rag.answer import METADATA_MODEL, Engine
from rag.app import open_retriever
from rag.config import DATASETS_DIR, Settings
from rag.dev import evaluate

FIGURES = ("citation_precision", "citation_recall", "citation_supported", "must_mention")


class Scripted:
    """A chat model that replies with the text it is given."""

    name = "replay"
    endpoint = "replay://"
    reply = ""

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        yield self.reply

    def yes_probability(self, messages: list[dict[str, str]]) -> None:
        return None  # a saved run kept no verdicts: the offline judgement stands


def replay(
    rows: list[dict], questions: dict[tuple[str, str], evaluate.Question], engine: Engine, chat: Scripted
) -> list[dict]:
    """The rows with each model-written answer re-checked; the others as they were."""
    out = []
    for row in rows:
        a = row["answer"]
        q = questions.get((row["dataset"], row["id"]))
        if q is None or not q.gold or a["refused"] or a.get("declined"):
            out.append(row)
            continue
        chat.reply = a["text"]
        answer = engine.ask(q.question)
        if answer.model == METADATA_MODEL or answer.refused:
            out.append(row)  # answered by code or refused before the model: nothing of the model's to check
            continue
        checked = evaluate.answer_row(answer, q)
        out.append({**row, "answer": checked, "correct": evaluate.correct(checked, set(q.gold))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument(
        "--dataset", type=Path, action="append", help="Question file(s) of the run (default: eval/datasets/*.jsonl)."
    )
    args = parser.parse_args()
    rows = json.loads(args.results.read_text(encoding="utf-8"))["questions"]
    questions = {
        (q.dataset, q.id): q for q in evaluate.load_datasets(args.dataset or sorted(DATASETS_DIR.glob("*.jsonl")))
    }
    settings = Settings()
    chat = Scripted()
    after = replay(rows, questions, Engine(settings, open_retriever(settings), chat), chat)
    changed = sum(a["answer"] != b["answer"] for a, b in zip(rows, after))
    print(f"{changed} of {len(rows)} answers scored differently")
    for group in ("all", "kind:multi"):
        for name, figures in (("before", rows), ("after", after)):
            summary = evaluate.summarise_split(figures)["answers"].get(group)
            if summary:
                print(f"{group:10} {name:6} " + "  ".join(f"{k} {evaluate.fmt(summary[k])}" for k in FIGURES))


if __name__ == "__main__":
    main()
