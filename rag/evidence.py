"""The evidence step: every candidate paper is read once against the question, before anything is written.

Each hit gets one `Judgement` (relevant or not, how strongly, the sentences that answer). The refusal,
which papers a list names, what a summary or lookup quotes and what is reported as left out all read
these judgements. Two judges share one interface:

- `OfflineJudge`: corpus statistics. A question's concepts are its rare terms; when some candidate holds
  most of them the question is "anchored" in the corpus's words and a paper must hold most of what the
  best one holds (a paper sharing one common word is not about the question). When none does (a
  paraphrase), closeness to the best paper by score and term coverage decides (`Relevance.relevant`), and
  the top papers' strength adds how close their sentences come to each concept of the question (`strengths`).
- `LLMJudge`: one short yes/no request per paper, read as the probability of "yes" from the first token's
  logprobs (a small model's written verdict says yes to nearly everything; its probabilities still rank).
  For an anchored question the offline judgement decides which papers are relevant and the model's
  probability orders them; otherwise the papers within a small gap of the best probability are relevant.
  A request that fails falls back to the offline judgement for that paper; a model whose probabilities do
  not separate the papers leaves the offline judgement in charge.

A list is written while its papers are read (`in_order`): each judgement comes in retrieval order as soon as it
and every one before it are known, so its line can be shown while a local model, seconds a paper, reads the rest.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from typing import Any

import numpy as np

from rag.embed import Embedder
from rag.errors import EmbedError, LLMError
from rag.extractive import ExtractiveAnswerer
from rag.prompt import judge_messages
from rag.question import Intent
from rag.relevance import Relevance
from rag.text import GENERIC, sentences, terms
from rag.tuned import (
    ANCHORED,
    CONCEPT_WEIGHT,
    KEY_IDF,
    KEY_SHARE,
    LLM_FLOOR,
    LLM_GAP,
    LLM_SPREAD,
    READ_TOP,
    SCORE_SHARE,
    TOPIC_CORPUS,
)
from rag.types import Hit, Judgement

_LONG_WORD = re.compile(r"[a-z]{5,}")  # long enough to hold a key term inside it (`_inside`)

Progress = Callable[[int, int, str], None]  # (papers read, of how many, the title just read)


class OfflineJudge:
    """Judges from the lexical index's statistics and the sentence scoring of the extractive quotes."""

    by = "offline"

    def __init__(self, relevance: Relevance, quoter: ExtractiveAnswerer, embedder: Embedder | None = None) -> None:
        self.relevance = relevance
        self.quoter = quoter
        self.embedder = embedder

    def judge(self, intent: Intent, hits: list[Hit], on_progress: Progress | None = None) -> list[Judgement]:
        if not hits:
            return []
        held = self._shares(intent.searched, hits)
        relevant = self._relevant(intent.searched, hits, held)
        strengths = self.strengths(intent, hits, anchored=max(held) >= ANCHORED)
        spans = [self.quoter.evidence_spans(intent.searched, h, intent.wants, intent.is_summary) for h in hits]
        judged = [Judgement(i in relevant, p, s, self.by) for i, (p, s) in enumerate(zip(strengths, spans), 1)]
        if on_progress:
            on_progress(len(hits), len(hits), "")
        return judged

    def in_order(self, intent: Intent, hits: list[Hit], on_progress: Progress | None = None) -> Iterator[Judgement]:
        return iter(self.judge(intent, hits, on_progress))  # instant: nothing to show early

    def strengths(self, intent: Intent, hits: list[Hit], anchored: bool) -> list[float]:
        """Each paper's share of the strongest: its retrieval score, plus, for the top papers of a question not in
        the corpus's own words, how close their sentences come to every concept of it (`covered`). A paraphrase
        shares few words with its answer, so the fused score often ranks a paper that matches part of it first."""
        scores = [h.score for h in hits]
        if self.embedder is not None and not anchored and (concepts := intent.concepts):
            top = sorted(range(len(hits)), key=lambda i: (-hits[i].score, i))[:READ_TOP]
            try:
                for i, cover in zip(top, self.covered(concepts, [hits[i] for i in top])):
                    scores[i] += CONCEPT_WEIGHT * cover
            except EmbedError:
                pass  # the embeddings endpoint failed after the search: the retrieval scores alone
        best = max(scores) or 1.0
        return [s / best for s in scores]

    def covered(self, concepts: list[str], hits: list[Hit]) -> list[float]:
        """Per paper, the cosine between its least covered concept and the sentence (or title) closest to it."""
        assert self.embedder is not None
        texts = [[h.paper.title, *sentences(h.paper.abstract, h.paper.spans)] for h in hits]
        vectors = np.asarray(self.embedder.get_text_embedding_batch(concepts + [t for paper in texts for t in paper]))
        wanted, start, covers = vectors[: len(concepts)], len(concepts), []
        for paper in texts:
            covers.append(float((wanted @ vectors[start : start + len(paper)].T).max(axis=1).min()))
            start += len(paper)
        return covers

    def anchored(self, query: str, hits: list[Hit]) -> bool:
        """Some paper holds most of the question's rare terms: its words, not only its meaning, say what fits."""
        return max(self._shares(query, hits), default=0.0) >= ANCHORED

    def relevant(self, query: str, hits: list[Hit]) -> set[int]:
        """Positions (1-based) of the papers about the question (see the module docstring)."""
        return self._relevant(query, hits, self._shares(query, hits))

    def _shares(self, query: str, hits: list[Hit]) -> list[float]:
        """Per paper, the share of the question's key terms it holds (`held`)."""
        keys = self.key_terms(query)
        return [self.held(keys, h) for h in hits]

    def _relevant(self, query: str, hits: list[Hit], held: list[float]) -> set[int]:
        best = max(held, default=0.0)
        if best < ANCHORED:
            return set(self.relevance.relevant(query, hits))  # closeness to the best, and above the refusal floor
        top = max(h.score for h in hits) or 1.0
        floor = self.relevance.refuse_below
        return {
            i
            for i, (h, share) in enumerate(zip(hits, held), 1)
            if share >= KEY_SHARE * best and h.score / top >= SCORE_SHARE and self.relevance.score(query, h) >= floor
        }

    def apart(self, query: str) -> str:
        """A two-word topic whose words are each rare and in the corpus but never in one paper together
        ("protein folding" when one paper says protein and another 5 folds): one shared word or stem is never
        the topic. Only a question whose rare terms are just those two adjacent words is read so; a
        paraphrase's scattered words are left to the judgement of each paper."""
        lexicon = self.relevance.lexicon
        if len(lexicon) < TOPIC_CORPUS:
            return ""
        words = re.findall(r"[\w-]+", query)
        stems = [[t for t in terms(w) if t not in GENERIC] for w in words]
        for i in range(1, len(words)):  # "how much faster", "how many layers": a measure, not a topic
            if words[i - 1].lower() == "how":
                stems[i] = []
        rare = [i for i, found in enumerate(stems) if found and max(map(lexicon.idf, found)) >= KEY_IDF]
        if len(rare) != 2 or rare[1] != rare[0] + 1:
            return ""
        pair = sorted({t for i in rare for t in stems[i]})
        return "" if lexicon.together(pair) else f"{words[rare[0]]} {words[rare[1]]}"

    def names_topic(self, query: str) -> bool:
        """The question names a subject of its own (a rare term), so a short follow-up can stand alone."""
        return any(self.relevance.lexicon.idf(t) >= KEY_IDF for t in set(terms(query)) - GENERIC)

    def key_terms(self, query: str) -> list[str]:
        """The question's concepts: its rare content terms (all of them when none is rare)."""
        wanted = sorted(set(terms(query)) - GENERIC)
        rare = [t for t in wanted if self.relevance.lexicon.idf(t) >= KEY_IDF]
        return rare or wanted

    def held(self, keys: list[str], hit: Hit) -> float:
        total = sum(self.relevance.lexicon.idf(t) for t in keys)
        if not total:
            return 0.0
        text = f"{hit.paper.title} {hit.paper.abstract}"
        have = set(terms(text))
        words = set(_LONG_WORD.findall(text.lower()))
        return sum(self.relevance.lexicon.idf(t) for t in keys if t in have or _inside(t, words)) / total


