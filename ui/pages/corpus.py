"""The Corpus page: a search box over the same retriever, and a table of the indexed papers."""

from __future__ import annotations

import streamlit as st

from common import catalogue, get_engine, index_version, shown_date, source_label

st.title("Corpus")
engine = get_engine()
query = st.text_input("Search the papers", key="corpus_query")
if query:
    papers = [h.paper for h in engine.retriever.search(query, 20)]
    st.caption(f"The {len(papers)} best matches, best first")
else:
    papers = catalogue(index_version())
    st.caption(f"{len(papers)} papers")
st.dataframe(
    [
        {
            "title": p.display_title,
            "date": shown_date(p),
            "authors": "" if p.authors is None else str(p.authors),
            "source": "; ".join(source_label(s, p.paths) for s in p.sources),
            "id": p.paper_id,
        }
        for p in papers
    ],
    hide_index=True,
    width="stretch",
    column_config={
        "title": st.column_config.TextColumn("title", width="large"),
        "date": st.column_config.TextColumn("date", width="small"),
        "authors": st.column_config.TextColumn("authors", width=60),
        "source": st.column_config.TextColumn("source", width="medium"),
        "id": st.column_config.TextColumn("id", width="small"),
    },
)
