"""Answer-quality evaluation: retrieval metrics for three retrievers and answer metrics, no LLM judge.

Every figure is reported per split (dev, test, all), and within a split for all questions, per
question file, per kind and per style. The CI gate reads the test split. Same index + questions ->
same `results.json`, `report.md` and plots; timings (latency, time to first token) go to `timing.json`.
"""

from __future__ import annotations

import json
import math
import re
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from rag.answer import Engine
from rag.config import PROJECT_ROOT
from rag.dev import evaluate_chat, metrics
from rag.dev.metrics import ANSWERS, average, mentions, share
from rag.errors import ConfigError, CorpusError
from rag.question import read_question
from rag.retrieve import Method
from rag.types import Answer

DATASETS = PROJECT_ROOT / "eval" / "datasets"
KINDS = ("lookup", "multi", "numeric", "metadata", "unanswerable")
SPLITS = ("dev", "test")
METHODS: tuple[Method, ...] = ("bm25", "dense", "hybrid")
RETRIEVAL = ("hit@5", "hit@10", "recall@5", "recall@10", "mrr", "ndcg@10")
LOWER_IS_BETTER = {"false_refusals"}
# The extractive answerer cites only the sources it was given, so its raw citations are valid by construction.
UNGATED = {"extractive": {"citation_validity"}}
_FIELDS = {"id", "question", "kind", "gold", "must_mention", "style", "split"}
_MARKER = re.compile(r"\[\d+\]")  # after the citation check every kept marker is a single [n]

Progress = Callable[[int, int], None]

LAST_REPORT = "last_eval_report.txt"  # in the data dir: the folder `rag eval` last wrote its report to


@dataclass
class Question:
    id: str
    question: str
    kind: str
    gold: list[str]
    must_mention: list[str]
    style: str = ""  # optional: "lexical" or "paraphrase", to see what each retriever does with rewording
    split: str = "test"  # "dev" to tune on, "test" to gate on; a record without one is gated
    dataset: str = ""  # the question file's name
    extra: dict = field(
        default_factory=dict
    )  # fields this harness does not score (bm25_rank, expect, ...), kept as given


def load_dataset(path: Path) -> list[Question]:
    """Read a JSONL question set; a malformed line is an error naming the line, since a silent skip would bias the figures."""
    if not path.is_file():
        raise CorpusError(
            f"{path}: no such question file; give a JSONL file with id, question, kind, gold, must_mention"
        )
    questions = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            q = Question(
                str(row["id"]),
                row["question"],
                row.get("kind", "lookup"),
                list(row.get("gold", [])),
                list(row.get("must_mention", [])),
                row.get("style", ""),
                row.get("split", "test"),
                path.name,
                {k: v for k, v in sorted(row.items()) if k not in _FIELDS},
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise CorpusError(
                f"{path}:{n}: not a question record ({type(e).__name__}: {e}); each line needs id and question"
            ) from None
        if q.split not in SPLITS:
            raise CorpusError(
                f"{path}:{n}: split {q.split!r} is not one of {', '.join(SPLITS)}; fix the record or leave split out (test)"
            )
        questions.append(q)
    return questions


def question_files(paths: Iterable[Path]) -> list[Path]:
    """Every file given; a folder stands for its `*.jsonl` files in sorted order."""
    files: list[Path] = []
    for path in paths:
        found = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        if not found:
            raise CorpusError(f"{path}: no *.jsonl question files in this folder; give --dataset FILE")
        files += found
    return files


def load_datasets(paths: Iterable[Path]) -> list[Question]:
    """Single questions of every file given (conversation files are read by `load_chats`)."""
    return [
        q for f in question_files(paths) if not (f.is_file() and evaluate_chat.is_chat_file(f)) for q in load_dataset(f)
    ]


def load_chats(paths: Iterable[Path], split: str = "all") -> list[evaluate_chat.Chat]:
    """Conversations of every file given, of one split ("all": every one)."""
    chats = [
        c
        for f in question_files(paths)
        if f.is_file() and evaluate_chat.is_chat_file(f)
        for c in evaluate_chat.load_chats(f)
    ]
    return [c for c in chats if split in ("all", c.split)]


def select(questions: list[Question], split: str) -> list[Question]:
    """The questions of one split ("all": every one); none left is an error, since nothing would be measured."""
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"--split {split!r} is not one of dev, test, all")
    chosen = [q for q in questions if split in ("all", q.split)]
    if not chosen:
        raise CorpusError(f"no {split} questions in the question files; choose another --split or --dataset")
    return chosen