class LLMJudge:
    """Asks a chat model about each paper, concurrently; falls back to `offline` per paper."""

    def __init__(self, chat: Any, offline: OfflineJudge, concurrency: int) -> None:
        self.chat = chat
        self.offline = offline
        self.concurrency = concurrency

    def judge(self, intent: Intent, hits: list[Hit], on_progress: Progress | None = None) -> list[Judgement]:
        offline = self.offline.judge(intent, hits)
        probabilities, errors = self._ask_all(intent, hits, on_progress)
        known = [p for p in probabilities if p is not None]
        if not known or max(known) - min(known) < LLM_SPREAD:  # no verdict that tells the papers apart
            return [replace(o, by=FAILED, error=e) if e else o for o, e in zip(offline, errors)]
        if self.offline.anchored(intent.searched, hits):  # the corpus's own words decide; the model orders
            return [
                replace(o, strength=p, by="llm") if p is not None else _unjudged(o, e)
                for o, p, e in zip(offline, probabilities, errors)
            ]
        best = max(known)
        floor = self.offline.relevance.refuse_below
        above = [self.offline.relevance.score(intent.searched, h) >= floor for h in hits]
        return [
            _combined(o, p, best, a) if p is not None else _unjudged(o, e)
            for o, p, e, a in zip(offline, probabilities, errors, above)
        ]

    def in_order(self, intent: Intent, hits: list[Hit], on_progress: Progress | None = None) -> Iterator[Judgement]:
        """Each paper's judgement in retrieval order, as soon as it and every paper before it have a verdict.

        The cut cannot wait for the best probability of all: a paper is relevant within LLM_GAP of the best so
        far, and until the verdicts so far differ by LLM_SPREAD (a model that says yes to everything never gets
        there) the offline judgement must agree too. For a question in the corpus's own words the offline
        judgement decides and a list keeps retrieval order, so the model, which would only order, is not asked.
        """
        offline = self.offline.judge(intent, hits)
        if self.offline.anchored(intent.searched, hits):
            yield from offline
            return
        floor = self.offline.relevance.refuse_below
        best, lowest = 0.0, 1.0
        for i, p, error in self._verdicts(intent, hits, on_progress):
            if p is None:
                yield _unjudged(offline[i], error)
                continue
            best, lowest = max(best, p), min(lowest, p)
            above = self.offline.relevance.score(intent.searched, hits[i]) >= floor
            judged = _combined(offline[i], p, best, above)
            yield (
                judged
                if best - lowest >= LLM_SPREAD
                else replace(judged, relevant=judged.relevant and offline[i].relevant)
            )

    def _ask_all(
        self, intent: Intent, hits: list[Hit], on_progress: Progress | None
    ) -> tuple[list[float | None], list[str]]:
        """Each paper's probability of "yes" (None: no verdict) and why its request failed ("": it did not)."""
        verdicts = list(self._verdicts(intent, hits, on_progress))
        return [p for _, p, _ in verdicts], [e for _, _, e in verdicts]

    def _verdicts(
        self, intent: Intent, hits: list[Hit], on_progress: Progress | None
    ) -> Iterator[tuple[int, float | None, str]]:
        """(position, probability of "yes" or None, why its request failed or ""), in the hits' order whatever
        order the requests finish in, each as soon as the papers before it are done. After a failure (the client
        has already retried) no more requests are sent: an endpoint that is down costs one timeout, not one a
        paper; a paper not sent carries the failure's reason."""
        probabilities: dict[int, float | None] = {}
        errors: dict[int, str] = {}
        failed = threading.Event()
        shown = 0
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            futures = {pool.submit(self._ask, intent.query, h, failed): i for i, h in enumerate(hits)}
            for done, future in enumerate(as_completed(futures), 1):
                i = futures[future]
                try:
                    probabilities[i], errors[i] = future.result(), ""
                except LLMError as e:
                    probabilities[i], errors[i] = None, str(e)
                except _NotAsked:
                    probabilities[i], errors[i] = None, NOT_ASKED
                if on_progress:
                    on_progress(done, len(hits), hits[i].paper.display_title)
                while shown in probabilities:  # a paper not asked comes after the failure that stopped it
                    reason = errors[shown]
                    if reason == NOT_ASKED:
                        reason = next((e for e in errors.values() if e and e != NOT_ASKED), "")
                    yield shown, probabilities[shown], reason
                    shown += 1

    def _ask(self, question: str, hit: Hit, failed: threading.Event) -> float | None:
        if failed.is_set():
            raise _NotAsked
        try:
            p = self.chat.yes_probability(judge_messages(question, hit))
        except LLMError:
            failed.set()
            raise
        return p if p is None or 0.0 <= p <= 1.0 else None


