"""What every page shares: the engine (built once per process), the sidebar, and safe rendering of corpus text.

Corpus text is untrusted: it is escaped for Markdown and never passed with unsafe_allow_html.
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from rag.answer import Engine, make_engine
from rag.config import Settings, get_settings
from rag.embed import make_embedder
from rag.index import ingest, last_ingest, open_store
from rag.llm import backend_name
from rag.retrieve import Retriever
from rag.types import Filters
from rag.types import Hit, Paper

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$:>])")


def md_escape(text: str) -> str:
    """Show text literally: Markdown characters escaped, HTML characters as entities."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


@st.cache_resource(show_spinner="Loading the embedding model ...")
def resources() -> tuple[Settings, object, object]:
    settings = get_settings()
    return settings, make_embedder(settings), open_store(settings)


@st.cache_resource(show_spinner="Loading the index ...")
def engine_for(index_version: str) -> Engine:
    """One engine per index state: re-ingesting changes the version and so rebuilds BM25 once."""
    settings, embedder, store = resources()
    return make_engine(settings, Retriever(settings, embedder, store))


def index_version() -> str:
    settings, _, store = resources()
    record = last_ingest(settings) or {}
    return f"{store.stamp().get('version', '')}:{record.get('at', '')}"


def run_ingest(paths: list[Path], label: str) -> None:
    """Ingest with a progress bar in the page; problems are listed, not raised."""
    settings, embedder, store = resources()
    bar = st.progress(0.0, text=label)
    report = ingest(paths, settings, embedder, store=store, on_progress=lambda d, n: bar.progress(d / max(n, 1), text=f"{label}: {d}/{n} papers"))
    bar.empty()
    for problem in report.corpus.problems:
        st.warning(f"Skipped {problem}")
    st.toast(f"{report.added} added, {report.updated} changed, {report.deleted} deleted, {report.unchanged} unchanged")


def get_engine() -> Engine:
    """The engine, ingesting the default corpus first when the index is empty."""
    settings, _, store = resources()
    if store.count() == 0:
        run_ingest(settings.corpus_paths, "Building the index from the default corpus")
    return engine_for(index_version())


def answerer_label(engine: Engine) -> str:
    if engine.llm is None:
        return "Extractive (no LLM): quotes the best sentence of each paper"
    return f"LLM `{engine.llm.name}` at `{engine.llm.endpoint}` ({backend_name(engine.settings)})"


def sidebar(engine: Engine) -> tuple[Filters, int | None]:
    """Filters, number of sources, answerer, corpus statistics, re-ingest and upload."""
    papers = list(engine.retriever.all_papers())
    years = sorted({p.year for p in papers if p.year})
    files = sorted({s for p in papers for s in p.sources})
    with st.sidebar:
        st.header("Filters")
        year_from = year_to = None
        if len(years) == 1 and st.checkbox(f"Only papers from {years[0]}", key="use_years"):
            year_from = year_to = years[0]
        elif len(years) > 1 and st.checkbox("Only papers from these years", key="use_years"):
            year_from, year_to = st.slider("Years", years[0], years[-1], (years[0], years[-1]), key="years")
        sources = st.multiselect("Source files", files, key="sources")
        k = st.select_slider(
            "Sources per answer", ["auto", *range(3, 21)], "auto", key="k",
            help=f"auto: {engine.settings.answer_k}, or {engine.settings.list_k} for a 'which papers' question",
        )
        st.header("Answerer")
        st.markdown(answerer_label(engine))
        st.header("Corpus")
        record = last_ingest(engine.settings) or {}
        st.markdown(f"{len(papers)} papers in {len(files)} files  \nLast ingest: {record.get('at', 'never')}")
        if st.button("Re-ingest the corpus"):
            run_ingest(engine.settings.corpus_paths, "Re-ingesting")
            st.rerun()
        upload = st.file_uploader("Add a corpus file", type=["jsonl", "csv", "txt"], key="upload")
        if upload is not None and st.button("Ingest this file"):
            target = engine.settings.data_dir / "uploads" / Path(upload.name).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(upload.getvalue())
            run_ingest([target], f"Ingesting {target.name}")
            st.rerun()
    return Filters(year_from, year_to, tuple(sources)), None if k == "auto" else int(k)


def linked(text: str, prefix: str) -> str:
    """Answer text, escaped, with each [n] turned into a link to source card n."""
    lines = []
    for line in text.splitlines():
        bullet = line.startswith("- ")
        escaped = md_escape(line[2:] if bullet else line)
        escaped = re.sub(r"\\\[(\d+)\\\]", lambda m: f"[\\[{m.group(1)}\\]](#{prefix}-{m.group(1)})", escaped)
        lines.append(("- " if bullet else "") + escaped)
    return "\n".join(lines)


def paper_caption(paper: Paper) -> str:
    parts = [paper.date or paper.date_raw or "no date", ", ".join(paper.sources)]
    if paper.authors:
        parts.append(f"{paper.authors} authors")
    if paper.organisation:
        parts.append(paper.organisation)
    return " · ".join(parts)


def source_card(n: int, hit: Hit, anchor: str, quote: tuple[int, int] | None = None, supported: bool | None = None) -> None:
    """A numbered card: title, date, file, and the abstract with the quoted sentence highlighted."""
    paper = hit.paper
    with st.container(border=True):
        st.subheader(f"[{n}] {md_escape(paper.display_title)}", anchor=anchor)  # the citation link's target
        flag = "" if supported is None else (" · :green[supported]" if supported else " · :red[**unsupported citation**]")
        st.caption(md_escape(paper_caption(paper)) + flag)
        text = paper.abstract
        if quote and quote[1] > quote[0]:
            s, e = quote
            body = md_escape(text[:s]) + ":orange-background[" + md_escape(text[s:e]) + "]" + md_escape(text[e:])
        else:
            body = md_escape(text)
        st.markdown(body)
