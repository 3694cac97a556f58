"""The query engine: question -> retrieval -> (LLM or extractive) answer -> checked citations.

The CLI and the UI both drive `Engine.ask_stream`; nothing else builds prompts or answers.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from rag import cite
from rag.config import PROJECT_ROOT, Settings
from rag.llm import ChatModel
from rag.query import Intent, analyse, needs_history
from rag.retrieve import Retriever
from rag.types import Filters
from rag.text import sentence_spans, terms
from rag.types import Answer, Hit

REFUSAL = "The corpus does not answer this."
PROMPTS = PROJECT_ROOT / "prompts"
EXTRACTIVE_NOTICE = (
    "Extractive answer: sentences quoted from the abstracts, no LLM. "
    "For written answers set RAG_LLM_BASE_URL (any OpenAI-compatible server) or RAG_LLM_BACKEND=openai."
)
_GENERIC = set(terms(
    "paper papers work works study studies propose proposed report reports method methods approach which what "
    "corpus author authors wrote written listed year published"
))
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget) (all |any |the )?(previous|prior|above|earlier) (instructions|prompts?|rules)"
    r"|\b(reply|respond|answer) only with\b|\byou are now\b|\bsystem prompt\b",
    re.I,
)
_NUMBER = re.compile(r"(?<![A-Za-z\d-])\d+(?:[.,]\d+)*\s*(?:%|x|×|times)?(?![A-Za-z\d])")
# The prompt asks for REFUSAL word for word; small models paraphrase it ("The sources do not answer ...").
_LLM_REFUSAL = re.compile(
    r"\W*(the )?(corpus|sources?|abstracts?|provided (texts?|sources?|abstracts?)) (does|do) not (answer|say|contain|mention|address)",
    re.I,
)
LIST_KEEP = 0.7  # a "which papers" answer lists every paper at least this relevant relative to the best
# Model names, acronyms, versioned terms: a letter first, then a digit or a second capital somewhere.
_NAME = re.compile(r"(?<![\w.-])(?=[\w.-]*(?:\d|[A-Z][\w.-]*[A-Z]|-[A-Z]))[A-Za-z][\w.]*(?:-[\w.]+)*\b")


def _variants(name: str) -> list[list[str]]:
    """Forms of a name, each a list of words that must all occur: GPT-2-like -> GPT-2, MLPs -> MLP,
    UAV-assisted -> UAV + assisted. A version (Mamba-3) is never split off: Mamba is not Mamba-3."""
    base = re.sub(r"-(like|based|style|sized|scale)$", "", name, flags=re.I)
    forms = [[name], [base]] + ([[base[:-1]]] if base.endswith("s") else [])
    parts = base.split("-")
    if len(parts) > 1 and all(p.isalpha() and len(p) > 2 for p in parts):
        forms.append(parts)
    return forms


def load_prompt(name: str) -> str:
    return (PROMPTS / f"{name}.txt").read_text()


class Streamed:
    """Iterate for the answer's text pieces; `.answer` holds the checked Answer once they are done."""

    def __init__(self, stream: Iterator[str]) -> None:
        self._stream = stream
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        self.answer = yield from self._stream


@dataclass
class Turn:
    question: str
    answer: str


@dataclass
class Conversation:
    """History kept by the caller (CLI session, UI) for follow-up questions."""

    turns: list[Turn] = field(default_factory=list)


