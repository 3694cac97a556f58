"""`rag serve`: the engine behind an OpenAI-compatible HTTP API, so existing chat clients can use it.

`POST /v1/chat/completions` answers like `rag ask`; the sources travel beside the answer in the
fields clients already show (`citations`, `search_results`) and in full in `rag`, the checked
answer as `rag ask --json` prints it. Every error is one JSON line `{"error": {"message", "type"}}`.
"""

from __future__ import annotations

import copy
import hmac
import html
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from rag.answer import Engine, Streamed
from rag.api_models import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChatRequest,
    ErrorBody,
    Health,
    ModelList,
    PaperOut,
    Scope,
    SearchRequest,
    SearchResponse,
    error_body,
    sources_of,
    sse_events,
)
from rag.app import EngineHolder, check_length, check_scope, paper_json
from rag.config import Settings
from rag.errors import ConfigError, QuestionError, UserError
from rag.serve import is_loopback
from rag.types import Answer, Conversation, Filters, Turn

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "request_too_large",
}
# Answers run in threads of their own, so answers waiting on a slow LLM never hold the ones searches use.
ANSWER_THREADS = 40


# ------------------------------------------------------------ the engine, shared by every request


def scoped(settings: Settings, what: str, text: str, body: Scope) -> Filters:
    """`check_scope` for a request body's scope fields (k, years, sources, categories, venues)."""
    return check_scope(
        settings, what, text, body.k, body.year_from, body.year_to, body.sources, body.categories, body.venues
    )


def check_history(settings: Settings, history: Conversation) -> None:
    """Earlier questions are searched along with a follow-up, so each has the question's limit too."""
    for n, turn in enumerate(history.turns, 1):
        check_length(settings, f"earlier user message {n}", turn.question)


# ------------------------------------------------------------ answers in OpenAI shapes


def conversation_of(messages: list[ChatMessage]) -> tuple[str, Conversation]:
    """The last user message is the question; each earlier user message and the assistant reply after it is a turn."""
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    if not users:
        raise QuestionError("no user message: the last message with role 'user' is the question")
    turns: list[Turn] = []
    for i in users[:-1]:
        reply = next((m for m in messages[i + 1 : users[-1]] if m.role in ("user", "assistant")), None)
        turns.append(Turn(messages[i].text(), reply.text() if reply is not None and reply.role == "assistant" else ""))
    return messages[users[-1]].text(), Conversation(turns)


def completion(answer: Answer) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}],
        **sources_of(answer),
    }


# ------------------------------------------------------------ errors, key, body size


def problem(status: int, message: str, kind: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind or _ERROR_TYPES.get(status, "invalid_request_error")}},
        status_code=status,
    )


def _validation_message(e: RequestValidationError) -> str:
    """The first problem in one line, e.g. `messages.0.role: Input should be 'system', ...`."""
    errors = e.errors()
    first = errors[0]
    if (
        first["loc"] == ("body",) and first["type"] == "model_attributes_type"
    ):  # JSON but not an object, or not sent as JSON
        return "the request body must be a JSON object, sent with Content-Type: application/json"
    if first["type"] == "json_invalid":  # loc is ("body", character offset)
        at = first["loc"][-1] if len(first["loc"]) > 1 else "?"
        why = (first.get("ctx") or {}).get("error", "not JSON")
        return f"the request body is not valid JSON: {why} at character {at}; send a JSON object"
    where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


