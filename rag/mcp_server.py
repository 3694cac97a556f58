"""`rag mcp`: the engine as MCP tools over stdio, so MCP clients (desktop assistants, IDEs) can search and ask.

Tools return the same JSON as the HTTP API; a `UserError` comes back as a tool error carrying its one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import Field

from rag.app import EngineHolder, check_scope, paper_json
from rag.config import Settings
from rag.errors import UserError
from rag.references import answer_json

YearFrom = Annotated[int | None, Field(ge=0, le=9999, description="Only papers from this year on.")]
YearTo = Annotated[int | None, Field(ge=0, le=9999, description="Only papers up to this year.")]
K = Annotated[
    int | None, Field(ge=1, description="How many papers (default: the server's setting); at most RAG_API_MAX_K.")
]
Text = Annotated[str, Field(description="In plain words, e.g. 'which papers report FP8 training speedups?'.")]
STATS_URI = "corpus://stats"


def _reported(call: Callable[[], Any], error: type[Exception] = ToolError) -> Any:
    """Run a tool or resource body; a UserError becomes the SDK's error type with the same one-line message,
    which the client sees (any other exception reaches it only as a generic failure)."""
    try:
        return call()
    except UserError as e:
        raise error(str(e)) from None


def build_server(holder: EngineHolder, settings: Settings) -> MCPServer:
    server = MCPServer(
        "rag-abstracts",
        log_level="WARNING",
        instructions="Search a corpus of scientific paper abstracts and get answers whose "
        "[n] citations are checked against the cited abstracts.",
    )

    @server.tool()
    def search_papers(query: Text, k: K = None, year_from: YearFrom = None, year_to: YearTo = None) -> dict[str, Any]:
        """Find the papers that best match a query, best first, with their abstracts and scores."""

        def run() -> dict[str, Any]:
            filters = check_scope(settings, "query", query, k, year_from, year_to, [])
            return {"results": [h.to_json() for h in holder.get().retriever.search(query, k, filters)]}

        return _reported(run)

    @server.tool()
    def ask(question: Text, year_from: YearFrom = None, year_to: YearTo = None, k: K = None) -> dict[str, Any]:
        """Answer a question from the corpus. `answer` cites sources as [n]; each entry of `citations` gives the
        paper id, the quoted abstract sentence and whether it supports the claim. `refused` is true when the
        corpus does not answer the question."""

        def run() -> dict[str, Any]:
            filters = check_scope(settings, "question", question, k, year_from, year_to, [])
            return answer_json(holder.get().ask(question, filters, k))

        return _reported(run)

    @server.tool()
    def get_paper(
        paper_id: Annotated[str, Field(description="A paper_id from search_papers or a citation.")],
    ) -> dict[str, Any]:
        """One paper by its paper_id (from search_papers or a citation): title, abstract, date, source file,
        identifiers (doi, arxiv_id, pmid) and `url`, a doi.org, arXiv or PubMed link (null when it has none)."""

        def run() -> dict[str, Any]:
            hit = holder.get().retriever.paper(paper_id)
            if hit is None:
                raise ToolError(f"no paper with id {paper_id!r}; find ids with search_papers")
            return paper_json(hit)

        return _reported(run)

    @server.resource(
        STATS_URI,
        name="corpus-stats",
        description="How many papers the index holds, and where.",
        mime_type="application/json",
    )
    def corpus_stats() -> dict[str, Any]:
        def run() -> dict[str, Any]:
            engine = holder.get()
            return {"papers": len(engine.retriever), "collection": settings.collection, "answering_model": engine.model}

        return _reported(run, ResourceError)

    return server


def run_stdio(settings: Settings) -> None:
    """Serve over stdin/stdout until the client closes the pipe; the engine is built on the first call."""
    build_server(EngineHolder(settings), settings).run("stdio")
