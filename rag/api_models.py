"""The HTTP API's OpenAI-compatible shapes: request and response models (the OpenAPI schema), an answer's
sources in the fields chat clients show, the stream of chunk events, and the one-line error body."""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from rag.answer import Streamed
from rag.errors import ConfigError, EmbedError, LLMError, StoreError, UserError, redact
from rag.references import answer_json
from rag.text import sentences
from rag.types import Answer

log = logging.getLogger("rag.api")

# Problems the server operator must fix (index, embedder, LLM endpoint) are 503; the caller's are 400.
_UNAVAILABLE = (ConfigError, StoreError, EmbedError, LLMError)


def utf8(text: str) -> str:
    """Refuse unpaired surrogates: JSON can escape them (`\\ud800`), but they are not text, and the tokenizer
    and the index cannot encode them."""
    try:
        text.encode()
    except UnicodeEncodeError as e:
        raise ValueError(
            f"character {e.start} is an unpaired surrogate ({text[e.start]!r}), not text; send UTF-8 text"
        ) from None
    return text


Utf8 = Annotated[str, AfterValidator(utf8)]


# ------------------------------------------------------------ request and response models (the OpenAPI schema)


class ErrorDetail(BaseModel):
    message: str = Field(description="What is wrong and what to do, in one line.")
    type: str = Field(
        description="invalid_request_error, authentication_error, not_found_error, request_too_large, "
        "service_unavailable (index, embedder or LLM endpoint not usable) or server_error."
    )


class ErrorBody(BaseModel):
    error: ErrorDetail = Field(description="The one error of this request.")


class Scope(BaseModel):
    """Options shared by answers and searches; numbers are strict, so `true` or "5" is refused, not read as 1 or 5."""

    k: int | None = Field(
        default=None,
        ge=1,
        strict=True,
        description="How many papers (default: RAG_TOP_K for a search; RAG_ANSWER_K, "
        "or RAG_LIST_K for a 'which papers' question, for an answer); at most RAG_API_MAX_K.",
    )
    year_from: int | None = Field(
        default=None,
        ge=0,
        le=9999,
        strict=True,
        description="Only papers from this year on (papers with no known year are left out).",
    )
    year_to: int | None = Field(
        default=None,
        ge=0,
        le=9999,
        strict=True,
        description="Only papers up to this year (papers with no known year are left out).",
    )
    sources: list[Utf8] = Field(
        default_factory=list, description="Only papers from these corpus files (file names as in `source`); empty: all."
    )
    categories: list[Utf8] = Field(
        default_factory=list,
        description="Only papers in one of these categories (e.g. cs.CL); papers with none are left out.",
    )
    venues: list[Utf8] = Field(
        default_factory=list,
        description="Only papers from one of these venues (the whole name, any case); papers with none are left out.",
    )


class TextPart(BaseModel):
    type: Literal["text"] = Field(description="Only text parts are supported.")
    text: str = Field(description="The text.")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="user and assistant turns are the conversation; system, developer and tool messages are ignored "
        "(the server's own instructions govern the answer)."
    )
    content: str | list[TextPart] | None = Field(default=None, description="The message text, or a list of text parts.")

    @field_validator("content")
    @classmethod
    def _is_text(cls, content: str | list[TextPart] | None) -> str | list[TextPart] | None:
        utf8(_joined(content))
        return content

    def text(self) -> str:
        return _joined(self.content)


def _joined(content: str | list[TextPart] | None) -> str:
    return "".join(part.text for part in content) if isinstance(content, list) else content or ""