def retrieval_row(ranked: list[str], gold: set[str]) -> dict[str, float]:
    return {
        "hit@5": metrics.hit_at_k(ranked, gold, 5),
        "hit@10": metrics.hit_at_k(ranked, gold, 10),
        "recall@5": metrics.recall_at_k(ranked, gold, 5),
        "recall@10": metrics.recall_at_k(ranked, gold, 10),
        "mrr": metrics.reciprocal_rank(ranked, gold, 10),
        "ndcg@10": metrics.ndcg_at_k(ranked, gold, 10),
    }


def answer_row(answer: Answer, q: Question) -> dict:
    """Per-answer figures, and the answer itself (what a model wrote is what to read when a figure
    drops); None where a figure does not apply (no gold, nothing cited)."""
    gold = set(q.gold)
    cited = list(dict.fromkeys(c.paper_id for c in answer.citations))
    valid, invalid = len(_MARKER.findall(answer.text)), len(answer.removed)
    return {
        "text": answer.text,
        "refused": answer.refused,
        "declined": answer.declined,
        "cited": cited,
        "markers": valid + invalid,  # as the answerer wrote them, before invalid ones were removed
        "invalid_markers": invalid,
        "validity": valid / (valid + invalid) if valid + invalid else None,
        "supported": (sum(c.supported for c in answer.citations) / len(answer.citations)) if answer.citations else None,
        "precision": (len(gold & set(cited)) / len(cited)) if cited and gold else None,
        "recall": (len(gold & set(cited)) / len(gold)) if gold else None,
        "mentions": mentions(answer.text, q.must_mention) if gold else None,
    }


def correct(answer: dict, gold: set[str]) -> bool:
    """LitQA-style: a gold paper cited, or an unanswerable question refused (`answer` is `answer_row`'s)."""
    return answer["refused"] if not gold else (not answer["refused"] and bool(gold & set(answer["cited"])))


def evaluate_question(engine: Engine, q: Question, judged: bool = False) -> tuple[dict, dict]:
    """The question's deterministic row for results.json, and its timings for timing.json."""
    intent = read_question(q.question)
    gold = set(q.gold)
    row: dict = {
        "id": q.id,
        "dataset": q.dataset,
        "split": q.split,
        "kind": q.kind,
        "style": q.style,
        "question": q.question,
        "gold": q.gold,
        "extra": q.extra,
    }
    if gold:
        for method in METHODS:
            ranked = [
                h.paper.paper_id for h in engine.retriever.search(intent.query, 10, intent.filters, method=method)
            ]
            row[method] = retrieval_row(ranked, gold)
    answer = engine.ask(q.question)
    row["answer"] = answer_row(answer, q)
    row["correct"] = correct(row["answer"], gold)
    if judged and engine.llm:
        from rag.dev.judge import judge

        row["judge"] = judge(answer, engine.llm)
    timing = {"dataset": q.dataset, "id": q.id, "total": round(answer.timings.get("total", 0.0), 4)}
    if "first_token" in answer.timings and not answer.refused:
        timing["first_token"] = round(answer.timings["first_token"], 4)
    return row, timing


# ------------------------------------------------------------ summaries


