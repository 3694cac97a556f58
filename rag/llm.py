"""Chat LLMs behind one small interface: hosted OpenAI or any OpenAI-compatible endpoint.

Failures become one-line `LLMError`s that never carry the key. Retries are the openai client's
own (429, 5xx, dropped connections; they honour Retry-After), inside a total time budget of
2 x RAG_LLM_TIMEOUT per call: every attempt gets what is left of it, a retry that would start
after it is not made, and an answer still streaming when it ends is cut off. A wrong key, a
missing model or a refused connection fail at once.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from rag.config import Settings
from rag.errors import LLMError

BUDGET_FACTOR = 2.0  # a call, retries included, ends within this many times its per-attempt timeout


class ChatModel(Protocol):
    name: str
    endpoint: str

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]: ...

    def yes_probability(self, messages: list[dict[str, str]]) -> float | None: ...


# ------------------------------------------------------------------ a client with a total time budget


class OutOfTime(Exception):
    """The call's budget ended before an attempt succeeded; `last` says how the last attempt failed."""

    def __init__(self, last: str, elapsed: float) -> None:
        super().__init__(last)
        self.last = last
        self.elapsed = elapsed


class Clock:
    """The budget of one call: when it started and when it must end."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.last = ""  # how the last failed attempt failed, for a budget that ends before the next one starts

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.seconds - self.elapsed()


def _failure(error: BaseException | None) -> str:
    """How an attempt failed, in a few words, from the exception the client is handling."""
    response = getattr(error, "response", None)
    if response is not None and hasattr(response, "status_code"):
        return f"HTTP {response.status_code}"
    if error is not None and "Timeout" in type(error).__name__:
        return "no answer"
    return "connection closed without an answer"


def refused(error: BaseException | None) -> bool:
    """Connection refused: nothing listens there, so retrying only wastes the user's time."""
    for _ in range(10):  # causes and contexts, a few levels deep
        if error is None:
            return False
        if isinstance(error, ConnectionRefusedError) or "Connection refused" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def transport_error(error: BaseException) -> bool:
    """An HTTP-level failure that the client passes on unwrapped when it happens mid-stream (e.g. RemoteProtocolError)."""
    return any(c.__name__ == "TransportError" for c in type(error).__mro__)


def _request_of(error: BaseException | None) -> Any:
    try:
        return getattr(error, "request", None)
    except RuntimeError:  # httpx raises when the request was never attached
        return None


@lru_cache(maxsize=1)
def _bounded_class() -> type:
    """The openai client with two hooks of its retry loop bounded by the caller's Clock (built on first use:
    importing openai costs half a second that `rag search` never needs)."""
    import openai

    class BoundedOpenAI(openai.OpenAI):
        def __init__(self, *, attempt_timeout: float, **kwargs: Any) -> None:
            super().__init__(timeout=attempt_timeout, **kwargs)
            self.attempt_timeout = attempt_timeout
            self._local = threading.local()

        @contextmanager
        def budget(self, seconds: float) -> Iterator[Clock]:
            """Bound every request made in this block, on this thread, to `seconds` in total."""
            previous = getattr(self._local, "clock", None)
            self._local.clock = clock = Clock(seconds)
            try:
                yield clock
            finally:
                self._local.clock = previous

        def _clock(self) -> Clock | None:
            return getattr(self._local, "clock", None)

        def _prepare_options(self, options: Any) -> Any:
            """Each attempt may take the per-attempt timeout, or what is left of the budget if that is less."""
            clock = self._clock()
            if clock is not None:
                if clock.remaining() <= 0:
                    raise OutOfTime(clock.last or "no answer", clock.elapsed())
                options.timeout = min(self.attempt_timeout, clock.remaining())
            return super()._prepare_options(options)

        def _calculate_retry_timeout(self, remaining_retries: int, options: Any, response_headers: Any = None) -> float:
            """Called while the client handles a failed attempt, before it sleeps and retries: give up
            instead when nothing listens, or when the wait (Retry-After or backoff) outlasts the budget."""
            wait = super()._calculate_retry_timeout(remaining_retries, options, response_headers)
            error = sys.exc_info()[1]
            if refused(error):
                raise openai.APIConnectionError(request=_request_of(error)) from error
            clock = self._clock()
            if clock is not None:
                clock.last = _failure(error)
                if wait >= clock.remaining():
                    raise OutOfTime(clock.last, clock.elapsed())
            return wait

    return BoundedOpenAI


def bounded_client(base_url: str | None, api_key: str | None, attempt_timeout: float, max_retries: int) -> Any:
    """An openai client whose `budget(seconds)` block bounds all attempts of a call together."""
    return _bounded_class()(
        base_url=base_url, api_key=api_key or "not-needed", attempt_timeout=attempt_timeout, max_retries=max_retries
    )


