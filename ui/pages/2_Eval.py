"""The latest eval report (`rag eval` writes it to eval/out), with its plots."""

from __future__ import annotations

import json

import streamlit as st

from rag.config import PROJECT_ROOT

st.set_page_config(page_title="Eval report", page_icon="📊", layout="wide")
st.title("Latest eval report")
out = PROJECT_ROOT / "eval" / "out"
results = out / "results.json"
if not results.exists():
    st.info("No report yet. Run `rag eval` to write one to eval/out/.")
    st.stop()
result = json.loads(results.read_text())
timing = json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else {}
st.caption(f"{result['mode']} ({result['model']}) · {len(result['questions'])} questions · {timing.get('seconds', '?')} s")
for png, caption in (("retrievers.png", "Retrievers"), ("answers_by_kind.png", "Answers by kind"), ("questions.png", "Per question")):
    if (out / png).exists():
        st.image(str(out / png), caption=caption)
st.subheader("Answers")
st.dataframe([{"group": g, **f} for g, f in result["summary"]["answers"].items()], hide_index=True)
st.subheader("Retrieval")
st.dataframe(
    [{"group": g, "retriever": m, **f} for g, ms in result["summary"]["retrieval"].items() if ms for m, f in ms.items()],
    hide_index=True,
)
wrong = [r for r in result["questions"] if not r["correct"]]
st.subheader(f"Answered wrongly ({len(wrong)})")
st.dataframe([{"id": r["id"], "kind": r["kind"], "question": r["question"]} for r in wrong], hide_index=True)
