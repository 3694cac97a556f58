"""The Eval report page: a report `rag eval` wrote, the last one it wrote first (whatever its --out), or any folder
the user names."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from rag.config import get_settings
from rag.dev.evaluate import LAST_REPORT
from rag.dev.metrics import ANSWERS, REFUSAL

OUT = Path("eval") / "out"  # `rag eval`'s default --out, relative to the folder the UI was started in
ANSWER_COLUMNS = {
    m: legend for m, legend in ANSWERS.items() if m not in REFUSAL
}  # refusal figures: a line of their own


def cell(value: object) -> str:
    """A figure as text, `-` where the metric does not apply (never `None`)."""
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def answer_rows(answers: dict[str, dict]) -> list[dict[str, str]]:
    """One row per question group; metrics this page does not know yet are kept, refusal ones dropped."""
    rows = []
    for group, figures in answers.items():
        known = {ANSWER_COLUMNS[m][0]: cell(figures[m]) for m in ANSWER_COLUMNS if m in figures}
        other = {m: cell(v) for m, v in sorted(figures.items()) if m not in ANSWER_COLUMNS and m not in REFUSAL}
        rows.append({"group": group, **known, **other})
    return rows


def refusal_line(answers: dict[str, dict]) -> str:
    figures = answers.get("all", {})
    shown = [f"{m.split('_')[1]} {cell(figures[m])}" for m in REFUSAL if figures.get(m) is not None]
    return "Refusals: " + ", ".join(shown) if shown else "Refusals: no unanswerable questions in this set"


def report_folders() -> list[Path]:
    """Folders holding a results.json: the one `rag eval` last wrote, then those under ./eval/out (a comparison
    writes one per mode)."""
    remembered = get_settings().data_dir / LAST_REPORT
    last = [Path(remembered.read_text().strip())] if remembered.is_file() else []
    found = [p.parent.resolve() for p in (*OUT.glob("results.json"), *OUT.glob("*/results.json"))]
    return list(dict.fromkeys(p for p in [*last, *sorted(found)] if (p / "results.json").is_file()))


st.title("Eval report")
folders = report_folders()
picked = st.selectbox(
    "Report folder",
    folders,
    format_func=str,
    key="eval_folder",
    help="The folder `rag eval` last wrote comes first; others found under ./eval/out follow.",
)
typed = st.text_input("Or another folder (what `rag eval --out` was given)", key="eval_folder_typed").strip()
folder = Path(typed).expanduser() if typed else picked
if folder is None:
    st.info(
        f"No report yet: none in {OUT.resolve()}, and `rag eval` has not written one with this data dir. "
        "Run `rag eval`, or type the folder its --out named."
    )
    st.stop()
results = folder / "results.json"
if not results.is_file():
    st.info(f"No report in {folder.resolve()}: it has no results.json. Type the folder `rag eval --out` wrote.")
    st.stop()
result = json.loads(results.read_text())
timing = json.loads((folder / "timing.json").read_text()) if (folder / "timing.json").exists() else {}
st.caption(
    f"{result['mode']} ({result['model']}) · {len(result['questions'])} questions · {timing.get('seconds', '?')} s"
)
for png, caption in (
    ("retrievers.png", "Retrievers"),
    ("answers_by_kind.png", "Answers by kind"),
    ("questions.png", "Per question"),
):
    if (folder / png).exists():
        st.image(str(folder / png), caption=caption)
st.subheader("Answers")
answers = result["summary"]["answers"]
st.dataframe(
    answer_rows(answers),
    hide_index=True,
    width="stretch",
    column_config={
        short: st.column_config.TextColumn(short, help=meaning) for short, meaning in ANSWER_COLUMNS.values()
    },
)
st.caption(refusal_line(answers))
st.subheader("Retrieval")
st.dataframe(
    [
        {"group": g, "retriever": m, **{k: cell(v) for k, v in f.items()}}
        for g, ms in result["summary"]["retrieval"].items()
        if ms
        for m, f in ms.items()
    ],
    hide_index=True,
    width="stretch",
)
wrong = [r for r in result["questions"] if not r["correct"]]
st.subheader(f"Answered wrongly ({len(wrong)})")
st.dataframe(
    [{"id": r["id"], "kind": r["kind"], "question": r["question"]} for r in wrong],
    hide_index=True,
    width="stretch",
    column_config={"question": st.column_config.TextColumn("question", width="large")},
)