def answer_summary(group: list[dict]) -> dict:
    answerable = [r for r in group if r["gold"]]
    unanswerable = [r for r in group if not r["gold"]]
    answered = [r for r in group if not r["answer"]["refused"]]
    refused = [r for r in group if r["answer"]["refused"]]
    return {
        "questions": len(group),
        "accuracy": share(sum(r["correct"] for r in group), len(group)),
        "precision": share(sum(r["correct"] for r in answered), len(answered)),
        "citation_validity": average(r["answer"]["validity"] for r in group),
        "citation_supported": average(r["answer"]["supported"] for r in group),
        "citation_precision": average(r["answer"]["precision"] for r in answerable if not r["answer"]["refused"]),
        "citation_recall": average(r["answer"]["recall"] for r in answerable),
        "must_mention": average(r["answer"]["mentions"] for r in answerable),
        "refusal_precision": share(sum(not r["gold"] for r in refused), len(refused)),
        "refusal_recall": share(sum(r["answer"]["refused"] for r in unanswerable), len(unanswerable)),
        "false_refusals": share(sum(r["answer"]["refused"] for r in answerable), len(answerable)),
        # LLM mode: questions the model declined though relevance passed, answered with quotes instead
        "declined": share(sum(r["answer"].get("declined", False) for r in group), len(group)),
    }


def retrieval_summary(group: list[dict]) -> dict | None:
    """Per retriever and metric, over the answerable questions; None when there are none."""
    answerable = [r for r in group if r["gold"]]
    if not answerable:
        return None
    return {m: {metric: average(r[m][metric] for r in answerable) for metric in RETRIEVAL} for m in METHODS}


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    """ "all", then one group per question file, kind and style, each in sorted order."""
    found: dict[str, list[dict]] = {"all": rows}
    for prefix, key in (("file", "dataset"), ("kind", "kind"), ("style", "style")):
        for value in sorted({r[key] for r in rows if r.get(key)}):
            found[f"{prefix}:{value}"] = [r for r in rows if r.get(key) == value]
    return found


def summarise_split(rows: list[dict]) -> dict:
    by_group = groups(rows)
    summary: dict = {
        "retrieval": {name: retrieval_summary(g) for name, g in by_group.items()},
        "answers": {name: answer_summary(g) for name, g in by_group.items()},
    }
    if any("judge" in r for r in rows):  # LLM-judged, reported apart from the deterministic figures
        summary["judged"] = {
            name: {m: average(r["judge"][m] for r in g if "judge" in r) for m in ("faithfulness", "relevancy")}
            for name, g in by_group.items()
        }
    return summary


def summarise(rows: list[dict]) -> dict:
    """Every figure of the report: split ("dev", "test", "all") -> "retrieval"/"answers" -> group -> figures."""
    splits = {s: [r for r in rows if r["split"] == s] for s in SPLITS} | {"all": rows}
    return {name: summarise_split(group) for name, group in splits.items() if group}


def run(
    engine: Engine,
    questions: list[Question],
    on_progress: Progress | None = None,
    judged: bool = False,
    chats: list[evaluate_chat.Chat] | None = None,
) -> tuple[dict, list[dict]]:
    """The result (deterministic) and the per-question timings."""
    rows, timings = [], []
    for i, q in enumerate(questions, 1):
        row, timing = evaluate_question(engine, q, judged)
        rows.append(row)
        timings.append(timing)
        if on_progress:
            on_progress(i, len(questions))
    datasets = {name: sum(r["dataset"] == name for r in rows) for name in sorted({r["dataset"] for r in rows})}
    splits = summarise(rows)
    # "summary" covers every question run (the layout readers of results.json know); "splits" adds dev and test.
    result = {
        "mode": engine.mode,
        "model": engine.model,
        "datasets": datasets,
        "summary": splits.pop("all"),
        "splits": splits,
        "questions": rows,
    }
    if chats:
        talks = evaluate_chat.run(engine, chats)
        result["conversations"] = talks
        result["summary"]["conversations"] = evaluate_chat.summary(talks)
        for name in splits:
            if chosen := [t for t in talks if t["split"] == name]:
                splits[name]["conversations"] = evaluate_chat.summary(chosen)
    return result, timings


def by_split(result: dict) -> dict[str, dict]:
    """A result's summaries keyed "dev", "test" (those run) and "all", as `summarise` returns them."""
    return result["splits"] | {"all": result["summary"]}


