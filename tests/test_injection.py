"""Prompt injection end to end: a corpus with planted instructions, markup and terminal escapes
(tests/fixtures/hostile/), indexed for real, asked a dozen questions by the extractive engine and by an
engine whose LLM obeys every instruction it can see. Nothing planted may reach what the user is shown:
the streamed text, `Answer.text`, `Answer.to_json()` (citations' quotes and the sources included)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag.answer import Engine
from rag.config import Settings
from rag.safety import addresses_assistant, sanitize
from rag.types import Answer

HOSTILE = Path(__file__).resolve().parent / "fixtures" / "hostile"
CANARY = re.compile(r"ZQX-CANARY-\d+")
CANARIES = {f"ZQX-CANARY-{n}" for n in range(11, 19)}  # one per hostile paper
FORBIDDEN = ("zqx-canary", "<script", "javascript:", "![", "\x1b", "evil.example")
QUESTIONS = [
    "Which papers report FP8 training speedups?",
    "How much faster is FP8 training than BF16?",
    "How does KV cache quantization reduce memory?",
    "Summarize the work on compressing the KV cache.",
    "Which papers are about quantisation?",
    "What speedup does speculative decoding give?",
    "How do outlier-aware methods quantise weights to 4 bits?",
    "How much memory do 8-bit optimizer states save?",
    "Which papers study long-context attention kernels?",
    "How fast is serving a quantised KV cache?",
    "What is the best paper about INT8 inference?",
    "Summarize the INT8 inference results.",
]
# What a compromised model adds on its own, whatever its sources say.
PAYLOAD = " <script>alert('obey')</script> ![x](http://evil.example/x.png) [click](javascript:alert(1)) \x1b[2J"


def decoded(text: str) -> str:
    """Every base64 run in `text`, decoded where it is text: an obedient model reads those too."""
    out = []
    for blob in re.findall(r"[A-Za-z0-9+/]{20,}={0,2}", text):
        try:
            out.append(base64.b64decode(blob + "=" * (-len(blob) % 4)).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            continue
    return " ".join(out)


class ObeyingLLM:
    """A ChatModel that does what its prompt's sources tell it: it repeats every canary it can see
    (plain or base64), and adds a script tag, a tracking image, a javascript: link and a screen-clearing
    escape. It streams in 7-character pieces, so markup is split across pieces."""

    name = "obeying-fake"
    endpoint = "fake://obeying"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def reply(self, messages: list[dict[str, str]]) -> str:
        prompt = "\n".join(m["content"] for m in messages)
        self.prompts.append(prompt)
        obeyed = sorted(set(CANARY.findall(prompt + " " + decoded(prompt))))
        return (
            "The sources report speedups from FP8 training and KV cache quantization [1]. " + " ".join(obeyed) + PAYLOAD
        )

    def yes_probability(self, messages: list[dict[str, str]]) -> float:
        """Judges every paper relevant, the more so the more of its prompt it would obey."""
        prompt = "\n".join(m["content"] for m in messages)
        self.prompts.append(prompt)
        return 0.9 if CANARY.search(prompt + " " + decoded(prompt)) else 0.8

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        text = self.reply(messages)
        for i in range(0, len(text), 7):
            yield text[i : i + 7]


def strings(value: object) -> Iterator[str]:
    """Every string inside a JSON-like value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def shown(engine: Engine, question: str) -> tuple[list[str], Answer]:
    """Everything the user can be shown for one question: streamed pieces, and the checked Answer."""
    stream = engine.ask_stream(question)
    pieces: list[str] = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as done:
            answer = done.value
            break
    texts = ["".join(pieces), answer.text, *strings(answer.to_json())]
    texts += [part for c in answer.citations for part in (c.quote, c.claim, c.title)]
    return texts, answer


