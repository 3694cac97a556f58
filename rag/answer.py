"""The query engine: question -> retrieval -> refuse or answer -> checked citations -> inert text.

The CLI, the UI and the HTTP API all drive `Engine.ask_stream`; nothing else builds answers.
The answerer is the extractive one (no LLM) or an LLM behind the same `fit`/`stream` interface.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Iterator
from dataclasses import replace

from rag import cite, evidence, metadata
from rag.config import Settings
from rag.errors import LLMError, QuestionError
from rag.evidence import LLMJudge, OfflineJudge, Progress
from rag.extractive import ExtractiveAnswerer, grouped, missing_note
from rag.followup import FollowUps
from rag.llm import ChatModel
from rag.prompt import LLMAnswerer
from rag.question import Intent, check_request, read_question
from rag.question_dates import Period
from rag.question_meta import MetaQuery
from rag.relevance import Relevance
from rag.retrieve import Retriever
from rag.safety import inert, repeats_withheld, sanitize, sanitize_stream
from rag.tuned import TOPIC_CORPUS
from rag.types import Answer, Citation, Conversation, Filters, Hit

REFUSAL = "The corpus does not answer this."
METADATA_MODEL = "metadata (computed)"
METADATA_NOTICE = (
    "Computed from the papers' metadata (dates, author counts, organisations), not quoted from their text."
)
LLM_DOWN_NOTICE = "The LLM could not be used ({why}), so this answer quotes the abstracts instead (extractive)."
BY_CODE = "{model} judged each paper; the answer quotes each relevant one"
BY_MEANING = (
    "No paper holds most of the question's rarer words, so these papers were chosen by closeness in meaning alone:"
    " some may be off-topic."
)
DECLINED_NOTICE = "The model said its sources do not answer this, though they passed the relevance check: shown instead are the sentences that match the question best."
# The code refuses before the model writes, and the prompt says its sources were checked; a model may still decline,
# in words of its own ("The sources do not answer ...").
_LLM_REFUSAL = re.compile(
    r"\W*(the )?(corpus|sources?|abstracts?|provided (texts?|sources?|abstracts?)) (does|do) not (answer|say|contain|mention|address)",
    re.I,
)


class Streamed:
    """Iterate for the answer's text pieces; `.answer` holds the checked Answer once they are done."""

    def __init__(self, stream: Generator[str, None, Answer]) -> None:
        self._stream = stream
        self.answer: Answer | None = None

    def __iter__(self) -> Generator[str, None, None]:
        self.answer = yield from self._stream