class BodyLimit:
    """Refuse (413) a request body over the limit before any of it is parsed; a chunked body is counted as it arrives."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = problem(
            413, f"the request body is larger than {self.limit} bytes (RAG_API_MAX_BODY_BYTES); send less"
        )
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await too_large(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.limit:
                await too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        await self.app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def key_check(settings: Settings) -> Callable[..., None]:
    """A dependency that wants `Authorization: Bearer RAG_API_KEY`, compared in constant time."""
    assert settings.api_key is not None
    expected = settings.api_key.get_secret_value().encode()
    bearer = HTTPBearer(auto_error=False, description="The server's RAG_API_KEY.")

    def require_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                401,
                "missing or wrong API key: send the header `Authorization: Bearer <RAG_API_KEY>`",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_key


# ------------------------------------------------------------ the app


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The API over `engine`, or over an engine built from `settings` on first use."""
    holder = EngineHolder(settings, engine)
    answer_threads = anyio.CapacityLimiter(ANSWER_THREADS)
    started = int(time.time())
    app = FastAPI(
        title="rag-abstracts",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        description="Cited answers from a corpus of paper abstracts, OpenAI-compatible. Every [n] in an answer is checked "
        "against the abstract it cites.",
    )
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    errors: dict[int | str, dict[str, Any]] = {
        "4XX": {"model": ErrorBody, "description": "Bad request, wrong key or unknown paper."},
        "5XX": {"model": ErrorBody, "description": "Index, embedder or LLM not usable, or a bug."},
    }
    router = APIRouter(dependencies=[Depends(key_check(settings))] if settings.api_key else [], responses=errors)

    @router.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return openapi_schema(app, settings)

    @router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs() -> str:
        return docs_page(openapi_schema(app, settings))

    @router.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        summary="Answer a question with checked citations",
        responses={
            200: {"content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ChatCompletionChunk"}}}}
        },
    )
    async def chat_completions(body: ChatRequest) -> Any:
        question, history = conversation_of(body.messages)
        filters = scoped(settings, "question", question, body)
        check_history(settings, history)
        engine = await run_in_threadpool(holder.get)
        if not body.stream:
            return completion(
                await anyio.to_thread.run_sync(engine.ask, question, filters, body.k, history, limiter=answer_threads)
            )
        streamed = Streamed(engine.ask_stream(question, filters, body.k, history))
        pieces = iter(streamed)

        def pull() -> Awaitable[str | None]:
            return anyio.to_thread.run_sync(next, pieces, None, limiter=answer_threads)

        first = await pull()  # retrieval and the LLM's first piece: errors still get a status
        return StreamingResponse(
            sse_events(engine.model, first or "", pull, streamed),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    @router.post("/v1/search", response_model=SearchResponse, summary="Find the papers that best match a query")
    async def search(body: SearchRequest) -> Any:
        filters = scoped(settings, "query", body.query, body)
        engine = await run_in_threadpool(holder.get)
        hits = await run_in_threadpool(engine.retriever.search, body.query, body.k, filters, body.method)
        return {"results": [h.to_json() for h in hits]}

    @router.get("/v1/papers/{paper_id}", response_model=PaperOut, summary="One paper by id")
    async def paper(paper_id: str = Path(max_length=200, description="A paper_id from a search or a citation.")) -> Any:
        engine = await run_in_threadpool(holder.get)
        found = await run_in_threadpool(engine.retriever.paper, paper_id)
        if found is None:
            raise HTTPException(404, f"no paper with id {paper_id!r}; find ids with POST /v1/search")
        return paper_json(found)

    @router.get("/v1/models", response_model=ModelList, summary="The model that answers")
    async def models() -> Any:
        engine = await run_in_threadpool(holder.get)
        return {
            "object": "list",
            "data": [{"id": engine.model, "object": "model", "created": started, "owned_by": "rag-abstracts"}],
        }

    @app.get("/health", response_model=Health, summary="Liveness; needs no key")
    async def health() -> Any:
        return {"status": "ok"}

    app.include_router(router)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return problem(400, _validation_message(e))

    @app.exception_handler(HTTPException)
    async def http_problem(_: Request, e: HTTPException) -> JSONResponse:
        detail = str(e.detail)
        if detail == "There was an error parsing the body":  # Starlette's words for a body that is not UTF-8
            detail = "the request body could not be read as text: send JSON encoded as UTF-8"
        response = problem(e.status_code, detail)
        response.headers.update(e.headers or {})
        return response

    @app.exception_handler(UserError)
    @app.exception_handler(
        Exception
    )  # a bug: Starlette sends this reply, then re-raises so the server log keeps the traceback
    async def failed(_: Request, e: Exception) -> JSONResponse:
        status, body = error_body(e)
        return JSONResponse(body, status_code=status)

    return app


def serve(settings: Settings, host: str, port: int, say: Callable[[str], None]) -> None:
    """Run the API with uvicorn until Ctrl-C."""
    import uvicorn

    _check_free(host, port)
    if not settings.api_key and not is_loopback(host):
        say(f"warning: listening on {host} without RAG_API_KEY: anyone who can reach this port can use the API")
    say(f"OpenAI-compatible API on http://{host}:{port}/v1 (any model name; each reply names the answering model)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def openapi_schema(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """FastAPI's schema plus the stream chunk model, which no route returns as JSON and so FastAPI leaves out,
    and this server's limits, which come from settings and so are not in the models."""
    schema = copy.deepcopy(app.openapi())  # FastAPI caches its schema; the limits are added to a copy
    _, defs = models_json_schema([(ChatCompletionChunk, "serialization")], ref_template="#/components/schemas/{model}")
    models = schema["components"]["schemas"]
    models.update(defs["$defs"])
    for request in ("ChatRequest", "SearchRequest"):
        models[request]["properties"]["k"]["anyOf"][0]["maximum"] = settings.api_max_k
    models["SearchRequest"]["properties"]["query"].update(
        maxLength=settings.max_question_chars, pattern=r"\S"
    )  # \S: not blank
    models["ChatRequest"]["properties"]["messages"]["contains"] = {
        "properties": {"role": {"const": "user"}},
        "required": ["role"],
    }
    return schema


def docs_page(schema: dict[str, Any]) -> str:
    """The schema as one HTML page, every route and every field with its type and description; built here, so a
    browser loads nothing from elsewhere (Swagger UI would fetch its scripts from a CDN)."""
    routes = "".join(
        _route_html(method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()
    )
    models = "".join(_model_html(name, spec) for name, spec in schema["components"]["schemas"].items())
    info = schema["info"]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(info['title'])} API</title><style>"
        "body{font:15px sans-serif;max-width:70em;margin:auto;padding:1em}td{border-top:1px solid #ddd;padding:.3em;"
        f"vertical-align:top}}</style></head><body><h1>{_esc(info['title'])} API</h1><p>{_esc(info['description'])} "
        "The schema itself: <code>/openapi.json</code>.</p><h2>Routes</h2><ul>"
        + routes
        + "</ul>"
        + models
        + "</body></html>"
    )


def _route_html(method: str, path: str, op: dict[str, Any]) -> str:
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    answers = " or ".join(
        f"{_type_html(c['schema'])} ({kind})" for kind, c in op["responses"]["200"].get("content", {}).items()
    )
    params = "".join(
        f"; <code>{_esc(p['name'])}</code> ({p['in']}): {_esc(p.get('description', ''))}"
        for p in op.get("parameters", [])
    )
    return (
        f"<li><code>{method.upper()} {_esc(path)}</code>: {_esc(op.get('summary', ''))}{params}"
        + (f"; body {_type_html(body)}" if body else "")
        + f"; returns {answers}</li>"
    )


def _model_html(name: str, spec: dict[str, Any]) -> str:
    required = set(spec.get("required", ()))
    rows = "".join(
        f"<tr><td><code>{_esc(field)}</code></td><td>{_type_html(prop)}</td><td>{'required' * (field in required)}</td>"
        f"<td>{_esc(prop.get('description', ''))}</td></tr>"
        for field, prop in spec.get("properties", {}).items()
    )
    return f"<h2 id='{_esc(name)}'>{_esc(name)}</h2><p>{_esc(spec.get('description', ''))}</p><table>{rows}</table>"


def _type_html(prop: dict[str, Any]) -> str:
    """A field's JSON Schema type in a few words, models linked to their tables."""
    if "$ref" in prop:
        name = _esc(prop["$ref"].rsplit("/", 1)[-1])
        return f"<a href='#{name}'>{name}</a>"
    if "anyOf" in prop:
        return " or ".join(_type_html(option) for option in prop["anyOf"])
    if "const" in prop or "enum" in prop:
        return " or ".join(_esc(json.dumps(value)) for value in prop.get("enum", [prop.get("const")]))
    if prop.get("type") == "array":
        return f"list of {_type_html(prop.get('items', {}))}"
    if isinstance(prop.get("additionalProperties"), dict):
        return f"object of {_type_html(prop['additionalProperties'])}"
    return _esc(str(prop.get("type", "any")))


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _check_free(host: str, port: int) -> None:
    """Fail in one line before uvicorn does so in several."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind((host, port))
    except OSError as e:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port or --host"
        ) from None
