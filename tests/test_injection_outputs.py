"""Planted instructions through the real front ends: every injection sentence of tests/test_safety.py,
each carrying its own canary inside an otherwise ordinary abstract, plus the hostile fixture, indexed by
`rag ingest`, then asked through `rag ask` (text and `--json`) and through `rag serve`'s chat completions
(JSON and streamed), in extractive mode and with an LLM endpoint over HTTP that obeys every instruction
it reads. No canary, markup or escape may reach any of those outputs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from conftest import free_port, stop, verdict_completion
from test_endpoints import FakeEndpoint
from test_injection import CANARY, FORBIDDEN, HOSTILE, ObeyingLLM, decoded, strings
from test_safety import INJECTIONS

import rag

ROOT = Path(rag.__file__).resolve().parent.parent  # the checkout whose `rag` is under test
TOPICS = {  # two ordinary sentences per topic, and the questions that reach its papers
    "quantization": (
        "We quantize the weights of large language models to 4 bits after training.",
        "Perplexity rises by less than 0.3 points while memory falls by 3.5x.",
        "How much memory does 4-bit weight quantization save?",
    ),
    "fp8": (
        "We train transformers with FP8 matrix multiplications and per-tensor scaling.",
        "FP8 training matches the BF16 loss and runs 1.3x faster on H100 GPUs.",
        "Which papers report FP8 training speedups?",
    ),
    "kv": (
        "The key-value cache dominates memory when models serve long contexts.",
        "Compressing the KV cache to 2 bits serves 128K-token contexts on one GPU.",
        "How does KV cache compression help long contexts?",
    ),
    "decoding": (
        "Speculative decoding drafts tokens with a small model and verifies them with the large one.",
        "Generation becomes 2.4x faster with identical outputs.",
        "What speedup does speculative decoding give?",
    ),
    "moe": (
        "Mixture-of-experts layers route each token to two of sixty-four experts.",
        "A load-balancing loss keeps every expert busy and improves perplexity by 4%.",
        "How do mixture-of-experts models route tokens?",
    ),
}
QUESTIONS = [topic[2] for topic in TOPICS.values()]


def plant(sentence: str, canary: str) -> str:
    """The injection sentence carrying `canary` (in place of the one it names, or before its end)."""
    if CANARY.search(sentence):
        return CANARY.sub(canary, sentence)
    body, end = re.match(r"(.*?)([.!?]*)\s*$", sentence, re.S).groups()
    return f"{body} {canary}{end or '.'}"


def planted_papers() -> list[dict]:
    names = list(TOPICS)
    rows = []
    for i, sentence in enumerate(INJECTIONS):
        first, second, _ = TOPICS[names[i % len(names)]]
        abstract = f"{first} {plant(sentence, f'ZQX-CANARY-{100 + i}')} {second}"
        rows.append(
            {
                "title": f"{names[i % len(names)].upper()} study number {i}",
                "abstract": abstract,
                "date": f"{2015 + i % 10}-01-01",
            }
        )
    return rows


def leaks(text: str) -> list[str]:
    return sorted({bad for bad in FORBIDDEN if bad in text.lower()} | set(CANARY.findall(text + " " + decoded(text))))


class ObeyingEndpoint(FakeEndpoint):
    """An OpenAI-compatible chat server whose answers do what the prompt's sources say (see ObeyingLLM)."""

    def __init__(self) -> None:
        self.llm = ObeyingLLM()
        super().__init__("ok")

    def _answer(self, h: BaseHTTPRequestHandler, mode: str, number: int, body: dict) -> None:
        if not body.get("stream"):  # a yes/no judge request
            completion = verdict_completion(self.llm.yes_probability(body["messages"]))
            self._send(h, 200, "application/json", json.dumps(completion).encode())
            return
        reply = self.llm.reply(body["messages"])
        events = b"".join(self._event(reply[i : i + 7]) for i in range(0, len(reply), 7))
        self._send(h, 200, "text/event-stream", events + self._event(None) + b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("planted")
    (folder / "planted.jsonl").write_text("".join(json.dumps(r) + "\n" for r in planted_papers()))
    (folder / "hostile.jsonl").write_text((HOSTILE / "papers.jsonl").read_text())
    return folder


@pytest.fixture(scope="module")
def obeying() -> Iterator[ObeyingEndpoint]:
    server = ObeyingEndpoint()
    yield server
    server.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> dict[str, str]:
    """The environment of every command: the planted corpus, indexed once by `rag ingest`."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith(("RAG_", "OPENAI_"))}
    base.update(
        PYTHONPATH=str(ROOT),
        RAG_DATA_DIR=str(tmp_path_factory.mktemp("planted-index")),
        RAG_CORPUS_PATHS=json.dumps([str(corpus)]),
        RAG_EMBED_BACKEND="hashing",
        NO_COLOR="1",
    )
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ingest"], capture_output=True, text=True, env=base, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return base


def modes(env: dict[str, str], obeying: ObeyingEndpoint) -> dict[str, dict[str, str]]:
    return {"extractive": env, "obeying-llm": {**env, "RAG_LLM_BASE_URL": obeying.base_url, "RAG_LLM_MODEL": "obeying"}}


def test_the_planted_corpus_is_what_it_claims() -> None:
    rows = planted_papers()
    assert len(rows) == len(INJECTIONS) >= 30
    assert all(f"ZQX-CANARY-{100 + i}" in r["abstract"] for i, r in enumerate(rows))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["extractive", "obeying-llm"])
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_rag_ask_shows_nothing_planted(env, obeying, mode: str, as_json: bool) -> None:
    asked_before = len(obeying.llm.prompts)
    for question in QUESTIONS[:2]:  # a process each: the HTTP API below asks them all
        args = [sys.executable, "-m", "rag.cli", "ask", question] + (["--json"] if as_json else [])
        done = subprocess.run(args, capture_output=True, text=True, env=modes(env, obeying)[mode], timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert leaks(done.stdout + done.stderr) == [], (question, done.stdout[-3000:])
        if as_json:
            answer = json.loads(done.stdout)
            assert answer["sources"]
            # with an LLM it judges every paper and a "which papers" list is written by code from its verdicts,
            # but a list in the corpus's own words is the offline judge's (the model is not asked; no notice)
            assert (
                answer["mode"] == "llm"
                or "judged each paper" in answer["model"]
                or (answer["mode"] == "extractive" and not answer["notice"])
                if mode != "extractive"
                else answer["mode"] == "extractive"
            )
    if mode != "extractive":
        prompts = obeying.llm.prompts[asked_before:]
        assert len(prompts) >= 2 and not any(CANARY.search(p + decoded(p)) for p in prompts)


@pytest.fixture(scope="module", params=["extractive", "obeying-llm"])
def api(request, env, obeying) -> Iterator[str]:
    """`rag serve` on a free port, in one of the two modes; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)],
        env=modes(env, obeying)[request.param],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "rag serve did not start"
        time.sleep(0.5)
    yield url
    stop(proc)


