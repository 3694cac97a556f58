"""Data types shared by every pipeline stage (the bottom of the import graph)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from rag import ids

Spans = tuple[tuple[int, int], ...]  # (start, end) character offsets of sentences


@dataclass
class Paper:
    """One paper of the corpus; `paper_id` is a content hash, so it survives re-ingest."""

    paper_id: str
    title: str
    abstract: str
    date_raw: str = ""
    date: str = ""  # ISO date when the year is known, else "" (see `month_day`)
    year: int | None = None
    authors: int | None = None
    organisation: str = ""
    sources: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # entry number within each source
    paths: list[str] = field(default_factory=list)  # full paths of the sources, to scope re-ingests
    spans: Spans = ()  # sentence offsets in `abstract` when known (stored at ingest)
    clean: str = ""  # set at ingest when no sentence addresses an AI (`safety.clean_mark`)
    doi: str = ""  # identifiers, validated and normalised at ingest (`rag.ids`)
    arxiv_id: str = ""
    pmid: str = ""
    url: str = ""  # as the source file gives it: shown, but a link only when it names an identifier
    venue: str = ""
    categories: list[str] = field(default_factory=list)

    @property
    def link(self) -> str | None:
        """doi.org, arXiv or PubMed link from a validated identifier; None when the paper has none."""
        return ids.link(self.doi, self.arxiv_id, self.pmid, self.url)

    @property
    def display_title(self) -> str:
        """Title to cite by: the real one, or the abstract's opening words when there is none."""
        if self.title:
            return self.title
        words = self.abstract.split()
        head = " ".join(words[:10])
        return head + (" ..." if len(words) > 10 else "")

    @property
    def source(self) -> str:
        return self.sources[0] if self.sources else ""


@dataclass(frozen=True)
class Filters:
    """Metadata filters. A paper with an unknown year, category or venue never passes that filter (fail closed)."""

    year_from: int | None = None
    year_to: int | None = None
    sources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # any of them (arXiv-style, exact)
    venues: tuple[str, ...] = ()  # any of them (the whole name, any case)

    def active(self) -> bool:
        return self.year_from is not None or self.year_to is not None or bool(self.sources) or self.labelled()

    def labelled(self) -> bool:
        """A category or venue filter: these are read from the paper records, not from the lexical index."""
        return bool(self.categories or self.venues)

    def allows_labels(self, categories: Iterable[str], venue: str) -> bool:
        if self.categories and not set(self.categories) & set(categories):
            return False
        return not self.venues or venue.casefold() in {v.casefold() for v in self.venues}

    def allows(self, paper: Paper) -> bool:
        if self.year_from is not None or self.year_to is not None:
            if paper.year is None:
                return False
            if self.year_from is not None and paper.year < self.year_from:
                return False
            if self.year_to is not None and paper.year > self.year_to:
                return False
        if not self.allows_labels(paper.categories, paper.venue):
            return False
        return not self.sources or bool(set(self.sources) & set(paper.sources))


@dataclass
class Problem:
    """Something in an input file that was skipped, with the reason in words a user can act on; or, as a
    notice, something read all the same that the user should know about."""

    file: str
    message: str
    line: int | None = None
    notice: bool = False  # read all the same (e.g. decoded as Windows-1252): worth saying, nothing was skipped

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


@dataclass
class Corpus:
    """What `rag.corpus.load` or `scan` read; the path sets tell an ingest which stored papers it may delete."""

    papers: list[Paper]  # `load`'s; a streaming `scan` passes its papers on and keeps none
    distinct: int = 0  # papers after merging
    problems: list[Problem] = field(default_factory=list)
    per_file: dict[str, int] = field(default_factory=dict)  # entries read per file
    merged: int = 0  # entries folded into a paper already seen in another place
    read_paths: set[str] = field(default_factory=set)  # files that yielded at least one paper
    unread_paths: set[str] = field(default_factory=set)  # files that yielded none: their stored papers stay
    damaged_paths: set[str] = field(default_factory=set)  # read_paths with a Problem: a paper may be missing
    notices: list[Problem] = field(default_factory=list)  # read as asked, but the user should know (not problems)


@dataclass
class Chunk:
    """A run of whole sentences of one abstract, small enough for the embedder."""

    chunk_id: str
    paper_id: str
    text: str
    start: int  # character offsets into the abstract
    end: int


@dataclass(frozen=True)
class Judgement:
    """One candidate paper read against the question (the evidence step): is it about the question, how
    strongly (orders a list), and the sentences of its abstract that answer it. Everything after retrieval
    (refusal, which papers a list holds, what is quoted) reads this, never the retrieval scores again."""

    relevant: bool
    strength: float  # 0-1: the LLM's probability of "yes", or the paper's share of the best retrieval score
    spans: Spans = ()  # (start, end) of the answering sentences in the abstract, in their order
    by: str = "offline"  # "offline", "llm", or "offline (llm failed)" when that paper's request failed
    error: str = ""  # why that paper's request failed

    def to_json(self) -> dict:
        spans = [list(s) for s in self.spans]
        return {
            "relevant": self.relevant,
            "strength": round(self.strength, 6),
            "spans": spans,
            "by": self.by,
            "error": self.error,
        }


