"""What every page shares: the engine (built once per process), the sidebar, and safe rendering of corpus text.

Corpus text is untrusted: it is escaped for Markdown and never passed with unsafe_allow_html.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import streamlit as st

from rag.answer import Engine, make_engine
from rag.config import Settings, get_settings
from rag.console import short_time
from rag.embed import make_embedder
from rag.ingest import ingest, last_ingest
from rag.llm import backend_name
from rag.retrieve import Retriever
from rag.store import open_store
from rag.types import Filters, Hit, Paper

WITHHELD_FLAG = " · :orange[holds text addressed to an AI: withheld, never quoted]"
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$:>])")
_PAGE_DATE = re.compile(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{1,2}")


# Where Streamlit's Markdown (GitHub's flavour) would turn plain text into a link: after "http:" or "https:"
# before "//", "www" before ".", and after the "@" of an e-mail address. It links them after escapes are
# undone, so only a character in between stops it: an invisible word joiner, which adds no space or break.
_AUTOLINK = re.compile(r"(?i)(?<=https:)(?=//)|(?<=http:)(?=//)|(?<=www)(?=\.)|(?<=@)")
WORD_JOINER = "\u2060"


def md_escape(text: str) -> str:
    """Show text literally: Markdown characters escaped, HTML characters as entities, and no URL or
    e-mail address turned into a link (corpus text must not send a reader anywhere)."""
    text = _AUTOLINK.sub(WORD_JOINER, text)
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


@st.cache_resource(show_spinner="Reading the index ...")
def catalogue(index_version: str) -> list[Paper]:
    """Every paper in the index, in corpus-file order, read once per index state."""
    _, _, store = resources()
    return sorted(store.all_papers(), key=lambda p: (p.source, p.positions[0] if p.positions else 0, p.paper_id))


def index_version() -> str:
    settings, _, store = resources()
    record = last_ingest(settings) or {}
    return f"{store.stamp().get('version', '')}:{record.get('at', '')}"


def run_ingest(paths: list[Path], label: str) -> None:
    """Ingest with a progress bar in the page; problems are listed, not raised."""
    settings, embedder, store = resources()
    bar = st.progress(0.0, text=label)
    report = ingest(
        paths,
        settings,
        embedder,
        store=store,
        on_progress=lambda d, n: bar.progress(d / max(n, 1), text=f"{label}: {d}/{n} papers"),
    )
    bar.empty()
    for problem in report.corpus.problems if report.corpus else []:
        st.warning(f"Skipped {problem}")
    for notice in report.corpus.notices if report.corpus else []:
        st.info(f"Note: {notice}")
    st.toast(f"{report.added} added, {report.updated} changed, {report.deleted} deleted, {report.unchanged} unchanged")


def get_engine() -> Engine:
    """The engine, ingesting the default corpus first when the index is empty."""
    settings, _, store = resources()
    if store.empty():
        run_ingest(settings.corpus_paths, "Building the index from the default corpus")
    return engine_for(index_version())


def answerer_label(engine: Engine) -> str:
    if engine.llm is None:
        return "Extractive (no LLM): quotes the sentences of each paper that answer the question"
    return f"LLM `{engine.llm.name}` at `{engine.llm.endpoint}` ({backend_name(engine.settings)})"


def sidebar(engine: Engine) -> tuple[Filters, int | None]:
    """Filters, number of sources, answerer, corpus statistics, re-ingest and upload."""
    papers = catalogue(index_version())
    years = sorted({p.year for p in papers if p.year})
    files = sorted({s for p in papers for s in p.sources})
    names = source_names(papers)
    with st.sidebar:
        st.header("Filters")
        year_from = year_to = None
        if len(years) == 1 and st.checkbox(f"Only papers from {years[0]}", key="use_years"):
            year_from = year_to = years[0]
        elif len(years) > 1 and st.checkbox("Only papers from these years", key="use_years"):
            year_from, year_to = st.slider("Years", years[0], years[-1], (years[0], years[-1]), key="years")
        sources = st.multiselect("Source files", files, key="sources", format_func=lambda f: names.get(f, f))
        k = st.selectbox(
            "Sources per answer",
            ["auto", *range(3, 21)],
            index=0,
            key="k",
            help=f"auto: {engine.settings.answer_k}, or {engine.settings.list_k} for a 'which papers' question",
        )
        st.header("Answerer")
        st.markdown(answerer_label(engine))
        st.header("Corpus")
        record = last_ingest(engine.settings) or {}
        st.markdown(f"{len(papers)} papers in {len(files)} files  \nLast changed {short_time(record.get('at'))}")
        if st.button("Re-ingest the corpus"):
            run_ingest(engine.settings.corpus_paths, "Re-ingesting")
            st.rerun()
        upload = st.file_uploader(
            "Add a corpus file", type=["jsonl", "json", "csv", "txt", "bib", "ris", "nbib"], key="upload"
        )
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


def shown_date(paper: Paper) -> str:
    """One date, saying where it came from when it is not the paper's own full date: the paper's day without a
    year, the day of the listing page it was scraped from, or none (a year filter never matches those)."""
    if paper.date:
        return paper.date
    if paper.year is not None:
        return str(paper.year)
    if paper.date_raw:
        return f"{paper.date_raw} (year unknown)"
    day = next((d for path in paper.paths if (d := _file_info(path)[1])), "")
    return f"{day} (listing page)" if day else "no known date"


def _file_info(path: str) -> tuple[str, str]:
    """What a scraped corpus file is and the day its listing page gives (`Daily Papers, Mar 11`, `Mar 11`)."""
    try:
        return _read_file_info(path, Path(path).stat().st_mtime_ns)
    except OSError:
        return "", ""


@lru_cache(maxsize=256)
def _read_file_info(path: str, mtime_ns: int) -> tuple[str, str]:
    """`_file_info` from the file's first lines (its name is a number and a hash); `mtime_ns` keys the cache."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = [line.strip() for line in f.readlines(4096) if line.strip()]
    except OSError:
        return "", ""
    if head and head[0].startswith("Abstract:"):
        return "Untitled abstracts", ""
    if any(line.startswith(("Get trending papers", "Daily Papers")) for line in head[:6]):
        day = next((line for line in head[:8] if _PAGE_DATE.fullmatch(line)), "")
        return "Daily Papers" + (f", {day}" if day else ""), day
    return "", ""


