"""The service layer under every front door: the engine opened from settings, and one engine shared by a server.

The CLI, `rag chat`, the HTTP API, the MCP server and the eval scripts open the index and the engine here,
so the wiring (embedder, store, auto-ingest of an empty index, LLM) is written once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rag.config import Settings
from rag.console import err, progress_bar, run_ingest
from rag.errors import QuestionError
from rag.question import too_long
from rag.types import Filters, Hit

if TYPE_CHECKING:  # the engine's imports cost a second that `rag ingest` and `rag --help` never need
    from rag.answer import Engine


def open_retriever(settings: Settings) -> Any:
    """The retriever over the index, ingesting the default corpus first when the index is empty."""
    from rag.embed import make_embedder
    from rag.retrieve import Retriever
    from rag.store import open_store

    embedder = make_embedder(settings)
    store = open_store(settings)
    if store.empty():
        err.print("The index is empty: ingesting the default corpus first.")
        run_ingest(settings, settings.corpus_paths, embedder, store=store)
    with progress_bar("indexing words") as on_progress:
        return Retriever(settings, embedder, store, on_progress=on_progress)


def build_engine(settings: Settings) -> Engine:
    """The engine over the configured index (ingesting the default corpus into an empty one), warmed up
    so that the first concurrent requests do not each load the embedding model."""
    from rag.answer import make_engine

    engine = make_engine(settings, open_retriever(settings))
    engine.retriever.search("warm up the query embedder", 1)
    return engine


class EngineHolder:
    """One engine for all requests, built on first use behind a lock: the server starts at once, and a
    broken index or LLM setting is reported to each request as a one-line error instead of a crash."""

    def __init__(
        self, settings: Settings, engine: Engine | None = None, build: Callable[[Settings], Engine] = build_engine
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._build = build
        self._lock = threading.Lock()

    def get(self) -> Engine:
        with self._lock:
            self._engine = self._build(self._settings) if self._engine is None else self._engine.current()
            return self._engine


# ------------------------------------------------------------ what the API and the MCP server share

SCORE_FIELDS = ("score", "dense", "bm25", "ranks")


def paper_json(hit: Hit) -> dict[str, Any]:
    """A paper in the shape of a search hit without the scores, so clients parse one shape."""
    return {k: v for k, v in hit.to_json().items() if k not in SCORE_FIELDS}


def check_length(settings: Settings, what: str, text: str) -> None:
    """Refuse a text so long that searching for it would be slow, saying what to change."""
    if len(text) > settings.max_question_chars:
        raise QuestionError(too_long(what, text, settings.max_question_chars))


def check_scope(
    settings: Settings,
    what: str,
    text: str,
    k: int | None,
    year_from: int | None,
    year_to: int | None,
    sources: list[str],
    categories: Iterable[str] = (),
    venues: Iterable[str] = (),
) -> Filters:
    """Reject a question or query the engine would answer badly or slowly (empty or huge, k too large, reversed
    years) with a message saying what to change; return the filters."""
    if not text.strip():
        raise QuestionError(f"the {what} is empty; send some text")
    check_length(settings, what, text)
    if k is not None and k > settings.api_max_k:
        raise QuestionError(
            f"k={k} is more than the {settings.api_max_k} papers allowed (RAG_API_MAX_K); ask for fewer"
        )
    if year_from is not None and year_to is not None and year_from > year_to:
        raise QuestionError(f"year_from {year_from} is after year_to {year_to}; swap them")
    return Filters(year_from, year_to, tuple(sources), tuple(categories), tuple(venues))
