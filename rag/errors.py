"""The one error family a user sees: every `UserError` prints as a single line, never a traceback.

The CLI, the UI and the HTTP API catch `UserError` and show its message, which names the problem
and what to do about it. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from importlib.util import find_spec

DISTRIBUTION = "rag-abstracts"  # the name pip installs the project under


class UserError(Exception):
    """A problem the user can fix; the message says what went wrong and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class ConfigError(UserError):
    """A setting or optional package is missing or wrong."""


class MissingExtra(ConfigError):
    """A front door whose optional packages (a pip extra) are not installed."""

    def __init__(self, door: str, extra: str) -> None:
        install = f"pip install '{DISTRIBUTION}[{extra}]' (in a checkout: pip install -e '.[{extra}]')"
        super().__init__(f"{door} needs the {extra} extra: {install}")


def require_extra(door: str, extra: str, *modules: str) -> None:
    """Stop `door` with one line naming the extra to install when one of its modules is missing. Looks the
    modules up without importing them, so the check costs nothing at start-up."""
    if any(find_spec(name) is None for name in modules):
        raise MissingExtra(door, extra)


class CorpusError(UserError):
    """A whole input path or question file is unusable."""


class StoreError(UserError):
    """The vector store or the lexical index cannot be used."""


class EmbedError(UserError):
    """The embedder failed (endpoint down, key rejected, wrong dimension)."""


class LLMError(UserError):
    """The LLM endpoint could not give an answer."""


class QuestionError(UserError):
    """The question or its options are not usable (empty, reversed year range, k out of range)."""


# Things that look like secrets: OpenAI-style keys, bearer tokens, key=value pairs naming a key.
_SECRET = re.compile(
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*"
    r"|(?i:(?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]{6,}"
)


def redact(text: str) -> str:
    """Replace anything that looks like an API key or token, so no message ever echoes a secret."""
    return _SECRET.sub(_mask, text)


def _mask(m: re.Match) -> str:
    found = m.group(0)
    head = re.match(r"(?i)(?:bearer\s+|(?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)", found)
    return (head.group(0) if head else "") + "[redacted]"
