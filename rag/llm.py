"""Chat LLMs behind one small interface: hosted OpenAI or any OpenAI-compatible endpoint.

Failures become one-line `LLMError`s. A wrong key or a missing model fails at once; only
rate limits, server errors and dropped connections are retried, a bounded number of times.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Protocol

from rag.config import Settings
from rag.errors import LLMError

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class ChatModel(Protocol):
    name: str
    endpoint: str

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]: ...


class OpenAIChat:
    """Streams chat completions through the openai client (hosted OpenAI, vLLM, llama.cpp, Ollama, ...)."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None, settings: Settings) -> None:
        from openai import OpenAI

        self.name = model
        self.endpoint = base_url or "https://api.openai.com/v1"
        self.settings = settings
        self._client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=settings.llm_timeout, max_retries=0)

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Yield text pieces as they arrive; retry only before the first piece (never duplicate text)."""
        for attempt in range(self.settings.llm_max_retries + 1):
            started = False
            try:
                response = self._client.chat.completions.create(
                    model=self.name, messages=messages, stream=True,  # type: ignore[arg-type]
                    temperature=self.settings.llm_temperature, max_tokens=self.settings.llm_max_tokens,
                )
                finished = parsed = False
                for chunk in response:
                    parsed = True
                    if not getattr(chunk, "choices", None):
                        continue
                    finished = finished or bool(chunk.choices[0].finish_reason)
                    piece = chunk.choices[0].delta.content
                    if piece:
                        started = True
                        yield piece
                if not parsed:
                    raise LLMError(f"malformed response from {self.endpoint} (model {self.name}): no completion chunks; is it an OpenAI-compatible server?")
                if not finished:
                    raise LLMError(f"the answer from {self.endpoint} stopped before it finished (no finish_reason); try again")
                return
            except LLMError:
                raise
            except Exception as e:  # noqa: BLE001 - mapped to one line below
                error = self._explain(e)
                if started or not self._retryable(e) or attempt == self.settings.llm_max_retries:
                    raise error from None
                time.sleep(min(8.0, 0.5 * 2**attempt))

    def _retryable(self, e: Exception) -> bool:
        import openai

        if isinstance(e, openai.APIStatusError):
            return e.status_code in RETRYABLE_STATUS
        return isinstance(e, (openai.APIConnectionError, openai.APITimeoutError)) and not _refused(e)

    def _explain(self, e: Exception) -> LLMError:
        import openai

        where = f"{self.endpoint} (model {self.name})"
        if isinstance(e, openai.AuthenticationError):
            return LLMError(f"the LLM endpoint {self.endpoint} rejected the API key (401); set a valid RAG_LLM_API_KEY or OPENAI_API_KEY")
        if isinstance(e, openai.NotFoundError):
            return LLMError(f"model {self.name!r} not found at {self.endpoint} (404); set RAG_LLM_MODEL to a model the endpoint serves")
        if isinstance(e, openai.APIStatusError):
            said = _server_message(e)
            return LLMError(f"the LLM endpoint {where} answered HTTP {e.status_code}{': ' + said if said else ''}; check the server's log")
        if isinstance(e, openai.APITimeoutError):
            return LLMError(f"no answer from {where} within {self.settings.llm_timeout:g} s; raise RAG_LLM_TIMEOUT or check the server")
        if isinstance(e, openai.APIConnectionError):
            if _refused(e):
                return LLMError(f"cannot reach the LLM endpoint {self.endpoint}; start the server or fix RAG_LLM_BASE_URL")
            return LLMError(f"the LLM endpoint {self.endpoint} closed the connection without an answer; check the server's log")
        return LLMError(f"malformed response from {where} ({type(e).__name__}); is it an OpenAI-compatible server?")


def _server_message(e: Exception) -> str:
    """The server's own reason (e.g. 'request exceeds the available context size'), one line, short."""
    body = getattr(e, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
    return " ".join(str(message).split())[:200] if message else ""


def _refused(e: Exception) -> bool:
    """Connection refused: nothing listens there, so retrying only wastes the user's time."""
    cause = e.__cause__
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or "Connection refused" in str(cause):
            return True
        cause = cause.__cause__
    return False


def backend_name(settings: Settings) -> str:
    """`auto` means: an endpoint if a base URL is set, else the extractive answerer."""
    if settings.llm_backend != "auto":
        return settings.llm_backend
    return "openai-compatible" if settings.llm_base_url else "extractive"


def make_chat_model(settings: Settings) -> ChatModel | None:
    """The configured LLM, or None for the extractive answerer."""
    backend = backend_name(settings)
    if backend == "extractive":
        return None
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else os.environ.get("OPENAI_API_KEY")
    if backend == "openai":
        if not key:
            raise LLMError("RAG_LLM_BACKEND=openai needs OPENAI_API_KEY (or RAG_LLM_API_KEY)")
        return OpenAIChat(settings.llm_model, settings.llm_base_url, key, settings)
    if not settings.llm_base_url:
        raise LLMError("RAG_LLM_BACKEND=openai-compatible needs RAG_LLM_BASE_URL, e.g. http://127.0.0.1:8080/v1")
    return OpenAIChat(settings.llm_model, settings.llm_base_url, key, settings)
