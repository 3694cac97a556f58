"""The UI's entry point (`rag ui` runs it): the pages, with the names the navigation shows."""

from __future__ import annotations

import streamlit as st

st.set_page_config(layout="wide")  # each page titles the browser tab with its navigation name
st.navigation(
    [
        st.Page("views/ask.py", title="Ask", icon=":material/forum:", default=True),
        st.Page("views/corpus.py", title="Corpus", icon=":material/library_books:"),
        st.Page("views/eval_report.py", title="Eval report", icon=":material/monitoring:"),
    ]
).run()