class _NotAsked(Exception):
    """A paper not put to the LLM because an earlier request failed."""


FAILED = "offline (llm failed)"
NOT_ASKED = "not asked"


def _unjudged(offline: Judgement, error: str) -> Judgement:
    """A paper the model gave no verdict on: the offline judgement, marked when its request failed."""
    return replace(offline, by=FAILED, error=error) if error else offline


def _combined(offline: Judgement, p: float, best: float, above_floor: bool) -> Judgement:
    """The LLM's verdict on one paper with the offline judgement's sentences."""
    relevant = p >= LLM_FLOOR and p >= best - LLM_GAP and above_floor and bool(offline.spans)
    return Judgement(relevant, p, offline.spans, "llm")


def unreachable(hits: list[Hit]) -> str:
    """Why the LLM could not judge any paper (every request failed), or "" when it judged some."""
    errors = [h.judgement.error if h.judgement else "" for h in hits]
    return errors[0] if errors and all(errors) else ""


def read_in_order(
    judge: OfflineJudge | LLMJudge, intent: Intent, hits: list[Hit], on_progress: Progress | None = None
) -> Iterator[Hit]:
    """The hits with their judgements, in retrieval order, each as soon as it is known (see `LLMJudge.in_order`)."""
    return (replace(h, judgement=j) for h, j in zip(hits, judge.in_order(intent, hits, on_progress)))


def read(
    judge: OfflineJudge | LLMJudge, intent: Intent, hits: list[Hit], on_progress: Progress | None = None
) -> list[Hit]:
    """The hits with their judgements: relevant papers first, strongest first, then the others in retrieval
    order (ties by retrieval order), so an answer's [n] count its cited papers without gaps."""
    judged = [replace(h, judgement=j) for h, j in zip(hits, judge.judge(intent, hits, on_progress))]

    def place(i: int) -> tuple[bool, float, int]:
        j = judged[i].judgement
        return (not j.relevant, -j.strength if j.relevant else 0.0, i) if j else (True, 0.0, i)

    return [judged[i] for i in sorted(range(len(judged)), key=place)]


def _inside(term: str, words: set[str]) -> bool:
    """A stem held inside a longer word: the tail of a compound (load in workload) or after a negating
    prefix (balanc in imbalances, which the stemmer cuts to imbal)."""
    return len(term) >= 4 and any(
        w != term and (w.endswith(term) or any(w.startswith(p + term) for p in ("im", "un", "in", "dis", "non")))
        for w in words
    )
