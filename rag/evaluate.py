"""Answer-quality evaluation: retrieval metrics for three retrievers and answer metrics, no LLM judge.

Same index + dataset -> same `results.json`, `report.md` and plots (timings go to `timing.json`).
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from rag import metrics
from rag.answer import Engine
from rag.errors import CorpusError
from rag.query import analyse

KINDS = ("lookup", "multi", "numeric", "metadata", "unanswerable")
METHODS = ("bm25", "dense", "hybrid")
RETRIEVAL = ("hit@5", "hit@10", "recall@5", "recall@10", "mrr", "ndcg@10")


@dataclass
class Question:
    id: str
    question: str
    kind: str
    gold: list[str]
    must_mention: list[str]
    style: str = ""  # optional: "lexical" or "paraphrase", to see what each retriever does with rewording


def load_dataset(path: Path) -> list[Question]:
    """Read a JSONL question set; a malformed line is an error naming the line, since a silent skip would bias the figures."""
    if not path.is_file():
        raise CorpusError(f"{path}: no such question file; give a JSONL file with id, question, kind, gold, must_mention")
    questions = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            q = Question(
                row["id"], row["question"], row.get("kind", "lookup"), list(row.get("gold", [])),
                list(row.get("must_mention", [])), row.get("style", ""),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CorpusError(f"{path}:{n}: not a question record ({type(e).__name__}: {e}); each line needs id and question") from None
        questions.append(q)
    return questions


def normalise(text: str) -> str:
    """Lower case, unify dashes and spacing, drop thousands separators: '1,000 x' matches '1000x'."""
    text = text.lower().replace("−", "-").replace("–", "-")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return re.sub(r"\s+", "", text)


def mentions(answer: str, facts: list[str]) -> float:
    if not facts:
        return 1.0
    body = normalise(answer)
    return sum(normalise(f) in body for f in facts) / len(facts)


def retrieval_row(ranked: list[str], gold: set[str]) -> dict[str, float]:
    return {
        "hit@5": metrics.hit_at_k(ranked, gold, 5),
        "hit@10": metrics.hit_at_k(ranked, gold, 10),
        "recall@5": metrics.recall_at_k(ranked, gold, 5),
        "recall@10": metrics.recall_at_k(ranked, gold, 10),
        "mrr": metrics.reciprocal_rank(ranked, gold),
        "ndcg@10": metrics.ndcg_at_k(ranked, gold, 10),
    }


def evaluate_question(engine: Engine, q: Question, judged: bool = False) -> dict:
    intent = analyse(q.question)
    gold = set(q.gold)
    row: dict = {"id": q.id, "kind": q.kind, "style": q.style, "question": q.question, "gold": q.gold}
    if gold:
        for method in METHODS:
            ranked = [h.paper.paper_id for h in engine.retriever.search(intent.query, 10, intent.filters, method=method)]
            row[method] = retrieval_row(ranked, gold)
    answer = engine.ask(q.question)
    cited = list(dict.fromkeys(c.paper_id for c in answer.citations))
    source_ids = {h.paper.paper_id for h in answer.sources}
    n_cites = len(answer.citations) + len(answer.removed)
    row["answer"] = {
        "refused": answer.refused,
        "cited": cited,
        "validity": (sum(c.paper_id in source_ids for c in answer.citations) / n_cites) if n_cites else None,
        "supported": (sum(c.supported for c in answer.citations) / len(answer.citations)) if answer.citations else None,
        "precision": (len(gold & set(cited)) / len(cited)) if cited and gold else None,
        "recall": (len(gold & set(cited)) / len(gold)) if gold else None,
        "mentions": mentions(answer.text, q.must_mention) if gold else None,
    }
    row["correct"] = answer.refused if not gold else (not answer.refused and bool(gold & set(cited)))
    if judged and engine.llm:
        from rag.judge import judge

        row["judge"] = judge(answer, engine.llm)
    return row


def _avg(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(mean(values), 4) if values else None


def summarise(rows: list[dict]) -> dict:
    """Every figure of the report, overall and per kind."""
    groups = {"all": rows} | {k: [r for r in rows if r["kind"] == k] for k in KINDS if any(r["kind"] == k for r in rows)}
    styles = sorted({r.get("style") for r in rows if r.get("style")})
    groups |= {f"style:{s}": [r for r in rows if r.get("style") == s] for s in styles}
    summary: dict = {"retrieval": {}, "answers": {}}
    for name, group in groups.items():
        answerable = [r for r in group if r["gold"]]
        summary["retrieval"][name] = {
            m: {metric: _avg([r[m][metric] for r in answerable]) for metric in RETRIEVAL} for m in METHODS
        } if answerable else None
        answered = [r for r in group if not r["answer"]["refused"]]
        unanswerable = [r for r in group if not r["gold"]]
        refused = [r for r in group if r["answer"]["refused"]]
        summary["answers"][name] = {
            "questions": len(group),
            "citation_validity": _avg([r["answer"]["validity"] for r in group]),
            "citation_supported": _avg([r["answer"]["supported"] for r in group]),
            "citation_precision": _avg([r["answer"]["precision"] for r in answerable if not r["answer"]["refused"]]),
            "citation_recall": _avg([r["answer"]["recall"] for r in answerable]),
            "must_mention": _avg([r["answer"]["mentions"] for r in answerable]),
            "refusal_precision": round(sum(not r["gold"] for r in refused) / len(refused), 4) if refused else None,
            "refusal_recall": round(sum(r["answer"]["refused"] for r in unanswerable) / len(unanswerable), 4) if unanswerable else None,
            "accuracy": round(sum(r["correct"] for r in group) / len(group), 4),
            "precision": round(sum(r["correct"] for r in answered) / len(answered), 4) if answered else None,
        }
    if any("judge" in r for r in rows):  # LLM-judged, reported apart from the deterministic figures
        summary["judged"] = {
            name: {m: _avg([r["judge"][m] for r in group if "judge" in r]) for m in ("faithfulness", "relevancy")}
            for name, group in groups.items()
        }
    return summary


def run(engine: Engine, questions: list[Question], on_progress: Callable[[int, int], None] | None = None, judged: bool = False) -> dict:
    rows = []
    for i, q in enumerate(questions, 1):
        rows.append(evaluate_question(engine, q, judged))
        if on_progress:
            on_progress(i, len(questions))
    return {"mode": engine.mode, "model": engine.model, "summary": summarise(rows), "questions": rows}


def check_thresholds(summary: dict, path: Path) -> list[str]:
    """Figures below their floor in the thresholds file, as readable lines (empty: all pass)."""
    floors = tomllib.loads(path.read_text())
    failures = []
    for section, values in floors.items():  # e.g. [answers.all] citation_validity = 0.99
        for group, figures in values.items():
            for name, floor in figures.items():
                node = summary[section][group]
                value = node.get(name) if section == "answers" else node[name.split(".")[0]][name.split(".")[1]]
                if value is None or value < floor:
                    failures.append(f"{section}.{group}.{name} = {value} is below the threshold {floor}")
    return failures


def write_report(result: dict, out: Path, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    (out / "timing.json").write_text(json.dumps({"seconds": round(seconds, 1), "questions": len(result["questions"])}))
    (out / "report.md").write_text(markdown(result))
    plot(result, out)


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [f"# Eval report ({result['mode']}: {result['model']})", "", "## Retrieval", "",
             "| group | retriever | " + " | ".join(RETRIEVAL) + " |", "|---|---|" + "---|" * len(RETRIEVAL)]
    for group, methods in s["retrieval"].items():
        for method, figures in (methods or {}).items():
            lines.append(f"| {group} | {method} | " + " | ".join(_fmt(figures[m]) for m in RETRIEVAL) + " |")
    names = list(next(iter(s["answers"].values())))
    lines += ["", "## Answers", "", "| group | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for group, figures in s["answers"].items():
        lines.append(f"| {group} | " + " | ".join(_fmt(figures[n]) for n in names) + " |")
    if "judged" in s:
        lines += ["", "## LLM-judged (llama-index Faithfulness / Relevancy; not used by the CI gate)", "",
                  "| group | faithfulness | relevancy |", "|---|---|---|"]
        lines += [f"| {g} | {_fmt(f['faithfulness'])} | {_fmt(f['relevancy'])} |" for g, f in s["judged"].items()]
    failed = [r for r in result["questions"] if not r["correct"]]
    lines += ["", f"## Questions answered wrongly ({len(failed)})", ""]
    lines += [f"- `{r['id']}` ({r['kind']}): {r['question']}" for r in failed]
    lines += ["", "![retrievers](retrievers.png)", "", "![answers per kind](answers_by_kind.png)", "", "![per question](questions.png)", ""]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def plot(result: dict, out: Path) -> None:
    """Three PNGs: retriever comparison, answer metrics per kind, pass/fail per question."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    groups = [g for g, v in s["retrieval"].items() if v]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.27
    for i, method in enumerate(METHODS):
        ax.bar([x + i * width for x in range(len(groups))], [s["retrieval"][g][method]["ndcg@10"] for g in groups], width, label=method)
    ax.set_xticks([x + width for x in range(len(groups))], groups)
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, 1.15)
    ax.set_title("Retrievers compared (nDCG@10 by question kind)")
    ax.legend(loc="upper center", ncol=3)
    fig.tight_layout()
    fig.savefig(out / "retrievers.png", dpi=100)
    plt.close(fig)

    names = ["accuracy", "citation_validity", "citation_precision", "citation_recall", "must_mention"]
    kinds = [k for k in s["answers"] if k != "all"]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar([x + i * width for x in range(len(kinds))], [s["answers"][k][name] or 0 for k in kinds], width, label=name)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(kinds))], kinds)
    ax.set_ylim(0, 1.25)
    ax.set_title(f"Answer metrics by kind ({result['mode']})")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "answers_by_kind.png", dpi=100)
    plt.close(fig)

    rows = result["questions"]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.12), 2.2))
    colours = ["tab:green" if r["correct"] else "tab:red" for r in rows]
    ax.bar(range(len(rows)), [1] * len(rows), color=colours, width=0.9)
    ax.set_yticks([])
    ax.set_xticks(range(0, len(rows), 5), [rows[i]["id"] for i in range(0, len(rows), 5)], rotation=90, fontsize=7)
    ax.set_title("Per question: green correct, red wrong")
    fig.tight_layout()
    fig.savefig(out / "questions.png", dpi=100)
    plt.close(fig)


def timed_run(
    engine: Engine, questions: list[Question], out: Path, on_progress: Callable[[int, int], None] | None = None, judged: bool = False
) -> tuple[dict, float]:
    started = time.perf_counter()
    result = run(engine, questions, on_progress, judged)
    seconds = time.perf_counter() - started
    write_report(result, out, seconds)
    return result, seconds
