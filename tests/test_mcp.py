"""`rag mcp` driven by the MCP SDK's own client over stdio: a real subprocess over a private index."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import SMALL, SMALL_PAPERS
from mcp import Client
from mcp.client.stdio import StdioServerParameters

SPEECH_Q = "How can speech recognition work for low-resource languages with little transcribed audio?"
UNKNOWN_ID = "0000000000000000"

pytestmark = pytest.mark.slow  # one server subprocess for the module: importing the stack takes seconds


def text_of(result: Any) -> str:
    return " ".join(part.text for part in result.content)


@pytest.fixture(scope="module")
def hashing_index(tmp_path_factory, make_settings):
    """The small corpus indexed with the hashing embedder (no model to load in the server process)."""
    from rag.embed import HashingEmbedding
    from rag.ingest import ingest
    from rag.store import open_store

    settings = make_settings(
        data_dir=tmp_path_factory.mktemp("mcp") / "index", corpus_paths=[SMALL], embed_backend="hashing"
    )
    ingest([SMALL], settings, HashingEmbedding(), store=open_store(settings))
    return settings


def mcp_server(data_dir: Path, cwd: Path) -> StdioServerParameters:
    """`rag mcp` over the index in data_dir, with the small corpus as the one to ingest into an empty index."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env.update(
        RAG_DATA_DIR=str(data_dir),
        RAG_EMBED_BACKEND="hashing",
        RAG_CORPUS_PATHS=json.dumps([str(SMALL)]),
        ANONYMIZED_TELEMETRY="False",
    )
    return StdioServerParameters(command=sys.executable, args=["-m", "rag.cli", "mcp"], env=env, cwd=cwd)


def client_of(server: StdioServerParameters, problems: list[Exception]) -> Client:
    """The SDK's client, keeping every line of the server's stdout it could not read as a message (the SDK
    only logs those and carries on)."""

    async def note(message: Any) -> None:
        if isinstance(message, Exception):
            problems.append(message)

    return Client(server, read_timeout_seconds=120, message_handler=note)


@pytest.fixture(scope="module")
def session(hashing_index, tmp_path_factory) -> dict[str, Any]:
    """One stdio session of `rag mcp`: every call the tests look at, made in order, results by name."""
    server = mcp_server(hashing_index.data_dir, tmp_path_factory.mktemp("mcp_cwd"))

    async def run() -> dict[str, Any]:
        got: dict[str, Any] = {"unreadable": []}
        async with client_of(server, got["unreadable"]) as client:
            got["tools"] = (await client.list_tools()).tools
            got["search"] = await client.call_tool(
                "search_papers", {"query": "speech recognition for low-resource languages", "k": 3}
            )
            got["search_years"] = await client.call_tool(
                "search_papers", {"query": "neural networks", "year_from": 2020, "year_to": 2022}
            )
            got["ask"] = await client.call_tool("ask", {"question": SPEECH_Q})
            pid = got["search"].structured_content["results"][0]["paper_id"]
            got["paper"] = await client.call_tool("get_paper", {"paper_id": pid})
            got["unknown_paper"] = await client.call_tool("get_paper", {"paper_id": UNKNOWN_ID})
            got["reversed_years"] = await client.call_tool(
                "search_papers", {"query": "speech", "year_from": 2024, "year_to": 2020}
            )
            got["empty_question"] = await client.call_tool("ask", {"question": "  "})
            got["resources"] = (await client.list_resources()).resources
            got["stats"] = await client.read_resource("corpus://stats")
        return got

    return anyio.run(run)


def test_stdout_carries_only_protocol_messages(session):
    assert session["unreadable"] == []


def test_tools_are_listed_with_their_parameters(session):
    tools = {t.name: t for t in session["tools"]}
    assert sorted(tools) == ["ask", "get_paper", "search_papers"]
    assert set(tools["search_papers"].input_schema["properties"]) == {"query", "k", "year_from", "year_to"}
    assert set(tools["ask"].input_schema["properties"]) == {"question", "year_from", "year_to", "k"}
    assert tools["get_paper"].input_schema["required"] == ["paper_id"]
    assert all(t.description for t in tools.values())


def test_search_papers_returns_hits_best_first(session, pid_of):
    result = session["search"]
    assert not result.is_error
    hits = result.structured_content["results"]
    assert len(hits) == 3 and hits[0]["paper_id"] == pid_of("Self-Supervised Speech")
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert (
        json.loads(text_of(result)) == result.structured_content
    )  # clients without structured output get the same JSON


def test_search_papers_applies_the_year_filter(session):
    hits = session["search_years"].structured_content["results"]
    assert hits and all(2020 <= h["year"] <= 2022 for h in hits)


def test_ask_returns_the_checked_answer_the_engine_gives(session, hashing_index, pid_of):
    from rag.answer import Engine
    from rag.embed import HashingEmbedding
    from rag.retrieve import Retriever

    answer = session["ask"].structured_content
    assert not session["ask"].is_error and not answer["refused"] and "[1]" in answer["answer"]
    cited = answer["citations"][0]
    assert (
        cited["paper_id"] == pid_of("Self-Supervised Speech")
        and cited["quote"] in answer["sources"][cited["n"] - 1]["abstract"]
    )
    from rag.references import answer_json

    expected = answer_json(Engine(hashing_index, Retriever(hashing_index, HashingEmbedding()), None).ask(SPEECH_Q))
    assert {k: v for k, v in answer.items() if k != "timings"} == {k: v for k, v in expected.items() if k != "timings"}


def test_get_paper_round_trips_an_id(session):
    paper = session["paper"].structured_content
    first = session["search"].structured_content["results"][0]
    assert paper["paper_id"] == first["paper_id"] and paper["abstract"] == first["abstract"] and "score" not in paper


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("unknown_paper", f"no paper with id '{UNKNOWN_ID}'; find ids with search_papers"),
        ("reversed_years", "year_from 2024 is after year_to 2020; swap them"),
        ("empty_question", "the question is empty; send some text"),
    ],
)
def test_errors_are_tool_errors_with_the_one_line_message(session, call, message):
    result = session[call]
    assert result.is_error and text_of(result).endswith(message) and "Traceback" not in text_of(result)


def test_corpus_stats_resource(session):
    assert [str(r.uri) for r in session["resources"]] == ["corpus://stats"]
    stats = json.loads(session["stats"].contents[0].text)
    assert stats == {"papers": SMALL_PAPERS, "collection": "abstracts", "answering_model": "extractive (no LLM)"}


def test_an_empty_index_is_filled_first_without_breaking_the_protocol(tmp_path, pid_of):
    """Ingest progress goes to stderr: a line on stdout would corrupt the stdio stream the client reads."""

    unreadable: list[Exception] = []

    async def run() -> Any:
        async with client_of(mcp_server(tmp_path / "index", tmp_path), unreadable) as client:
            return await client.call_tool(
                "search_papers", {"query": "speech recognition for low-resource languages", "k": 1}
            )

    result = anyio.run(run)
    assert (
        unreadable == []
        and not result.is_error
        and result.structured_content["results"][0]["paper_id"] == pid_of("Self-Supervised Speech")
    )