def source_label(name: str, paths: list[str]) -> str:
    """A readable name for a corpus file, with the file name after it: `Daily Papers, Oct 28 (002_....txt)`."""
    label = next((_file_info(path)[0] for path in paths if Path(path).name == name), "")
    return f"{label} ({name})" if label else name


def source_names(papers: list[Paper]) -> dict[str, str]:
    """Readable names of every file the papers come from, by file name."""
    return {name: source_label(name, p.paths) for p in papers for name in p.sources}


def paper_caption(paper: Paper) -> str:
    parts = [shown_date(paper), ", ".join(source_label(s, paper.paths) for s in paper.sources)]
    if paper.authors:
        parts.append(f"{paper.authors} authors")
    if paper.organisation:
        parts.append(paper.organisation)
    if paper.venue:
        parts.append(paper.venue)
    return " · ".join(parts)


def paper_card(
    paper: Paper,
    anchor: str,
    label: str = "",
    flag: str = "",
    quotes: list[tuple[int, int]] | None = None,
    tip: str | None = None,
) -> None:
    """A card: `label` (Markdown) and title (`tip` in its help icon), date and file (then `flag`), and the abstract
    with every quoted sentence highlighted."""
    with st.container(border=True):
        st.subheader(label + md_escape(paper.display_title), anchor=anchor, help=tip)  # a citation link's target
        st.caption(md_escape(paper_caption(paper)) + flag)
        if link := paper.link:  # built from a validated identifier, never from the paper's text
            st.link_button(md_escape(link.split("://", 1)[1]), link)
        st.markdown(highlighted(paper.abstract, quotes or []))


def highlighted(text: str, quotes: list[tuple[int, int]]) -> str:
    """The text escaped, each quoted span on an orange background (overlaps and repeats merged)."""
    pieces, at = [], 0
    for s, e in sorted(set(q for q in quotes if q[1] > q[0])):
        s = max(s, at)
        if e <= s:
            continue
        pieces += [md_escape(text[at:s]), ":orange-background[" + md_escape(text[s:e]) + "]"]
        at = e
    return "".join(pieces) + md_escape(text[at:])


def source_card(
    n: int, hit: Hit, anchor: str, quotes: list[tuple[int, int]] | None = None, supported: bool | None = None
) -> None:
    """Source n of an answer, flagged when a citation of it is or is not backed by the quoted sentence."""
    flag = "" if supported is None else (" · :green[supported]" if supported else " · :red[**unsupported citation**]")
    if hit.withheld:
        flag += WITHHELD_FLAG
    paper_card(hit.paper, anchor, f"[{n}] ", flag, quotes)