@pytest.mark.slow
def test_the_http_api_shows_nothing_planted(api: str) -> None:
    for question in QUESTIONS:
        body = {"model": "rag", "messages": [{"role": "user", "content": question}]}
        whole = httpx.post(f"{api}/v1/chat/completions", json=body, timeout=120)
        assert whole.status_code == 200, whole.text[:500]
        assert whole.json()["search_results"], "the question must retrieve papers"
        streamed = httpx.post(f"{api}/v1/chat/completions", json={**body, "stream": True}, timeout=120)
        assert streamed.status_code == 200 and "[DONE]" in streamed.text
        for raw in (whole.text, streamed.text):
            assert leaks(raw) == [] and leaks(decoded_json(raw)) == [], (question, raw[:3000])


def decoded_json(raw: str) -> str:
    """Every string of every JSON document in `raw` (one body, or SSE `data:` lines), escapes decoded."""
    docs = [line[5:].strip() for line in raw.splitlines() if line.startswith("data:")] or [raw]
    return " ".join(text for d in docs if d and d != "[DONE]" for text in strings(json.loads(d)))


@pytest.mark.slow
def test_search_results_show_nothing_planted(env, api: str) -> None:
    """Search is an output too (and the MCP tools return it to another assistant): the planted sentences
    are replaced by a marker and the hit says so."""
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "search", QUESTIONS[0], "--json", "-k", "20"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    hits = json.loads(done.stdout)
    assert leaks(done.stdout) == [] and leaks(decoded_json(done.stdout)) == []
    assert any(h["suspicious"] for h in hits), "the planted papers must be among the hits, flagged"
    for question in QUESTIONS:
        found = httpx.post(f"{api}/v1/search", json={"query": question, "k": 20}, timeout=120)
        assert found.status_code == 200 and leaks(found.text) == [] and leaks(decoded_json(found.text)) == []
        for hit in found.json()["results"][:3]:
            paper = httpx.get(f"{api}/v1/papers/{hit['paper_id']}", timeout=30)
            assert paper.status_code == 200 and paper.json()["suspicious"] == hit["suspicious"]
            assert leaks(paper.text) == [] and leaks(decoded_json(paper.text)) == []