def display_url(url: str) -> str:
    """The endpoint as shown in messages: no user:password, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{host}:{parts.port}" if parts.port else host, parts.path, "", ""))


def scrubber(secret: str | None) -> Callable[[str], str]:
    """A function that blanks `secret` out of a text (a server may echo the key it rejected)."""
    return lambda text: text.replace(secret, "[redacted]") if secret else text


def server_message(e: Exception) -> str:
    """The server's own reason (e.g. 'request exceeds the available context size'), one line, short."""
    body = getattr(e, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
    return " ".join(str(message).split())[:200] if message else ""


# ------------------------------------------------------------------ chat


class OpenAIChat:
    """Streams chat completions through the openai client (hosted OpenAI, vLLM, llama.cpp, Ollama, ...)."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None, settings: Settings) -> None:
        self.name = model
        self.endpoint = display_url(base_url or "https://api.openai.com/v1")
        self.settings = settings
        self._scrub = scrubber(api_key)
        self._client = bounded_client(base_url, api_key, settings.llm_timeout, settings.llm_max_retries)

    @property
    def budget(self) -> float:
        return BUDGET_FACTOR * self.settings.llm_timeout

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Yield text pieces as they arrive. Retries happen only before the first piece (never duplicated text)."""
        with self._client.budget(self.budget) as clock:
            try:
                response = self._client.chat.completions.create(
                    model=self.name,
                    messages=messages,
                    stream=True,  # type: ignore[arg-type]
                    temperature=self.settings.llm_temperature,
                    max_tokens=self.settings.llm_max_tokens,
                )
                with response:
                    yield from self._pieces(response, clock)
            except LLMError:
                raise
            except Exception as e:  # noqa: BLE001 - mapped to one line below
                raise LLMError(self._scrub(self._explain(e))) from None

    def yes_probability(self, messages: list[dict[str, str]]) -> float | None:
        """P("yes") of a one-token yes/no reply, from the first token's top logprobs; None when the endpoint
        returns no logprobs or neither word is among them."""
        with self._client.budget(self.budget):
            try:
                response = self._client.chat.completions.create(
                    model=self.name,
                    messages=messages,
                    max_tokens=1,
                    temperature=0.0,  # type: ignore[arg-type]
                    logprobs=True,
                    top_logprobs=10,
                )
            except Exception as e:  # noqa: BLE001 - mapped to one line below
                raise LLMError(self._scrub(self._explain(e))) from None
        if not getattr(response, "choices", None):
            raise LLMError(
                f"malformed response from {self.endpoint} (model {self.name}): no choices; is it an OpenAI-compatible server?"
            )
        return yes_share(response)

    def _pieces(self, response: Iterator[Any], clock: Clock) -> Iterator[str]:
        finished = parsed = False
        for chunk in response:
            parsed = True
            if clock.remaining() <= 0:
                raise LLMError(
                    f"the answer from {self.endpoint} was still arriving after {clock.elapsed():.0f} s, the limit "
                    f"(2 x RAG_LLM_TIMEOUT), and was cut off; raise RAG_LLM_TIMEOUT or use a faster model"
                )
            if not getattr(chunk, "choices", None):
                continue
            finished = finished or bool(chunk.choices[0].finish_reason)
            piece = chunk.choices[0].delta.content
            if piece:
                yield piece
        if not parsed:
            raise LLMError(
                f"malformed response from {self.endpoint} (model {self.name}): no completion chunks; is it an OpenAI-compatible server?"
            )
        if not finished:
            raise LLMError(f"the answer from {self.endpoint} stopped before it finished (no finish_reason); try again")

    def _explain(self, e: Exception) -> str:
        return explain(e, LLM_ENDPOINT, self.endpoint, self.name, self.settings.llm_timeout)


def yes_share(response: Any) -> float | None:
    """P(yes) / (P(yes) + P(no)) over the first generated token's alternatives ("Yes", " yes", "NO", ...)."""
    try:
        top = response.choices[0].logprobs.content[0].top_logprobs
    except (AttributeError, IndexError, TypeError):
        return None
    mass = {"yes": 0.0, "no": 0.0}
    for alternative in top or []:
        word = str(getattr(alternative, "token", "")).strip().lower()
        if word in mass:
            mass[word] += math.exp(float(alternative.logprob))
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else None


@dataclass(frozen=True)
class EndpointKind:
    """How messages name an endpoint and the settings that fix it."""

    what: str  # "LLM endpoint", "embeddings endpoint"
    key: str
    model: str
    url: str
    timeout: str


LLM_ENDPOINT = EndpointKind("LLM endpoint", "RAG_LLM_API_KEY", "RAG_LLM_MODEL", "RAG_LLM_BASE_URL", "RAG_LLM_TIMEOUT")
EMBED_ENDPOINT = EndpointKind(
    "embeddings endpoint", "RAG_EMBED_API_KEY", "RAG_EMBED_MODEL", "RAG_EMBED_BASE_URL", "RAG_EMBED_TIMEOUT"
)


def explain(e: Exception, kind: EndpointKind, endpoint: str, model: str, timeout: float) -> str:
    """One line saying what went wrong with an OpenAI-compatible endpoint and which setting fixes it."""
    import openai

    where = f"the {kind.what} {endpoint} (model {model})"
    if isinstance(e, OutOfTime):
        return (
            f"{where} still failed ({e.last}) after {e.elapsed:.0f} s of attempts, the limit "
            f"(2 x {kind.timeout}); check the server, or raise {kind.timeout}"
        )
    if isinstance(e, openai.AuthenticationError):
        return f"the {kind.what} {endpoint} rejected the API key (401); set a valid {kind.key} or OPENAI_API_KEY"
    if isinstance(e, openai.NotFoundError):
        return f"model {model!r} not found at the {kind.what} {endpoint} (404); set {kind.model} to a model it serves"
    if isinstance(e, openai.APIStatusError):
        said = server_message(e)
        return f"{where} answered HTTP {e.status_code}{': ' + said if said else ''}; check the server's log"
    if isinstance(e, openai.APITimeoutError) or "Timeout" in type(e).__name__:
        return f"no answer from {where} within {timeout:g} s; raise {kind.timeout} or check the server"
    if isinstance(e, openai.APIConnectionError) and refused(e):
        return f"cannot reach the {kind.what} {endpoint}; start the server or fix {kind.url}"
    if isinstance(e, openai.APIConnectionError) or transport_error(e):
        return f"the {kind.what} {endpoint} closed the connection without an answer; check the server's log"
    return f"malformed response from {where} ({type(e).__name__}); is it an OpenAI-compatible server?"


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