@dataclass
class Hit:
    """One retrieved paper (its best chunk), with the scores that ranked it and, once read, its judgement."""

    paper: Paper
    score: float
    chunk: Chunk | None = None
    dense: float | None = None  # cosine similarity of the best chunk, when dense found it
    bm25: float | None = None
    ranks: dict[str, int] = field(default_factory=dict)
    withheld: tuple[str, ...] = ()  # sentences addressed to an AI, replaced by a marker in `paper` (safety.inert)
    judgement: Judgement | None = None  # set by the evidence step (rag/evidence.py)

    @property
    def relevant(self) -> bool:
        return self.judgement is not None and self.judgement.relevant

    def quotes(self) -> list[str]:
        """The abstract sentences the evidence step found to answer the question."""
        return [self.paper.abstract[s:e] for s, e in self.judgement.spans] if self.judgement else []

    def to_json(self) -> dict:
        p = self.paper
        return {
            "paper_id": p.paper_id,
            "title": p.display_title,
            "has_title": bool(p.title),
            "abstract": p.abstract,
            "source": p.source,
            "sources": p.sources,
            "date": p.date or p.date_raw,
            "year": p.year,
            "authors": p.authors,
            "organisation": p.organisation,
            **identifiers(p),
            "score": round(self.score, 6),
            "dense": None if self.dense is None else round(self.dense, 6),
            "bm25": None if self.bm25 is None else round(self.bm25, 6),
            "ranks": self.ranks,
            "suspicious": bool(self.withheld),
            "judgement": self.judgement.to_json() if self.judgement else None,
        }


def identifiers(p: Paper) -> dict:
    """The identifier fields and the link, as every JSON output shows them."""
    return {
        "doi": p.doi or None,
        "arxiv_id": p.arxiv_id or None,
        "pmid": p.pmid or None,
        "url": p.link,
        "source_url": p.url or None,
        "venue": p.venue or None,
        "categories": p.categories,
    }


def encode_spans(spans: Spans) -> str:
    """Sentence offsets as one string ("0-97 98-210"): one metadata value, not a list row per number."""
    return " ".join(f"{s}-{e}" for s, e in spans)


def decode_spans(text: str) -> Spans:
    return tuple((int(s), int(e)) for s, e in (pair.split("-") for pair in text.split()))


@dataclass
class Turn:
    question: str
    answer: str
    papers: tuple[str, ...] = ()  # ids of the papers the answer cited, in [n] order: what "those" and "it" mean next

    @classmethod
    def of(cls, question: str, answer: Answer) -> Turn:
        return cls(question, answer.text, tuple(dict.fromkeys(c.paper_id for c in answer.citations)))


@dataclass
class Conversation:
    """History kept by the caller (CLI session, UI, API request) for follow-up questions."""

    turns: list[Turn] = field(default_factory=list)


@dataclass
class IngestReport:
    """What one ingest run did; `embedded` counts chunks sent to the embedder."""

    added: int = 0
    updated: int = 0
    relabelled: int = 0  # same text, new metadata: stored again without re-embedding
    refreshed: int = 0  # unchanged, record rewritten for this version's sentence spans and classifier
    deleted: int = 0
    unchanged: int = 0
    repaired: int = 0  # same text, but chunks were missing (an interrupted ingest): embedded again
    embedded: int = 0
    seconds: float = 0.0
    corpus: Corpus | None = None


@dataclass
class Citation:
    """One [n] in an answer, checked against the abstract it points to."""

    n: int
    paper_id: str
    title: str
    claim: str  # the answer sentence that carries the marker
    quote: str  # the abstract sentence that best supports the claim
    quote_start: int
    quote_end: int
    support: float  # share of the claim's content words found in the quote (and title)
    supported: bool

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Answer:
    question: str
    text: str
    mode: str  # "extractive" or "llm"
    model: str
    standalone_question: str = ""
    field_terms: str = ""  # the field's terms an LLM named for a question not in the corpus's words, searched beside it
    citations: list[Citation] = field(default_factory=list)
    sources: list[Hit] = field(default_factory=list)
    refused: bool = False
    unsupported: bool = False  # no claim kept a valid, supporting citation
    removed: list[int] = field(default_factory=list)  # citation numbers that named no source
    uncited: list[str] = field(default_factory=list)  # relevant candidates a list answer left out
    notice: str = ""  # e.g. how to configure an LLM, papers a year filter left out
    declined: bool = False  # the LLM said its relevant sources do not answer: best sentences shown instead
    suspicious: list[str] = field(default_factory=list)  # source papers holding text addressed to an AI
    timings: dict[str, float] = field(default_factory=dict)

    def cited(self) -> list[tuple[int, Paper]]:
        """The sources the answer cites, each once, in [n] order (a citation to no source is left out)."""
        ns = sorted({c.n for c in self.citations if 1 <= c.n <= len(self.sources)})
        return [(n, self.sources[n - 1].paper) for n in ns]

    def to_json(self) -> dict:
        """The answer as the front doors' JSON, without its BibTeX (`references.answer_json` adds it)."""
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "field_terms": self.field_terms,
            "answer": self.text,
            "mode": self.mode,
            "model": self.model,
            "refused": self.refused,
            "unsupported": self.unsupported,
            "citations": [c.to_json() for c in self.citations],
            "removed_citations": self.removed,
            "uncited_candidates": self.uncited,
            "sources": [h.to_json() for h in self.sources],
            "notice": self.notice,
            "declined": self.declined,
            "suspicious_sources": self.suspicious,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }
