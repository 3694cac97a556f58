"""One settings tree, read from the environment (prefix RAG_) and from `.env`."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from platformdirs import user_data_dir
from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic.json_schema import JsonDict
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from rag import tuned
from rag.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent
_BUNDLE = _PACKAGE / "_bundle"  # a wheel's copy of the folders below (see pyproject.toml)
# The folder holding prompts/, ui/, data/corpus/ and eval/datasets/: the source checkout, or
# the copy inside the installed package, so both resolve the same relative paths.
PROJECT_ROOT = _BUNDLE if _BUNDLE.is_dir() else _PACKAGE.parent
PROMPTS_DIR = PROJECT_ROOT / "prompts"  # prompt templates (text files)
UI_DIR = PROJECT_ROOT / "ui"  # the Streamlit app
DEFAULT_CORPUS = PROJECT_ROOT / "data" / "corpus"  # the bundled sample corpus
DATASETS_DIR = PROJECT_ROOT / "eval" / "datasets"  # the bundled eval question sets
APP_NAME = "rag-abstracts"
TUNED: JsonDict = {"tuned": True}  # marks a field whose default is a number chosen on dev (rag/tuned.py), not a setting
USER_DATA_DIR = Path(user_data_dir(APP_NAME, appauthor=False))  # outside any source tree
_USER_DATA_SHOWN = f"<user data dir>/{APP_NAME}"


class Paths(BaseModel):
    """Where the corpus files and the index live."""

    TITLE: ClassVar[str] = "Paths"

    corpus_paths: Annotated[list[Path], NoDecode] = Field(
        default=[DEFAULT_CORPUS],
        description="Files or folders ingested when `rag ingest` is given no path (one path, a JSON list, or paths joined by `:`).",
    )
    data_dir: Path = Field(
        default=USER_DATA_DIR,
        description="Where the embedded Chroma index and ingest record live; the default is the user data folder "
        "(~/.local/share/rag-abstracts on Linux, ~/Library/Application Support/rag-abstracts on macOS).",
    )

    @field_validator("corpus_paths", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        """RAG_CORPUS_PATHS as a user writes it: one path, a JSON list, or paths joined like $PATH."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(f'not a JSON list of paths ({e.msg}); write one path, ["a", "b"] or a:b') from None
        return [part for part in value.split(os.pathsep) if part.strip()]


class Store(BaseModel):
    """The Chroma store: the embedded index under RAG_DATA_DIR, or a shared server."""

    TITLE: ClassVar[str] = "Store"

    collection: str = Field(
        default="abstracts", min_length=3, max_length=512, description="Chroma collection name (3-512 characters)."
    )
    chroma_host: str | None = Field(
        default=None, description="Chroma server host; set it to use a server instead of the embedded index."
    )
    chroma_port: int = Field(default=8000, ge=1, le=65535, description="Chroma server port, used with RAG_CHROMA_HOST.")


class Embedding(BaseModel):
    """The embedder that turns chunks and questions into vectors, and its endpoint when it is remote."""

    TITLE: ClassVar[str] = "Embedding"

    embed_backend: Literal["onnx", "openai-compatible", "hashing"] = Field(
        default="onnx",
        description="`onnx`: bundled all-MiniLM-L6-v2, offline. `openai-compatible`: an embeddings endpoint. "
        "`hashing`: word hashing, no model (fast, no synonyms; for benchmarks and huge corpora).",
    )
    embed_model: str = Field(
        default="text-embedding-3-small", description="Model name for the openai-compatible embedder."
    )
    embed_base_url: str | None = Field(
        default=None, description="Base URL of the embeddings endpoint (None: api.openai.com)."
    )
    embed_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("RAG_EMBED_API_KEY", "OPENAI_API_KEY"),
        description="Key for the embeddings endpoint (falls back to OPENAI_API_KEY).",
    )
    embed_batch_size: int = Field(default=32, ge=1, le=4096, description="Texts embedded per batch.")
    embed_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Embedding requests in flight at once (openai-compatible), so a GPU server stays busy.",
    )
    embed_timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds to wait for one embeddings request; it gives up after twice this, retries included.",
    )
    embed_max_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of an embeddings request on 429/5xx/dropped connections, with backoff.",
    )
    chunk_tokens: int = Field(
        default=256,
        ge=32,
        le=8192,
        description="Largest chunk in embedder word pieces; longer abstracts split on sentences.",
    )


class Retrieval(BaseModel):
    """How many papers a search and an answer take, how BM25 and dense scores fuse, when to refuse."""

    TITLE: ClassVar[str] = "Retrieval and answers"

    top_k: int = Field(default=10, ge=1, le=1000, description="Papers returned by a search.")
    candidates: int = Field(default=50, ge=1, le=10000, description="Chunks each retriever contributes before fusion.")
    fusion: Literal["weighted", "rrf"] = Field(
        default="weighted",
        description="How hybrid search combines BM25 and dense: weighted scores or reciprocal rank fusion.",
    )
    bm25_weight: float = Field(
        default=tuned.BM25_WEIGHT,
        json_schema_extra=TUNED,
        ge=0.0,
        le=1.0,
        description="Least share of BM25 in weighted fusion; it rises toward 1 as the best BM25 paper holds more of the query's words (1: BM25 only).",
    )
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant (fusion=rrf).")
    answer_k: int = Field(default=6, ge=1, le=100, description="Papers given to the answerer for an ordinary question.")
    list_k: int = Field(
        default=12, ge=1, le=100, description='Papers given to the answerer for a "which papers" question.'
    )
    refuse_below: float = Field(
        default=tuned.REFUSE_BELOW,
        json_schema_extra=TUNED,
        ge=0.0,
        le=1.0,
        description="Refuse when the best paper's relevance (0-1) is below this.",
    )