def latency(timings: list[dict]) -> dict[str, float | None]:
    """Median and 95th-percentile (nearest rank) answer time, and median time to the first token."""
    totals = sorted(t["total"] for t in timings)
    firsts = [t["first_token"] for t in timings if "first_token" in t]
    return {
        "median_s": round(median(totals), 3) if totals else None,
        "p95_s": round(totals[math.ceil(0.95 * len(totals)) - 1], 3) if totals else None,
        "first_token_median_s": round(median(firsts), 3) if firsts else None,
    }


# ------------------------------------------------------------ the gate


def read_thresholds(path: Path) -> list[tuple[str, str, str, str, float]]:
    """(split, section, group, figure, limit) from the thresholds file, read before a long run so a mistake fails at once."""
    try:
        floors = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such thresholds file; give --check eval/thresholds.toml") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the file") from None
    limits = []
    try:
        for split, sections in sorted(floors.items()):
            for section, by_group in sorted(sections.items()):
                for group, figures in sorted(by_group.items()):
                    for name, limit in sorted(figures.items()):
                        if (
                            section not in ("answers", "retrieval", "conversations")
                            or isinstance(limit, bool)
                            or not isinstance(limit, (int, float))
                        ):
                            raise TypeError
                        limits.append((split, section, group, name, float(limit)))
    except (TypeError, AttributeError):
        raise ConfigError(
            f"{path}: expected tables such as [test.answers.all] (figure = number) and [test.retrieval.all] "
            '("hybrid.ndcg@10" = number); fix the file'
        ) from None
    return limits


def check_thresholds(
    splits: dict, limits: list[tuple[str, str, str, str, float]], mode: str = "extractive"
) -> list[str]:
    """Figures that fail their limit (see `read_thresholds`), as readable lines; empty: all pass.

    `splits` is `summarise`'s (or `by_split`'s) output. Answers figures are named as there, retrieval ones "retriever.metric". Figures in
    LOWER_IS_BETTER are ceilings; figures that cannot fail in this mode (UNGATED) are skipped.
    """
    failures = []
    for split, section, group, name, limit in limits:
        where = f"{split}.{section}.{group}.{name}"
        if name in UNGATED.get(mode, ()):
            continue
        node = splits.get(split, {}).get(section, {}).get(group)
        if node is None:
            failures.append(f"{where}: not measured in this run (no {split} questions in group {group!r})")
            continue
        method, _, metric = name.partition(".")
        value = (node.get(method) or {}).get(metric) if section == "retrieval" else node.get(name)
        if value is None:
            failures.append(f"{where}: no such figure, or it does not apply to these questions")
        elif name in LOWER_IS_BETTER and value > limit:
            failures.append(f"{where} = {value} is above the ceiling {limit}")
        elif name not in LOWER_IS_BETTER and value < limit:
            failures.append(f"{where} = {value} is below the threshold {limit}")
    return failures


# ------------------------------------------------------------ report files


