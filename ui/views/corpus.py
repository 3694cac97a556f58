"""The Corpus page: a search box over the same retriever, a table of the indexed papers, and the
paper picked in the table in full (abstract, author count, id)."""

from __future__ import annotations

import streamlit as st

from common import WITHHELD_FLAG, catalogue, get_engine, index_version, md_escape, paper_card, shown_date, source_label

from rag.safety import inert
from rag.types import Hit

st.title("Corpus")
engine = get_engine()
query = st.text_input("Search the papers", key="corpus_query")
if query:
    papers = [h.paper for h in engine.retriever.search(query, 20)]
    st.caption(f"The {len(papers)} best matches, best first. Pick a row to read the paper.")
else:
    papers = catalogue(index_version())
    st.caption(f"{len(papers)} papers. Pick a row to read the paper.")
# Three columns, sized to fit beside the sidebar on a 1280-pixel screen; the rest is in the card below.
picked = st.dataframe(
    [
        {"title": p.display_title, "date": shown_date(p), "source": "; ".join(source_label(s, p.paths) for s in p.sources)}
        for p in papers
    ],
    hide_index=True,
    width="stretch",
    column_config={
        "title": st.column_config.TextColumn("title", width=315),
        "date": st.column_config.TextColumn("date", width=150),
        "source": st.column_config.TextColumn("source", width=315),
    },
    on_select="rerun",
    selection_mode="single-row",
    key="corpus_table",
)
rows = picked.selection.rows
if rows and rows[0] < len(papers):  # a pick from before the search changed the rows may point past them
    paper = papers[rows[0]]
    shown = inert(Hit(paper, 0.0))  # the card shows what every output shows: planted orders withheld
    paper_card(shown.paper, "paper", flag=WITHHELD_FLAG if shown.withheld else "")
    st.caption(f"Paper id {md_escape(paper.paper_id)} (what the gold list of an eval question names)")