class Engine:
    def __init__(self, settings: Settings, retriever: Retriever, llm: ChatModel | None) -> None:
        self.settings = settings
        self.retriever = retriever
        self.llm = llm

    @property
    def mode(self) -> str:
        return "llm" if self.llm else "extractive"

    @property
    def model(self) -> str:
        return self.llm.name if self.llm else "extractive (no LLM)"

    def ask(self, question: str, filters: Filters = Filters(), k: int | None = None, history: Conversation | None = None) -> Answer:
        streamed = Streamed(self.ask_stream(question, filters, k, history))
        for _ in streamed:
            pass
        assert streamed.answer is not None
        return streamed.answer

    def ask_stream(
        self, question: str, filters: Filters = Filters(), k: int | None = None, history: Conversation | None = None
    ) -> Iterator[str]:
        """Yield answer text as it is produced; the checked `Answer` is the generator's return value."""
        t0 = time.perf_counter()
        standalone = self.condense(question, history)
        intent = analyse(standalone, filters)
        n = k or (self.settings.list_k if intent.is_list else self.settings.answer_k)
        hits = self.retriever.search(intent.query, n, intent.filters)
        answer = Answer(question=question, standalone_question=standalone, text="", mode=self.mode, model=self.model, sources=hits)
        answer.timings["retrieve"] = time.perf_counter() - t0
        if not self.answerable(intent, hits):
            answer.text = refusal_text(hits, intent.filters)
            answer.refused = True
            answer.sources = hits[:3]
            yield answer.text
        else:
            hits = answer.sources = self.fit(intent, hits)
            pieces = []
            for piece in self._generate(intent, hits):
                if not pieces:
                    answer.timings["first_token"] = time.perf_counter() - t0
                pieces.append(piece)
                yield piece
            self._finish(answer, "".join(pieces), intent)
        answer.timings["total"] = time.perf_counter() - t0
        if not self.llm:
            answer.notice = EXTRACTIVE_NOTICE
        return answer

    # ------------------------------------------------------------ steps

    def condense(self, question: str, history: Conversation | None) -> str:
        """A follow-up question rewritten to stand alone, so retrieval sees its topic."""
        if not history or not history.turns or not needs_history(question):
            return question
        if not self.llm:
            return f"{history.turns[-1].question} {question}"
        lines = "\n".join(f"User: {t.question}\nAssistant: {t.answer[:500]}" for t in history.turns[-3:])
        prompt = load_prompt("condense").format(history=lines, question=question)
        text = "".join(self.llm.stream([{"role": "user", "content": prompt}])).strip()
        return text.splitlines()[0].strip() if text else question

    def answerable(self, intent: Intent, hits: list[Hit]) -> bool:
        """Refuse when no paper is close enough, or the question names something no paper mentions."""
        if not hits:
            return False
        if metadata_only(intent):
            return True  # "papers from 2019": the filter is the answer
        if self.unknown_names(intent.query):
            return False
        return self.relevance(intent.query, hits[:3]) >= self.settings.refuse_below

    def unknown_names(self, query: str) -> list[str]:
        """Model names, acronyms and versioned terms (FP4, Mamba-3, KTO) that appear in no paper."""
        return [w for w in _NAME.findall(query) if not any(all(map(self._mentions, form)) for form in _variants(w))]

    def _mentions(self, word: str) -> bool:
        """As a word, or (4+ characters) inside one: MIMO is known from mMIMO."""
        inside = r"\w*" if len(word) >= 4 else ""
        return bool(re.search(rf"(?<![\w-]){inside}{re.escape(word.lower())}{inside}(?![\w-])", self._corpus_text))

    def relevance(self, query: str, hits: list[Hit]) -> float:
        """0-1: mean of the best chunk cosine and the best IDF-weighted share of query terms a paper contains."""
        wanted = set(terms(query)) - _GENERIC
        total = sum(self._idf(t) for t in wanted) or 1.0
        coverage = max(sum(self._idf(t) for t in wanted if t in self._paper_terms[h.paper.paper_id]) / total for h in hits)
        dense = max((h.dense or 0.0) for h in hits)
        return (dense + coverage) / 2

    def fit(self, intent: Intent, hits: list[Hit]) -> list[Hit]:
        """Drop the lowest-ranked sources until the prompt and the answer fit the LLM's context.

        Token counts use cl100k (shipped offline with llama-index) plus a 20% margin, since the
        served model's own tokenizer is unknown here.
        """
        if not self.llm:
            return hits
        from llama_index.core.utils import get_tokenizer

        count = get_tokenizer()
        budget = self.settings.llm_context - self.settings.llm_max_tokens
        while len(hits) > 1:
            size = sum(len(count(m["content"])) for m in build_messages(intent.query, hits, intent.is_list))
            if size * 1.2 <= budget:
                break
            hits = hits[:-1]
        return hits

    def _generate(self, intent: Intent, hits: list[Hit]) -> Iterator[str]:
        if self.llm:
            yield from self.llm.stream(build_messages(intent.query, hits, intent.is_list))
        else:
            yield extractive_answer(intent, hits, self)

    def _finish(self, answer: Answer, raw: str, intent: Intent) -> None:
        t = time.perf_counter()
        if _LLM_REFUSAL.match(raw):
            answer.text = refusal_text(answer.sources, intent.filters)
            answer.refused = True
            answer.sources = answer.sources[:3]
            return
        answer.text, answer.citations, answer.removed = cite.check(raw, answer.sources)
        answer.unsupported = not any(c.supported for c in answer.citations)
        if intent.is_list:
            cited = {c.paper_id for c in answer.citations}
            relevant = [answer.sources[i - 1].paper.paper_id for i in self.relevant(intent.query, answer.sources)]
            answer.uncited = [pid for pid in relevant if pid not in cited]
        answer.timings["check"] = time.perf_counter() - t

    # ------------------------------------------------------------ corpus statistics, built once

    @cached_property
    def _paper_terms(self) -> dict[str, set[str]]:
        return {pid: set(terms(f"{p.title} {p.abstract}")) for pid, p in self.retriever.papers.items()}

    @cached_property
    def _df(self) -> Counter:
        return Counter(t for ts in self._paper_terms.values() for t in ts)

    @cached_property
    def _corpus_text(self) -> str:
        return "\n".join(f"{p.title} {p.abstract}".lower() for p in self.retriever.papers.values())

    def _idf(self, term: str) -> float:
        n = len(self._paper_terms)
        return math.log((n + 1) / (self._df.get(term, 0) + 0.5))

    def relevant(self, query: str, hits: list[Hit]) -> list[int]:
        """Positions (1-based) of the hits a list answer should name: all close to the best one."""
        scores = [self.relevance(query, [h]) for h in hits]
        floor = max(self.settings.refuse_below, LIST_KEEP * max(scores, default=0.0))
        return [i for i, s in enumerate(scores, 1) if s >= floor]

    def named(self, query: str, hits: list[Hit]) -> int:
        """Position (1-based) of the paper a metadata question is about: among the top three, the one
        that contains the question's names exactly as written (PaLM, not palm trees), else the first."""
        names = _NAME.findall(query)
        if not names:
            return 1
        found = [sum(bool(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", f"{h.paper.title} {h.paper.abstract}")) for n in names) for h in hits[:3]]
        return found.index(max(found)) + 1

    def evidence(self, query: str, hit: Hit, numeric: bool = False) -> str:
        """The abstract sentence that best answers `query`.

        Scored by the IDF-weighted share of query terms found in the sentence or the title (the
        title says what the paper is about, the sentence what it found); for a "how much"
        question a sentence with a number wins ties.
        """
        wanted = set(terms(query)) - _GENERIC
        title = set(terms(hit.paper.title))
        abstract = hit.paper.abstract
        best = (-1.0, "")
        for start, end in sentence_spans(abstract):
            sentence = abstract[start:end]
            if _INSTRUCTION.search(sentence):
                continue  # abstracts are data: a planted instruction is never quoted as an answer
            got = set(terms(sentence)) | title
            score = sum(self._idf(t) for t in wanted if t in got) + 0.1 * sum(1 for t in wanted if t in got)
            if numeric and _NUMBER.search(sentence):
                score *= 1.2
            if score > best[0]:
                best = (score, sentence)
        return best[1]


# ------------------------------------------------------------ prompts and the extractive answerer


def format_sources(hits: list[Hit]) -> str:
    """Number the sources [1]..[k] inside tags that mark them as quoted data, not instructions."""
    blocks = []
    for i, hit in enumerate(hits, 1):
        p = hit.paper
        meta = "; ".join(x for x in (p.date_raw, f"{p.authors} authors" if p.authors else "", p.organisation) if x)
        title, body = _inert(p.display_title).replace('"', "'"), _inert(withhold_instructions(p.abstract))
        blocks.append(f'<source id="{i}" title="{title}" meta="{_inert(meta)}">\n{body}\n</source>')
    return "\n\n".join(blocks)


WITHHELD = "[a sentence that reads as an instruction to an AI was withheld]"


def withhold_instructions(abstract: str) -> str:
    """Replace sentences that address an AI ("ignore previous instructions ...") before the LLM reads them.

    The system prompt already says sources are data; this makes sure the known attack phrasings
    never reach the model at all. The abstract as stored and shown to the user is unchanged.
    """
    spans = [(s, e) for s, e in sentence_spans(abstract) if _INSTRUCTION.search(abstract[s:e])]
    for s, e in reversed(spans):
        abstract = abstract[:s] + WITHHELD + abstract[e:]
    return abstract


def _inert(text: str) -> str:
    """Angle brackets become look-alikes, so text from a paper can never open or close a tag."""
    return text.replace("<", "‹").replace(">", "›")


def metadata_only(intent: Intent) -> bool:
    """A question that is all filter and no topic, such as "which papers are from 2019?"."""
    return intent.filters.active() and not set(terms(intent.query)) - _GENERIC


def build_messages(question: str, hits: list[Hit], is_list: bool) -> list[dict[str, str]]:
    instructions = load_prompt("list_instructions" if is_list else "answer_instructions")
    user = load_prompt("answer").format(sources=format_sources(hits), question=question, instructions=instructions)
    return [{"role": "system", "content": load_prompt("system")}, {"role": "user", "content": user}]


def extractive_answer(intent: Intent, hits: list[Hit], engine: Engine) -> str:
    """Quote the best evidence sentence of each relevant paper, cited; one line per paper for lists.

    Questions about authors or dates are answered from the metadata of the best paper.
    """
    if intent.asks:
        n = engine.named(intent.query, hits)
        p = hits[n - 1].paper
        if intent.asks == "authors":
            return f"{p.display_title} lists {p.authors} authors [{n}]." if p.authors else f"The corpus does not record the authors of {p.display_title} [{n}]."
        return f"{p.display_title} is dated {p.date_raw} [{n}]." if p.date_raw else f"The corpus does not record the date of {p.display_title} [{n}]."
    if metadata_only(intent):
        keep = list(range(1, len(hits) + 1))
    else:
        keep = engine.relevant(intent.query, hits) if intent.is_list else [1]
    lines = [(i, engine.evidence(intent.query, hits[i - 1], intent.is_numeric)) for i in keep]
    if intent.is_list:
        return "\n".join(f"- {hits[i - 1].paper.display_title}: {sentence} [{i}]" for i, sentence in lines)
    return " ".join(f"{hits[i - 1].paper.display_title}: {sentence} [{i}]" for i, sentence in lines)


def refusal_text(hits: list[Hit], filters: Filters) -> str:
    if not hits:
        why = " No paper matches the filters." if filters.active() else ""
        return f"{REFUSAL}{why}"
    closest = "; ".join(h.paper.display_title for h in hits[:3])
    return f"{REFUSAL} Closest papers: {closest}."


def make_engine(settings: Settings, retriever: Retriever) -> Engine:
    from rag.llm import make_chat_model

    return Engine(settings, retriever, make_chat_model(settings))