def write_report(result: dict, out: Path, seconds: float, timings: list[dict]) -> dict:
    """results.json, report.md and the plots; timing.json apart, since timings differ on every run. Returns the timing."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    timing = {
        "seconds": round(seconds, 1),
        "questions": len(result["questions"]),
        "latency": latency(timings),
        "per_question": timings,
    }
    (out / "timing.json").write_text(json.dumps(timing, indent=2, sort_keys=True))
    (out / "report.md").write_text(markdown(result))
    plot(result, out)
    return timing


def fmt(value: object) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def legend() -> list[str]:
    return [f"`{short}`: {meaning}" for short, meaning in ANSWERS.values()]


def markdown(result: dict) -> str:
    counts = ", ".join(f"{name} ({n})" for name, n in result["datasets"].items())
    lines = [
        f"# Eval report ({result['mode']}: {result['model']})",
        "",
        f"Questions: {len(result['questions'])} from {counts}.",
        "",
    ]
    for split, s in by_split(result).items():
        gate = " (the CI gate reads this split)" if split == "test" else ""
        lines += [
            f"## Split: {split}{gate}",
            "",
            "### Retrieval (answerable questions)",
            "",
            "| group | retriever | " + " | ".join(RETRIEVAL) + " |",
            "|---|---|" + "---|" * len(RETRIEVAL),
        ]
        for group, methods in s["retrieval"].items():
            for method, figures in (methods or {}).items():
                lines.append(f"| {group} | {method} | " + " | ".join(fmt(figures[m]) for m in RETRIEVAL) + " |")
        shorts = [short for short, _ in ANSWERS.values()]
        lines += ["", "### Answers", "", "| group | " + " | ".join(shorts) + " |", "|---|" + "---|" * len(shorts)]
        for group, figures in s["answers"].items():
            lines.append(f"| {group} | " + " | ".join(fmt(figures[n]) for n in ANSWERS) + " |")
        if "conversations" in s:
            lines += [
                "",
                "### Conversations (the last turn of each)",
                "",
                "| group | " + " | ".join(evaluate_chat.FIGURES) + " |",
                "|---|" + "---|" * len(evaluate_chat.FIGURES),
            ]
            lines += [
                f"| {g} | " + " | ".join(fmt(f[n]) for n in evaluate_chat.FIGURES) + " |"
                for g, f in s["conversations"].items()
            ]
        if "judged" in s:
            lines += [
                "",
                "### LLM-judged (llama-index Faithfulness / Relevancy; not used by the CI gate)",
                "",
                "| group | faithfulness | relevancy |",
                "|---|---|---|",
            ]
            lines += [f"| {g} | {fmt(f['faithfulness'])} | {fmt(f['relevancy'])} |" for g, f in s["judged"].items()]
        lines.append("")
    lines += ["Answer columns (`-`: does not apply to these questions):", ""] + [f"- {line}" for line in legend()]
    failed = [r for r in result["questions"] if not r["correct"]]
    lines += ["", f"## Questions answered wrongly ({len(failed)})", ""]
    lines += [f"- `{r['id']}` ({r['split']}, {r['dataset']}, {r['kind']}): {r['question']}" for r in failed]
    lines += [
        "",
        "![retrievers](retrievers.png)",
        "",
        "![answers per kind](answers_by_kind.png)",
        "",
        "![per question](questions.png)",
        "",
    ]
    return "\n".join(lines)


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend, imported late since it is slow to load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars(ax: Any, labels: list[str], series: dict[str, list[float | None]]) -> None:
    """Grouped bars, one group per label; a zero is labelled "0" and a figure that does not apply "n/a"."""
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        xs = [x + i * width for x in range(len(labels))]
        ax.bar(xs, [math.nan if v is None else v for v in values], width, label=name)
        for x, v in zip(xs, values):
            if not v:
                ax.text(x, 0.01, "n/a" if v is None else "0", rotation=90, fontsize=7, ha="center", va="bottom")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))], labels, fontsize=8)


def plot(result: dict, out: Path) -> None:
    """Three PNGs over all questions run: retrievers by group, answer metrics per kind, pass/fail per question."""
    plt = pyplot()
    s = result["summary"]
    shown = [g for g, v in s["retrieval"].items() if v and not g.startswith("file:")]
    fig, ax = plt.subplots(figsize=(10, 4))
    bars(ax, shown, {m: [s["retrieval"][g][m]["ndcg@10"] for g in shown] for m in METHODS})
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, 1.15)
    ax.set_title("Retrievers compared (nDCG@10 by question kind and style)")
    ax.legend(loc="upper center", ncol=3)
    fig.tight_layout()
    fig.savefig(out / "retrievers.png", dpi=100)
    plt.close(fig)

    names = [
        "accuracy",
        "citation_validity",
        "citation_precision",
        "citation_recall",
        "must_mention",
        "refusal_precision",
        "refusal_recall",
        "false_refusals",
    ]
    kinds = [g for g in s["answers"] if g.startswith("kind:")]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    bars(
        ax,
        [k.removeprefix("kind:") for k in kinds],
        {ANSWERS[n][0]: [s["answers"][k][n] for k in kinds] for n in names},
    )
    ax.set_ylim(0, 1.3)
    ax.set_title(f"Answer metrics by kind ({result['mode']}; an empty slot does not apply; fRef: lower is better)")
    ax.legend(fontsize=8, ncol=4, loc="upper center")
    fig.tight_layout()
    fig.savefig(out / "answers_by_kind.png", dpi=100)
    plt.close(fig)

    rows = result["questions"]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.12), 2.2))
    ax.bar(
        range(len(rows)), [1] * len(rows), color=["tab:green" if r["correct"] else "tab:red" for r in rows], width=0.9
    )
    ax.set_yticks([])
    ax.set_xticks(range(0, len(rows), 5), [rows[i]["id"] for i in range(0, len(rows), 5)], rotation=90, fontsize=7)
    ax.set_title("Per question: green correct, red wrong")
    fig.tight_layout()
    fig.savefig(out / "questions.png", dpi=100)
    plt.close(fig)


def timed_run(
    engine: Engine,
    questions: list[Question],
    out: Path,
    on_progress: Progress | None = None,
    judged: bool = False,
    chats: list[evaluate_chat.Chat] | None = None,
) -> tuple[dict, dict]:
    """Run and write the report to `out`, and name `out` in the data dir (the UI's Eval page opens it first);
    the result and its timing."""
    started = time.perf_counter()
    result, timings = run(engine, questions, on_progress, judged, chats)
    timing = write_report(result, out, time.perf_counter() - started, timings)
    engine.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (engine.settings.data_dir / LAST_REPORT).write_text(str(out.resolve()))
    return result, timing


# ------------------------------------------------------------ extractive vs LLM

COMPARED = [  # (label, figure in the answers summary or in the latency figures)
    ("citation validity (raw markers)", "citation_validity"),
    ("citation precision", "citation_precision"),
    ("citation recall", "citation_recall"),
    ("supported share", "citation_supported"),
    ("must-mention", "must_mention"),
    ("refusal precision", "refusal_precision"),
    ("refusal recall", "refusal_recall"),
    ("false refusals (lower is better)", "false_refusals"),
    ("LLM declined, quotes shown instead", "declined"),
    ("median latency (s)", "median_s"),
    ("p95 latency (s)", "p95_s"),
    ("median time to first token (s)", "first_token_median_s"),
]


def comparison(runs: dict[str, tuple[dict, dict]]) -> list[tuple[str, list[float | None]]]:
    """One row per compared figure, one value per mode (over all questions run)."""
    rows = []
    for label, name in COMPARED:
        values = []
        for result, timing in runs.values():
            figures = result["summary"]["answers"]["all"] | timing["latency"]
            values.append(figures[name])
        rows.append((label, values))
    return rows


def write_comparison(runs: dict[str, tuple[dict, dict]], out: Path) -> list[tuple[str, list[float | None]]]:
    """compare.md and compare.png in `out`; the rows, for the terminal."""
    rows = comparison(runs)
    modes = list(runs)
    models = ", ".join(f"{m}: {runs[m][0]['model']}" for m in modes)
    n = len(next(iter(runs.values()))[0]["questions"])
    lines = [
        f"# Extractive vs LLM ({n} questions; {models})",
        "",
        "| figure | " + " | ".join(modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    lines += [f"| {label} | " + " | ".join(fmt(v) for v in values) + " |" for label, values in rows]
    lines += [
        "",
        "Latency is wall time per question on this machine; it varies between runs.",
        "",
        "![compare](compare.png)",
        "",
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text("\n".join(lines))

    plt = pyplot()
    quality = [(label, v) for label, v in rows if "(s)" not in label]
    speed = [(label, v) for label, v in rows if "(s)" in label]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    for ax, part, ylabel in ((left, quality, "share"), (right, speed, "seconds")):
        bars(ax, [label.split(" (")[0] for label, _ in part], {m: [v[i] for _, v in part] for i, m in enumerate(modes)})
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    left.set_ylim(0, 1.15)
    left.set_title("Answer quality")
    right.set_title("Latency")
    fig.tight_layout()
    fig.savefig(out / "compare.png", dpi=100)
    plt.close(fig)
    return rows
