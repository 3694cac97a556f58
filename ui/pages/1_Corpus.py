"""Browse the corpus: a search box over the same retriever, and a table of papers."""

from __future__ import annotations

import streamlit as st

from common import get_engine

st.set_page_config(page_title="Corpus", page_icon="📚", layout="wide")
st.title("Corpus")
engine = get_engine()
query = st.text_input("Search the papers", key="corpus_query")
if query:
    papers = [h.paper for h in engine.retriever.search(query, 20)]
    st.caption(f"The {len(papers)} best matches, best first")
else:
    papers = sorted(engine.retriever.all_papers(), key=lambda p: (p.source, p.positions[0] if p.positions else 0))
    st.caption(f"{len(papers)} papers")
st.dataframe(
    [
        {"title": p.display_title, "date": p.date or p.date_raw, "year": p.year, "authors": p.authors, "source": ", ".join(p.sources), "id": p.paper_id}
        for p in papers
    ],
    hide_index=True,
    width="stretch",
)