class Engine:
    def __init__(self, settings: Settings, retriever: Retriever, llm: ChatModel | None) -> None:
        self.settings = settings
        self.retriever = retriever
        self.llm = llm
        self.relevance = Relevance(retriever.lexicon, settings.refuse_below)
        self.quoter = ExtractiveAnswerer(retriever.lexicon, self.relevance)
        n = settings.llm_source_sentences
        excerpt = (lambda question, hit: self.quoter.excerpt(question, hit, n)) if n else None
        self.answerer = LLMAnswerer(llm, settings.llm_context, settings.llm_max_tokens, excerpt) if llm else self.quoter
        self.offline = OfflineJudge(self.relevance, self.quoter, retriever.embedder)
        self.judge = LLMJudge(llm, self.offline, settings.llm_concurrency) if llm else self.offline
        self.followups = FollowUps(retriever, self.offline)

    def current(self) -> Engine:
        """This engine, or when another ingest changed the index since, one over the index as it is now
        (same embedder and LLM): a long-running server answers from what the shared index holds."""
        if not self.retriever.stale():
            return self
        return Engine(self.settings, self.retriever.reopened(), self.llm)

    @property
    def mode(self) -> str:
        return self.answerer.mode

    @property
    def model(self) -> str:
        return self.answerer.name

    def ask(
        self,
        question: str,
        filters: Filters = Filters(),
        k: int | None = None,
        history: Conversation | None = None,
        on_progress: Progress | None = None,
    ) -> Answer:
        streamed = Streamed(self.ask_stream(question, filters, k, history, on_progress))
        for _ in streamed:
            pass
        assert streamed.answer is not None
        return streamed.answer

    def ask_stream(
        self,
        question: str,
        filters: Filters = Filters(),
        k: int | None = None,
        history: Conversation | None = None,
        on_progress: Progress | None = None,
    ) -> Generator[str, None, Answer]:
        """Yield answer text as it is produced (inert: no HTML, links or control characters);
        the checked `Answer` is the generator's return value. `on_progress` hears of each paper read."""
        t0 = time.perf_counter()
        self.validate(question, filters, k)
        asked = read_question(question, filters)
        back, previous = self.back_reference(asked, history)
        if back:
            answer = self.follow_up(asked, previous, history)
            answer.timings["total"] = time.perf_counter() - t0
            yield from answer.text.splitlines(keepends=True)
            return answer
        standalone = self.condense(asked, history)
        intent = asked if standalone == question else read_question(standalone, filters)
        if intent.meta is not None:
            answer = self.metadata_answer(question, standalone, intent.meta, filters)
            answer.timings["total"] = time.perf_counter() - t0
            yield answer.text
            return answer
        listed = intent.is_list or intent.is_summary  # a summary covers every relevant paper, as a list does
        unknown = self.relevance.unknown_names(intent.query)  # the question's own words decide, not the terms
        intent, hits, on_topic, any_year = self.retrieve(
            intent, k or (self.settings.list_k if listed else self.settings.answer_k), unknown
        )
        answer = Answer(
            question=question,
            standalone_question=standalone,
            field_terms=intent.field_terms,
            text="",
            mode=self.mode,
            model=self.model,
            sources=hits,
        )
        answer.timings["retrieve"] = time.perf_counter() - t0  # with the field's terms, when an LLM named them
        reason = self.refusal(intent, hits, on_topic, unknown)
        if reason is not None:
            self._refuse(answer, intent, reason)
            yield answer.text
        elif self.as_judged(intent):
            yield from self._list_as_judged(answer, intent, hits, on_progress, t0)
        else:
            yield from self._judged_then_written(answer, intent, hits, on_progress, t0)
        how_to = (
            self.quoter.notice if self.answerer is self.quoter and not answer.refused else ""
        )  # last: the same every time
        notes = (answer.notice, self.by_meaning(intent, answer), self.unknown_year_note(intent, any_year), how_to)
        answer.notice = " ".join(x for x in notes if x)
        answer.suspicious = [h.paper.paper_id for h in answer.sources if h.withheld]
        answer.timings["total"] = time.perf_counter() - t0
        return answer

    # ------------------------------------------------------------ steps

    def validate(self, question: str, filters: Filters, k: int | None) -> None:
        """Mistakes in the question or its options, named before any work is done."""
        check_request(question, filters, k, self.settings.max_question_chars)
        if not self.answerer.fits(question):
            raise QuestionError(
                f"the question does not fit the model's context (RAG_LLM_CONTEXT={self.settings.llm_context}); shorten it"
            )

    def back_reference(self, asked: Intent, history: Conversation | None) -> tuple[str | None, list[Hit]]:
        """Whether the question points back at the previous answer's papers ("those", "it"), and those papers."""
        return self.followups.refers_back(asked, history.turns[-1]) if history and history.turns else (None, [])

    def follow_up(self, asked: Intent, previous: list[Hit], history: Conversation | None) -> Answer:
        """An answer over the previous answer's papers (see rag/followup.py), checked like any other."""
        earlier = history.turns[-1].question if history and history.turns else ""
        question = asked.text
        found = self.followups.answer(asked, previous, earlier)
        text, citations, removed = cite.check(sanitize(found.text), found.sources)
        answer = Answer(
            question=question,
            standalone_question=f"{earlier} {question}".strip(),
            text=text,
            mode="extractive",
            model=self.quoter.name,
            sources=found.sources,
            citations=citations,
            removed=removed,
        )
        answer.unsupported = not found.computed and not any(c.supported for c in citations)
        return answer

    def condense(self, asked: Intent, history: Conversation | None) -> str:
        """A follow-up question rewritten to stand alone, so retrieval sees its topic."""
        question = asked.text
        if not history or not history.turns or not asked.continues:
            return question
        if not asked.back and self.offline.names_topic(question):
            return question  # "what about speculative decoding?": a new topic, searched afresh
        return self.answerer.condense(question, history.turns)

    def retrieve(self, intent: Intent, k: int, unknown: list[str]) -> tuple[Intent, list[Hit], bool, list[Hit] | None]:
        """The question's papers (`search`). For a question not in the corpus's own words (no candidate holds
        most of its rare terms), searched again with the field's terms for it, named by the LLM: a paraphrase
        shares few words with the abstracts that answer it, those terms do. The papers of both searches compete,
        each with its better score: a term can mislead, and papers that match the terms less well than the
        question's own best matches it do not push that paper out. Without an LLM, or when the question names
        what no paper mentions (`unknown`, refused for that), the question alone."""
        any_year = self.any_year(intent)
        hits, on_topic = self.search(intent, k, any_year)
        if self.answerer is self.quoter or not hits or intent.filter_only or self.offline.anchored(intent.query, hits):
            return intent, hits, on_topic, any_year
        if unknown or not (named := self.answerer.field_terms(intent.query)):
            return intent, hits, on_topic, any_year
        intent = replace(intent, field_terms=named)
        any_year = self.any_year(intent)
        widened, on_topic = self.search(intent, k, any_year)
        return intent, best_of(hits + widened, k), on_topic, any_year

    def any_year(self, intent: Intent) -> list[Hit] | None:
        """With a year filter on a topic, the best papers for the topic with the years left out (what
        `search` and `unknown_year_note` compare against); None without one."""
        f = intent.filters
        if f.year_from is None and f.year_to is None or intent.filter_only:
            return None
        return self.retriever.search(intent.searched, self.settings.top_k, Filters(sources=f.sources))

    def search(self, intent: Intent, k: int, any_year: list[Hit] | None = None) -> tuple[list[Hit], bool]:
        """The papers an answer draws on, and whether they are about its topic. With a year filter,
        only those about as relevant as the best of `any_year` (`Relevance.on_topic`); when none is,
        all of them (the closest, for a refusal to name) and False: a year the topic has no paper in
        gets a refusal and `unknown_year_note`, not whatever that year holds."""
        hits = self.retriever.search(intent.searched, k, intent.filters)
        if any_year is None or not hits:
            return hits, True
        kept = self.relevance.on_topic(intent.searched, hits, any_year[:3])
        return (kept, True) if kept else (hits, False)

    def refusal(self, intent: Intent, hits: list[Hit], on_topic: bool, unknown: list[str]) -> str | None:
        """Why the corpus cannot answer (None: it can). Names no paper mentions (`unknown`) are the strongest
        sign; low relevance of every retrieved paper, or of every paper a year filter lets through, the other."""
        if not hits:
            return " No paper matches the filters." if intent.filters.active() else ""
        if intent.filter_only:
            return None  # "papers from 2019": the filter is the answer
        if unknown:
            return f" No paper mentions {', '.join(unknown)}."
        if topic := self.offline.apart(intent.query):
            return f" No paper is about {topic}."
        if self.relevance.best(intent.searched, hits[:3]) < self.settings.refuse_below:
            return ""
        if not on_topic:
            return " None of the papers the filters let through is clearly about this."
        return None

    def _refuse(self, answer: Answer, intent: Intent, reason: str) -> None:
        closest = "; ".join(h.paper.display_title for h in answer.sources[:3])
        answer.text = sanitize(f"{REFUSAL}{reason}" + (f" Closest papers: {closest}." if closest else ""))
        answer.refused, answer.notice, answer.model, answer.declined = True, "", self.model, False
        answer.sources = answer.sources[:3]

    def writer(self, intent: Intent, sources: list[Hit]) -> tuple[ExtractiveAnswerer | LLMAnswerer, str]:
        """Who writes this answer, and why not the LLM when it is configured but does not write. A list, and
        "which paper ...", is written by code from the judgements (a small model stops after the first paper, or
        restates the question and leaves out the paper's name); an LLM that could not be reached while judging
        is not asked again."""
        if self.answerer is self.quoter:
            return self.quoter, ""
        if why := evidence.unreachable(sources):
            return self.quoter, LLM_DOWN_NOTICE.format(why=why)
        if intent.is_list:
            return self.quoter, ""
        return self.answerer, ""

    def _judged_then_written(
        self, answer: Answer, intent: Intent, hits: list[Hit], on_progress: Progress | None, t0: float
    ) -> Generator[str, None, None]:
        """Every paper judged, then the answer written from the judgements; refused when none is relevant."""
        answer.sources = evidence.read(self.judge, intent, hits, on_progress)
        if intent.is_summary:
            answer.sources = grouped(answer.sources)  # a summary names its papers by what they report
        answer.timings["judge"] = time.perf_counter() - t0 - answer.timings["retrieve"]
        if not intent.filter_only and not any(h.relevant for h in answer.sources):
            self._refuse(answer, intent, "")
            yield answer.text
        else:
            yield from self._generate(answer, intent, t0)

    def as_judged(self, intent: Intent) -> bool:
        """A list judged by an LLM is written while its papers are read: the model takes seconds a paper."""
        return self.judge is not self.offline and intent.many and not intent.filter_only

    def _list_as_judged(
        self, answer: Answer, intent: Intent, hits: list[Hit], on_progress: Progress | None, t0: float
    ) -> Generator[str, None, None]:
        """Each relevant paper's line as soon as it and every paper ranked above it are judged, numbered in the
        order shown; refused when none is relevant."""
        judged: list[Hit] = []
        cited: list[Hit] = []

        def lines() -> Generator[str, None, None]:
            for hit in evidence.read_in_order(self.judge, intent, hits, on_progress):
                judged.append(hit)
                if hit.relevant and hit.quotes():
                    cited.append(hit)
                    n = len(cited)
                    yield ("\n" if n > 1 else "") + "- " + self.quoter.paper_line(n, hit, intent.wants)

        raw = yield from self._shown(map(sanitize, lines()), answer, t0)  # whole lines: each shown at once
        answer.sources = cited + [h for h in judged if h not in cited]
        answer.timings["judge"] = time.perf_counter() - t0 - answer.timings["retrieve"]
        if not cited:
            self._refuse(answer, intent, "")
            yield answer.text
            return
        answer.notice = LLM_DOWN_NOTICE.format(why=why) if (why := evidence.unreachable(answer.sources)) else ""
        answer.mode, answer.model = "extractive", self.written_by_code(judged)
        self._check(answer, intent, raw, self.quoter)

    def written_by_code(self, judged: list[Hit]) -> str:
        """Who an answer written by code with an LLM configured is credited to: the model when it judged papers
        (not for a question in the corpus's own words, nor when it could not be reached), else the quotes alone."""
        asked = any(h.judgement is not None and h.judgement.by == "llm" for h in judged)
        return BY_CODE.format(model=self.model) if asked else self.quoter.name

    def _generate(self, answer: Answer, intent: Intent, t0: float) -> Generator[str, None, None]:
        writer, answer.notice = self.writer(intent, answer.sources)
        if writer is self.quoter and self.answerer is not self.quoter:
            answer.mode, answer.model = "extractive", self.written_by_code(answer.sources)
        if writer is not self.quoter:
            answer.sources = writer.fit(intent, [h for h in answer.sources if h.relevant])
        try:
            raw = yield from self._stream(writer, answer, intent, t0)
        except LLMError as e:
            if "first_token" in answer.timings:
                raise  # part of the answer was shown: it cannot be taken back
            answer.mode, answer.model, answer.notice = "extractive", self.quoter.name, LLM_DOWN_NOTICE.format(why=e)
            writer, raw = self.quoter, (yield from self._stream(self.quoter, answer, intent, t0))
        if _LLM_REFUSAL.match(raw) and writer is not self.quoter and self.settings.llm_quote_when_declined:
            # Small models decline questions their sources do answer (half of the paraphrases, for a
            # 1.5B model): the evidence step already judged them relevant, so quote the evidence rather than refuse.
            answer.notice, answer.model, answer.declined = (
                DECLINED_NOTICE,
                f"{self.model}, then extractive quotes",
                True,
            )
            yield "\n\n"
            raw = yield from self._stream(self.quoter, answer, intent, t0)
        self._check(answer, intent, raw, writer)

    def _check(self, answer: Answer, intent: Intent, raw: str, writer: ExtractiveAnswerer | LLMAnswerer) -> None:
        """The written text's citations checked against the sources, and what the answer leaves out."""
        t = time.perf_counter()
        if _LLM_REFUSAL.match(raw):
            self._refuse(answer, intent, "")
            return
        answer.text, answer.citations, answer.removed = cite.check(
            raw, answer.sources, f"{answer.question} {answer.standalone_question}"
        )  # a sentence repeating withheld text is removed there; spread over several, the answer goes
        if repeats_withheld(answer.text, [sentence for h in answer.sources for sentence in h.withheld]):
            answer.citations = []
            self._refuse(
                answer, intent, " The answer repeated text that addresses an AI assistant, so it was withheld."
            )
            return
        if intent.asks:
            for c in answer.citations:  # a statement about metadata ("does not record the authors"), not a quote
                c.supported = True
        answer.unsupported = not any(c.supported for c in answer.citations)
        if intent.wants and writer is not self.quoter:  # the extractive lines say so themselves
            cited = [answer.sources[n - 1] for n in dict.fromkeys(c.n for c in answer.citations)]
            answer.notice = " ".join(x for x in (answer.notice, missing_note(cited, intent.wants)) if x)
        if (intent.is_list or intent.is_summary) and not intent.one:
            named = {c.paper_id for c in answer.citations}
            answer.uncited = [h.paper.paper_id for h in answer.sources if h.relevant and h.paper.paper_id not in named]
        answer.timings["check"] = time.perf_counter() - t

    def _stream(
        self, answerer: ExtractiveAnswerer | LLMAnswerer, answer: Answer, intent: Intent, t0: float
    ) -> Generator[str, None, str]:
        """Yield `answerer`'s text, made inert, as it comes; return all of it."""
        return (yield from self._shown(sanitize_stream(answerer.stream(intent, answer.sources)), answer, t0))

    def _shown(self, inert_pieces: Iterator[str], answer: Answer, t0: float) -> Generator[str, None, str]:
        """Yield the pieces, already made inert, as they come, timing the first; return all of them."""
        pieces: list[str] = []
        for piece in inert_pieces:
            answer.timings.setdefault("first_token", time.perf_counter() - t0)
            pieces.append(piece)
            yield piece
        return "".join(pieces)

    def metadata_answer(self, question: str, standalone: str, query: MetaQuery, filters: Filters) -> Answer:
        """Counts, superlatives and dates computed over every paper's metadata (a text search sees only
        its top hits); the values are not in the abstracts, so there is no support check to fail."""
        if query.period is None and (filters.year_from is not None or filters.year_to is not None):
            query = replace(query, period=Period.years(filters.year_from, filters.year_to))
        papers = [
            p for p in self.retriever.store.all_papers() if not filters.sources or set(filters.sources) & set(p.sources)
        ]
        papers = [p for p in papers if filters.allows_labels(p.categories, p.venue)]
        topic_ids = None
        if query.topic:
            hits = self.retriever.search(query.topic, self.settings.candidates, Filters(sources=filters.sources))
            picked = (
                hits[:3]
                if query.ask == "paper"
                else [hits[i - 1] for i in sorted(self.offline.relevant(query.topic, hits))]
            )
            topic_ids = [h.paper.paper_id for h in picked]
        found = metadata.answer(query, papers, topic_ids)
        sources = [inert(Hit(p, score=1.0)) for p in found.papers]
        text = sanitize(found.text)
        citations = [
            Citation(
                n=i,
                paper_id=h.paper.paper_id,
                title=h.paper.display_title,
                claim=text,
                quote="",
                quote_start=0,
                quote_end=0,
                support=1.0,
                supported=True,
            )
            for i, h in enumerate(sources, 1)
        ]
        return Answer(
            question=question,
            standalone_question=standalone,
            text=text,
            mode=self.mode,
            model=METADATA_MODEL,
            sources=sources,
            citations=citations,
            notice=METADATA_NOTICE,
        )

    def by_meaning(self, intent: Intent, answer: Answer) -> str:
        """Said under a list or summary of a question whose words no paper holds: its papers are a judgement of
        meaning, and on paraphrased lists most such papers are wrong (BENCHMARKS.md, "What no cut or threshold
        can beat")."""
        if answer.refused or intent.filter_only or not (intent.many or intent.is_summary):
            return ""
        if len(self.retriever.lexicon) < TOPIC_CORPUS:
            return ""  # in a handful of papers word rarity means nothing (TOPIC_CORPUS, as for a two-word topic)
        return "" if self.offline.anchored(intent.searched, answer.sources) else BY_MEANING

    def unknown_year_note(self, intent: Intent, any_year: list[Hit] | None) -> str:
        """A year filter fails closed on papers with no known year; say which of them match the topic."""
        if any_year is None:
            return ""
        hits = [h for h in any_year if h.paper.year is None]
        keep = [hits[i - 1] for i in sorted(self.offline.relevant(intent.searched, hits))]
        if not keep:
            return ""
        titles = "; ".join(h.paper.display_title for h in keep)
        return sanitize(f"{len(keep)} more match but have no known year: {titles}.")


def best_of(hits: list[Hit], k: int) -> list[Hit]:
    """The `k` best papers of several searches, each once, with its best score (ties by paper id)."""
    best: dict[str, Hit] = {}
    for hit in hits:
        if hit.paper.paper_id not in best or hit.score > best[hit.paper.paper_id].score:
            best[hit.paper.paper_id] = hit
    return sorted(best.values(), key=lambda h: (-h.score, h.paper.paper_id))[:k]


def make_engine(settings: Settings, retriever: Retriever) -> Engine:
    from rag.llm import make_chat_model

    return Engine(settings, retriever, make_chat_model(settings))
