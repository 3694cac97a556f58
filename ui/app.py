"""The UI's entry point (`rag ui` runs it): the pages, with the names the navigation shows."""

from __future__ import annotations

import streamlit as st

st.set_page_config(layout="wide")  # each page titles the browser tab with its navigation name
st.navigation([
    st.Page("pages/ask.py", title="Ask", icon="💬", default=True),
    st.Page("pages/corpus.py", title="Corpus", icon="📚"),
    st.Page("pages/eval_report.py", title="Eval report", icon="📊"),
]).run()
