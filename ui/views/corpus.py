"""The Corpus page: a search box over the same retriever, a table of the indexed papers, and the
paper picked in the table in full (abstract, author count, id)."""

from __future__ import annotations

import streamlit as st
from common import WITHHELD_FLAG, catalogue, get_engine, index_version, md_escape, paper_card, shown_date, source_label

from rag.answer import Engine
from rag.safety import inert
from rag.types import Hit, Paper

SEARCHED = 20  # papers a search reads; the table shows those the engine judges to be about the query
CLOSEST = 5  # shown when none is


def matches(engine: Engine, query: str) -> tuple[list[Paper], str]:
    """The papers about `query`, best first, by the judgement that decides which papers an answer lists
    (not always the 20 nearest: most of those share only a word with a short query); the closest few when none is."""
    hits = engine.retriever.search(query, SEARCHED)
    about = sorted(engine.offline.relevant(query, hits)) if hits else []
    if about:
        return [
            hits[i - 1].paper for i in about
        ], f"{len(about)} of {len(catalogue(index_version()))} papers match, best first."
    return [h.paper for h in hits[:CLOSEST]], f"No paper matches. The {min(CLOSEST, len(hits))} closest, best first:"


def readable_first(papers: list[Paper]) -> tuple[list[Paper], str]:
    """Titled papers first (a scraped file of untitled abstracts would fill the first screen with opening words)."""
    untitled = sum(not p.title for p in papers)
    shown = sorted(papers, key=lambda p: not p.title)  # stable: corpus-file order within each part
    return shown, f"{len(papers)} papers" + (f", the {untitled} without a title last" if untitled else "") + "."


st.title("Corpus")
engine = get_engine()
query = st.text_input("Search the papers", key="corpus_query")
papers, summary = matches(engine, query) if query.strip() else readable_first(catalogue(index_version()))
st.caption(f"{summary} Pick a row to read the paper.")
# Three columns, sized to fit beside the sidebar on a 1280-pixel screen; the rest is in the card below.
picked = st.dataframe(
    [
        {
            "title": p.display_title,
            "date": shown_date(p),
            "source": "; ".join(source_label(s, p.paths) for s in p.sources),
        }
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
    shown = inert(Hit(papers[rows[0]], 0.0))  # the card shows what every output shows: planted orders withheld
    paper_card(
        shown.paper, "paper", flag=WITHHELD_FLAG if shown.withheld else "", tip=f"id {md_escape(shown.paper.paper_id)}"
    )