class ChatRequest(Scope):
    """An OpenAI chat completion request; other OpenAI parameters (temperature, max_tokens, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(
        default=None, description="Ignored: the server answers with its configured model, named in the response."
    )
    messages: list[ChatMessage] = Field(
        min_length=1,
        description="The conversation; the last user message is the question, "
        "earlier user/assistant pairs let it be a follow-up.",
    )
    stream: bool = Field(
        default=False,
        description="Send the answer as server-sent events (`data: {chunk}` lines, then "
        "`data: [DONE]`); the sources come in the last chunk, the one with a finish_reason.",
    )


class SearchRequest(Scope):
    query: Utf8 = Field(description="What to search for.")
    method: Literal["hybrid", "bm25", "dense"] = Field(
        default="hybrid", description="hybrid (BM25 and dense fused), or one retriever alone."
    )


class PaperOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    paper_id: str = Field(description="Stable id: a hash of the title and abstract.")
    title: str = Field(description="The title, or the abstract's opening words when the source has none.")
    has_title: bool = Field(description="Whether `title` is the paper's own title.")
    abstract: str = Field(
        description="The abstract, with markup removed and any sentence addressed to an AI replaced by a marker."
    )
    source: str = Field(description="The first corpus file the paper came from.")
    sources: list[str] = Field(description="Every corpus file the paper came from.")
    date: str | None = Field(
        description="ISO date, or the date as written when it is not a full date; empty when unknown."
    )
    year: int | None = Field(description="Publication year, when known.")
    authors: int | None = Field(description="Number of authors, when known.")
    organisation: str = Field(description="Organisation, when known.")
    doi: str | None = Field(default=None, description="DOI, bare and lower case, when the source gives a valid one.")
    arxiv_id: str | None = Field(default=None, description="arXiv id, when known.")
    pmid: str | None = Field(default=None, description="PubMed id, when known.")
    url: str | None = Field(default=None, description="doi.org, arXiv or PubMed link from an identifier; else null.")
    source_url: str | None = Field(default=None, description="The URL the source file gives: shown, never linked.")
    venue: str | None = Field(default=None, description="Journal or conference, when known.")
    categories: list[str] = Field(default=[], description="Subject categories (e.g. arXiv's cs.CL), when known.")
    suspicious: bool = Field(
        description="The abstract held text addressed to an AI; each such sentence is replaced by a marker."
    )


class HitOut(PaperOut):
    score: float = Field(description="Fused relevance score (higher is better).")
    dense: float | None = Field(description="Cosine similarity of the paper's best chunk, when dense search found it.")
    bm25: float | None = Field(description="BM25 score, when the paper shares terms with the query.")
    ranks: dict[str, int] = Field(description="Rank of the paper in each retriever that found it (dense, bm25).")


class CitationOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    n: int = Field(description="The [n] in the answer; source n is `sources[n-1]`.")
    paper_id: str = Field(description="The cited paper.")
    title: str = Field(description="Its title.")
    claim: str = Field(description="The answer sentence that carries the marker.")
    quote: str = Field(description="The abstract sentence that best supports the claim.")
    quote_start: int = Field(description="Start offset of the quote in the abstract.")
    quote_end: int = Field(description="End offset of the quote in the abstract.")
    support: float = Field(description="Share of the claim's content words found in the quote and title (0-1).")
    supported: bool = Field(description="Whether the quote backs the claim.")


class AnswerOut(BaseModel):
    """The checked answer, exactly as `rag ask --json` prints it."""

    model_config = ConfigDict(extra="allow")

    question: str = Field(description="The question as asked.")
    standalone_question: str = Field(
        description="The question rewritten to stand alone (follow-ups), as retrieval saw it."
    )
    field_terms: str = Field(
        default="",
        description="The field's terms an LLM named for a question not in the corpus's words, searched beside it.",
    )
    answer: str = Field(description="The checked answer text with its [n] markers.")
    mode: str = Field(description="llm or extractive.")
    model: str = Field(description="The answering model.")
    refused: bool = Field(description="True when the corpus does not answer the question.")
    unsupported: bool = Field(description="True when no claim kept a citation its source backs.")
    citations: list[CitationOut] = Field(description="Every [n] in the answer, checked against the cited abstract.")
    removed_citations: list[int] = Field(description="Citation numbers that named no given source and were removed.")
    uncited_candidates: list[str] = Field(description="Paper ids a list answer left out although they look relevant.")
    sources: list[HitOut] = Field(
        description="The papers given to the answerer, in [n] order (the closest ones for a refusal)."
    )
    notice: str = Field(description="A note for the user, e.g. how to configure an LLM.")
    bibtex: str = Field(default="", description="The cited papers as BibTeX entries, in [n] order.")
    timings: dict[str, float] = Field(description="Seconds spent per step (retrieve, first_token, check, total).")


class SearchResult(BaseModel):
    title: str = Field(description="Title of source n (the list is in [n] order).")
    url: str | None = Field(description="doi.org, arXiv or PubMed link from the paper's identifier; else null.")
    date: str | None = Field(description="Publication date, when known.")
    snippet: str = Field(
        description="The sentence the answer quotes from this source, else the abstract's first sentence."
    )


class Sources(BaseModel):
    citations: list[str] = Field(description="The papers the answer cites, in [n] order: each link, else title.")
    search_results: list[SearchResult] = Field(
        description="Every source in [n] order ([n] is search_results[n-1]), with the quoted sentence as snippet."
    )
    rag: AnswerOut = Field(
        description="The full checked answer: citations with paper id, quote, offsets and support; refusal; timings."
    )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = Field(description="Always assistant.")
    content: str = Field(description="The checked answer text, with its [n] markers.")


class Choice(BaseModel):
    index: int = Field(description="Always 0: one answer per request.")
    message: AssistantMessage = Field(description="The answer.")
    finish_reason: Literal["stop"] = Field(description="Always stop.")


class ChatCompletion(Sources):
    id: str = Field(description="Unique id of this completion.")
    object: Literal["chat.completion"] = Field(description="Always chat.completion.")
    created: int = Field(description="Unix time of the answer.")
    model: str = Field(description="The answering model (the LLM's name, or 'extractive (no LLM)').")
    choices: list[Choice] = Field(description="One choice.")


class Delta(BaseModel):
    role: Literal["assistant"] | None = Field(default=None, description="Set in the first chunk only.")
    content: str | None = Field(default=None, description="The next piece of answer text.")


class ChunkChoice(BaseModel):
    index: int = Field(description="Always 0.")
    delta: Delta = Field(description="What this chunk adds.")
    finish_reason: Literal["stop"] | None = Field(description="stop in the last chunk, else null.")


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed answer; the last one also carries `citations`, `search_results` and `rag`."""

    id: str = Field(description="Same in every chunk of one answer.")
    object: Literal["chat.completion.chunk"] = Field(description="Always chat.completion.chunk.")
    created: int = Field(description="Unix time the answer started.")
    model: str = Field(description="The answering model.")
    choices: list[ChunkChoice] = Field(description="One choice.")
    citations: list[str] | None = Field(default=None, description="Last chunk only: as in a chat.completion.")
    search_results: list[SearchResult] | None = Field(
        default=None, description="Last chunk only: as in a chat.completion."
    )
    rag: AnswerOut | None = Field(default=None, description="Last chunk only: as in a chat.completion.")