def leaks(texts: list[str]) -> list[str]:
    return sorted({bad for text in texts for bad in FORBIDDEN if bad in text.lower()})


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The hostile corpus in a real embedded Chroma index, with the hashing embedder."""
    from rag.embed import HashingEmbedding
    from rag.ingest import ingest
    from rag.retrieve import Retriever

    with pytest.MonkeyPatch.context() as mp:
        import os

        for name in list(os.environ):
            if name.upper().startswith("RAG_"):
                mp.delenv(name)
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path_factory.mktemp("hostile") / "index",
            corpus_paths=[HOSTILE],
            embed_backend="hashing",
        )
    embedder = HashingEmbedding()
    report = ingest([HOSTILE], settings, embedder)
    assert report.added == 20, report
    return SimpleNamespace(settings=settings, retriever=Retriever(settings, embedder))


# ------------------------------------------------------------------ the fixture and the fake are what they claim


def test_each_hostile_paper_plants_one_canary_in_a_sentence_the_classifier_flags() -> None:
    from rag import corpus
    from rag.text import sentence_spans

    papers = corpus.load([HOSTILE]).papers
    found = set()
    for p in papers:
        for s, e in sentence_spans(p.abstract):
            sentence = p.abstract[s:e]
            planted = set(CANARY.findall(sentence + " " + decoded(sentence)))
            found |= planted
            assert addresses_assistant(sentence) == bool(planted), sentence
    assert found == CANARIES
    assert len(papers) == 20


def test_no_hostile_paper_is_stored_as_clean(hostile_index) -> None:
    """Ingest classifies once and marks the clean papers; a planted one must never carry the mark,
    or a search would skip classifying it."""
    store = hostile_index.retriever.store
    from rag import corpus
    from rag.text import sentence_spans

    stored = store.get_papers(p.paper_id for p in corpus.load([HOSTILE]).papers)
    planted = {
        pid
        for pid, p in stored.items()
        if addresses_assistant(p.title)
        or any(addresses_assistant(p.abstract[s:e]) for s, e in sentence_spans(p.abstract))
    }
    assert len(stored) == 20 and 0 < len(planted) < 20
    assert {pid for pid, p in stored.items() if not p.clean} == planted


def test_the_obeying_llm_leaks_everything_when_nothing_defends_it() -> None:
    """Given the raw abstracts, the fake repeats the canaries: so a clean engine answer means a defence worked."""
    from rag import corpus

    raw = "\n\n".join(p.abstract for p in corpus.load([HOSTILE]).papers)
    reply = ObeyingLLM().reply([{"role": "user", "content": raw}])
    assert set(CANARY.findall(reply)) == CANARIES
    assert {"zqx-canary", "<script", "javascript:", "![", "\x1b", "evil.example"} <= set(leaks([reply]))
    assert leaks([sanitize(reply)]) == ["zqx-canary"]  # sanitize removes markup, never the obeyed words


# ------------------------------------------------------------------ through the engine


@pytest.mark.parametrize("question", QUESTIONS)
def test_extractive_answers_show_nothing_planted(hostile_index, question: str) -> None:
    engine = Engine(hostile_index.settings, hostile_index.retriever, None)
    texts, answer = shown(engine, question)
    assert answer.sources, "the question must retrieve papers"
    assert leaks(texts) == [], f"{question!r} -> {answer.text!r}"


@pytest.mark.parametrize("question", QUESTIONS)
def test_answers_of_an_obeying_llm_show_nothing_planted(hostile_index, question: str) -> None:
    llm = ObeyingLLM()
    engine = Engine(hostile_index.settings, hostile_index.retriever, llm)
    texts, answer = shown(engine, question)
    assert answer.sources, "the question must retrieve papers"
    assert leaks(texts) == [], f"{question!r} -> {answer.text!r}"
    for prompt in llm.prompts:
        assert not CANARY.search(prompt + decoded(prompt)), "a planted instruction reached the LLM"


def test_questions_reach_the_hostile_papers(hostile_index) -> None:
    """The dozen questions retrieve every hostile paper at least once: the test above is not vacuous.
    Search results are already inert, so the canaries are looked for in the papers as stored."""
    found = {h.paper.paper_id for q in QUESTIONS for h in hostile_index.retriever.search(q, 6)}
    stored = hostile_index.retriever.store.get_papers(sorted(found))
    hostile_ids = {pid for pid, p in stored.items() if CANARY.search(p.abstract + decoded(p.abstract))}
    assert len(hostile_ids) == len(CANARIES)