class LLMEndpoint(BaseModel):
    """The LLM that writes and judges answers (none configured: extractive answers)."""

    TITLE: ClassVar[str] = "LLM endpoint"

    llm_backend: Literal["auto", "extractive", "openai", "openai-compatible"] = Field(
        default="auto",
        description="`auto`: openai-compatible when RAG_LLM_BASE_URL is set, else `extractive` (no LLM).",
    )
    llm_model: str = Field(default="gpt-4o-mini", description="Chat model name at the endpoint.")
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1."
    )
    llm_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("RAG_LLM_API_KEY", "OPENAI_API_KEY"),
        description="Key for the LLM endpoint (falls back to OPENAI_API_KEY); never logged.",
    )
    llm_timeout: float = Field(default=60.0, gt=0, le=3600, description="Seconds to wait for the LLM endpoint.")
    llm_max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries on 429/5xx/dropped connections, with backoff."
    )
    llm_temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    llm_max_tokens: int = Field(default=512, ge=1, le=32768, description="Longest answer, in tokens.")
    llm_context: int = Field(
        default=8192,
        ge=512,
        description="The model's context window in tokens; sources that would overflow it are dropped.",
    )
    llm_source_sentences: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Sentences of each abstract an LLM is shown, those that bear most on the question (0: the whole abstract); fewer means a shorter prompt, which a small local model reads faster.",
    )
    llm_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Papers the LLM judges at once (one short yes/no request each); a local server serves as many as it has parallel slots.",
    )
    llm_quote_when_declined: bool = Field(
        default=True,
        description="When the LLM says its sources do not answer though they passed the relevance check, show the sentences that match best (extractive) instead of a refusal.",
    )


class Limits(BaseModel):
    """What a request to any front door may hold, and the HTTP API's key."""

    TITLE: ClassVar[str] = "Request limits"

    api_key: SecretStr | None = Field(
        default=None,
        description="Bearer key `rag serve` requires on every route but /health (unset: no key); never logged.",
    )
    max_question_chars: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="Longest question every front door accepts, in characters (in the HTTP API, each earlier turn too).",
    )
    api_max_body_bytes: int = Field(
        default=1_000_000, ge=1024, le=100_000_000, description="Largest HTTP API request body, in bytes."
    )
    api_max_k: int = Field(
        default=50, ge=1, le=1000, description="Largest `k` (papers per search or answer) the HTTP API accepts."
    )


# Deployment settings by concern, in the order the settings table lists them.
CONCERNS: tuple[type[Paths | Store | Embedding | Retrieval | LLMEndpoint | Limits], ...] = (
    Paths,
    Store,
    Embedding,
    Retrieval,
    LLMEndpoint,
    Limits,
)


class Settings(BaseSettings, Limits, LLMEndpoint, Retrieval, Embedding, Store, Paths):
    """Every setting, read from RAG_* variables and `.env`; the fields are flat (`settings.llm_timeout`), their
    concerns are the classes above."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore", populate_by_name=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, or one `ConfigError` line naming the bad variable (never a pydantic traceback)."""
    try:
        return Settings()
    except SettingsError as e:  # a value the environment source could not even parse
        raise ConfigError(f"{e}; fix it in the environment or .env") from None
    except ValidationError as e:
        first = e.errors()[0]
        name = "RAG_" + str(first["loc"][0]).upper() if first["loc"] else "a setting"
        raise ConfigError(f"{name}: {first['msg']}; fix it in the environment or .env") from None


def _shown_default(value: object) -> str:
    """Defaults as a user writes them: project paths relative, the per-user folder by name, lists as JSON."""
    if value == USER_DATA_DIR:
        return _USER_DATA_SHOWN
    if isinstance(value, Path):
        return str(value.relative_to(PROJECT_ROOT)) if value.is_relative_to(PROJECT_ROOT) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(f'"{_shown_default(v)}"' for v in value) + "]"
    return "" if value is None else str(value)


def _rows(concern: type[BaseModel]) -> list[tuple[str, str, str]]:
    """The concern's settings as (variable, default, description); numbers chosen on dev are not among them."""
    prefix = Settings.model_config["env_prefix"]
    return [
        (prefix + name.upper(), _shown_default(field.default), field.description or "")
        for name, field in concern.model_fields.items()
        if field.json_schema_extra != TUNED
    ]


def settings_rows() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, concern by concern."""
    return [row for concern in CONCERNS for row in _rows(concern)]


def settings_table() -> str:
    """The settings table of docs/settings.md: a heading, a line and a table per concern."""
    blocks = []
    for concern in CONCERNS:
        lines = [
            f"### {concern.TITLE}",
            "",
            concern.__doc__ or "",
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{var}` | {f'`{default}`' if default else '(unset)'} | {doc} |" for var, default, doc in _rows(concern)
        ]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def env_example() -> str:
    blocks = ["# Every setting, with its default, by concern. Copy to .env and uncomment what you change.\n"]
    for concern in CONCERNS:
        blocks.append(f"# ---- {concern.TITLE}: {concern.__doc__}\n")
        blocks += [f"# {doc}\n# {var}={default}\n" for var, default, doc in _rows(concern)]
    return "\n".join(blocks)


if (
    __name__ == "__main__"
):  # python -m rag.config [--env]: print the settings tables of docs/settings.md (or .env.example)
    import sys

    print(env_example() if "--env" in sys.argv else settings_table(), end="")