class SearchResponse(BaseModel):
    results: list[HitOut] = Field(description="Best first; empty when the filters match no paper.")


class ModelCard(BaseModel):
    id: str = Field(description="The answering model, as echoed in completions.")
    object: Literal["model"] = Field(description="Always model.")
    created: int = Field(description="Unix time the server started.")
    owned_by: str = Field(description="Always rag-abstracts.")


class ModelList(BaseModel):
    object: Literal["list"] = Field(description="Always list.")
    data: list[ModelCard] = Field(description="The one model this server answers with.")


class Health(BaseModel):
    status: Literal["ok"] = Field(description="ok while the server runs (the index is opened on first use, not here).")


# ------------------------------------------------------------ answers in OpenAI shapes


def sources_of(answer: Answer) -> dict[str, Any]:
    """`citations`, `search_results` and `rag` for an answer, in [n] order."""
    results = []
    for n, hit in enumerate(answer.sources, 1):
        quote = next((c.quote for c in answer.citations if c.n == n and c.quote), None)
        first = sentences(hit.paper.abstract, hit.paper.spans)[:1]
        results.append(
            {
                "title": hit.paper.display_title,
                "url": hit.paper.link,
                "date": hit.paper.date or hit.paper.date_raw or None,
                "snippet": quote or (first[0] if first else hit.paper.abstract),
            }
        )
    citations = [paper.link or paper.display_title for _, paper in answer.cited()]
    return {"citations": citations, "search_results": results, "rag": answer_json(answer)}


def _event(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


async def sse_events(
    model: str, first: str, pull: Callable[[], Awaitable[str | None]], streamed: Streamed
) -> AsyncIterator[str]:
    """The answer as OpenAI chunk events, `pull` giving each piece after `first` (None: done); an error after
    the first piece becomes an `error` event, which OpenAI clients raise, since the 200 status has already been sent."""
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        return _event({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

    yield chunk({"role": "assistant", "content": first})
    try:
        while (piece := await pull()) is not None:
            yield chunk({"content": piece})
    except Exception as e:  # noqa: BLE001 - the stream must end with an error event, never a cut connection
        if not isinstance(e, UserError):
            log.error("unexpected error while streaming an answer:\n%s", redact(traceback.format_exc()))
        status, body = error_body(e)
        yield _event({"error": body["error"], "status": status})
    else:
        assert streamed.answer is not None
        yield chunk({}, "stop", **sources_of(streamed.answer))
    yield _event("[DONE]")


def error_body(e: Exception) -> tuple[int, dict[str, Any]]:
    """Status and body for an exception: a UserError's own line, anything else a generic 500 that reveals nothing."""
    if isinstance(e, UserError):
        status, kind = (503, "service_unavailable") if isinstance(e, _UNAVAILABLE) else (400, "invalid_request_error")
        return status, {"error": {"message": str(e), "type": kind}}
    return 500, {"error": {"message": "internal server error; the server log has the details", "type": "server_error"}}
