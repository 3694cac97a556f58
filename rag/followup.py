"""Follow-ups that point back at the previous answer: "which of those is from 2024?", "does it need retraining?".

Such a question works on the papers the previous answer cited, not on a new search: a year filter is
applied to them, a narrowing question keeps those that hold its terms, and a question about "it" is
answered from that one paper's evidence (yes or no from its sentences, or what figure the abstract
lacks). The previous answer's papers come with the turn (`Turn.papers`); a client that sends only the
text (the HTTP API's messages) has them recovered from the titles the answer names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from rag.evidence import OfflineJudge
from rag.extractive import label, lacks, method_name
from rag.question import BACK_WORDS, Intent, Want
from rag.retrieve import Retriever
from rag.safety import WITHHELD
from rag.text import GENERIC, sentence_spans, terms
from rag.tuned import KEY_SHARE
from rag.types import Hit, Judgement, Paper, Turn

# A list line or lookup of an extractive answer opens with the paper's label: "- COAT: Compressing ...: <quote> [1]".
_LINE_LABEL = re.compile(r"^(?:- )?(.+?): .*\[\d+\]", re.M)
_NEGATION = re.compile(
    r"\b(?:no|not|without|never|neither|nor|free of)\b|-free\b|\bfree\b|"
    r"\b(?:eliminat|obviat|remov|avoid|bypass|dispens)\w* (?:the |any )?(?:need|requirement)",
    re.I,
)
_WORDS = re.compile(r"[\w-]+")  # words with their hyphens: "training-free", "MatMul-free"
_FIGURE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[\s-]?([A-Za-z]{2,})\b")  # "1 bit", "8-bit", "4 GPUs"
_OWN = re.compile(r"\b(?:we|our|this (?:paper|work|study|article)|the proposed)\b", re.I)  # the paper's own work
_OTHERS = re.compile(
    r"\b(?:existing|conventional|traditional|typically|usually|(?:previous|prior|recent|most) "
    r"(?:work|works|methods|approaches|studies|models|systems))\b",
    re.I,
)  # a sentence about work other than the paper's
# Comparatives and their opposites, as stems: "is decoding faster?" is answered no by "it makes decoding slower".
_OPPOSITE = {
    a: b
    for pair in (
        "faster slower",
        "higher lower",
        "larger smaller",
        "better worse",
        "increase decrease",
        "longer shorter",
    )
    for x, y in [terms(pair)]
    for a, b in ((x, y), (y, x))
}
_DEFINED = re.compile(r"((?:[\w-]+\s+){0,3}[\w-]+)\s+\(([A-Za-z][\w-]{1,15})\)")  # "matrix multiplication (MatMul)"


@dataclass
class FollowUp:
    """What a follow-up answer says (with [n] into `sources`) and the papers it may cite."""

    text: str
    sources: list[Hit]
    computed: bool = False  # the text states a fact about metadata or an absence, not a quote


class FollowUps:
    def __init__(self, retriever: Retriever, judge: OfflineJudge) -> None:
        self.retriever = retriever
        self.judge = judge

    def refers_back(self, intent: Intent, turn: Turn) -> tuple[str | None, list[Hit]]:
        """Whether the question points back at the papers of the previous answer (`turn`), and those papers.
        A yes/no question with no word pointing back ("does the attack need fine-tuning?") is about the one
        paper of the previous answer when that paper's abstract holds every concept of the question."""
        if intent.back is None and not intent.yes_no:
            return None, []
        previous = self.papers_of(turn)
        if intent.back is None and (len(previous) != 1 or not self._holds_all(intent.query, previous[0])):
            return None, []
        return (intent.back or "one", previous) if previous else (None, [])

    def _holds_all(self, query: str, hit: Hit) -> bool:
        """The paper holds every concept of the question, a comparative or its opposite ("faster", "slower")."""
        keys = self.judge.key_terms(query)
        return any(self.judge.held(k, hit) >= 1 for k in (keys, [_OPPOSITE.get(k, k) for k in keys]))

    def papers_of(self, turn: Turn) -> list[Hit]:
        """The previous answer's papers, in its [n] order."""
        ids = list(turn.papers) or self._named(turn.answer)
        found = [self.retriever.paper(pid) for pid in ids]
        return [h for h in found if h is not None]

    def _named(self, answer: str) -> list[str]:
        """Ids of the papers an answer's lines open with (their labels), for clients that send only text."""
        ids: list[str] = []
        for name in _LINE_LABEL.findall(answer):
            for hit in self.retriever.search(name, 3, method="bm25"):
                if name in (label(hit.paper), hit.paper.display_title) and hit.paper.paper_id not in ids:
                    ids.append(hit.paper.paper_id)
                    break
        return ids

    def answer(self, intent: Intent, previous: list[Hit], earlier: str) -> FollowUp:
        if intent.year_known is not None:
            known = intent.year_known
            return self._filtered(previous, lambda p: (p.year is not None) == known, earlier)
        if intent.filters.active():
            return self._filtered(previous, intent.filters.allows, earlier)
        if intent.back == "many" and not (intent.yes_no and len(previous) == 1):  # "did they ...?" of one paper
            return self._narrowed(intent, previous)
        one = _pick(previous, intent.ordinal)
        if one is None:
            count = "one paper" if len(previous) == 1 else f"{len(previous)} papers"
            return FollowUp(f"The previous answer names only {count}.", [], computed=True)
        return self._about(intent, one)

    def _filtered(self, previous: list[Hit], allows: Callable[[Paper], bool], earlier: str) -> FollowUp:
        """The previous papers that pass a year or source filter; the others said in one line."""
        kept = [h for h in previous if allows(h.paper)]
        sources = self._quoted(earlier, kept) + [h for h in previous if h not in kept]
        rest = "; ".join(f"{h.paper.display_title} {_year_of(h)}" for h in previous if h not in kept)
        if not kept:
            return FollowUp(f"None of them. {rest}." if rest else "None of them.", sources, computed=True)
        lines = [_line(i, h) for i, h in enumerate(sources[: len(kept)], 1)]
        return FollowUp("\n".join(lines) + (f"\nNot the others: {rest}." if rest else ""), sources)

    def _narrowed(self, intent: Intent, previous: list[Hit]) -> FollowUp:
        """The previous papers that hold most of the question's own key terms (the words pointing back aside)
        and each figure it names with its unit ("1 bit" is not "2-bit")."""
        query = BACK_WORDS.sub(" ", intent.query)
        keys, figures = self.judge.key_terms(query), _figures(query)
        kept = [
            h
            for h in previous
            if keys
            and self.judge.held(keys, h) >= KEY_SHARE
            and all(f.search(f"{h.paper.title} {h.paper.abstract}") for f in figures)
        ]
        sources = self._quoted(query, kept) + [h for h in previous if h not in kept]
        if not kept:
            names = "; ".join(h.paper.display_title for h in previous)
            return FollowUp(f"None of them: no abstract of {names} says so.", sources, computed=True)
        return FollowUp("\n".join(_line(i, h) for i, h in enumerate(sources[: len(kept)], 1)), sources)

    def _about(self, intent: Intent, hit: Hit) -> FollowUp:
        """One paper's answer: yes or no from its sentences, or its evidence and what figure it lacks."""
        query = BACK_WORDS.sub(" ", intent.query)
        [hit] = self._quoted(query, [hit], intent.wants)
        quotes = " ".join(f"{s} [1]" for s in hit.quotes())
        name = label(hit.paper)
        if intent.yes_no:
            verdict, sentence = self._yes_no(query, hit)
            if verdict is None:
                return FollowUp(f"The abstract of {name} does not say. Closest: {quotes}", [hit], computed=True)
            return FollowUp(f"{verdict}. {name}: {sentence} [1]", [hit])
        if missing := lacks(hit, intent.wants):
            return FollowUp(f"The abstract of {name} {missing} for this. Closest: {quotes}", [hit], computed=True)
        return FollowUp(f"{name}: {quotes}", [hit])

    def _yes_no(self, query: str, hit: Hit) -> tuple[str | None, str]:
        """("No", its sentence) when a sentence of the paper's own work that holds the most of the question's
        content words negates them ("training-free", "does not require a new compiler", "eliminating the need
        for diffusion"), else ("Yes", the first such sentence), or (None, "") when no sentence holds them. All
        content words, not only the rare ones: the paper is known, and what is asked of it ("require
        fine-tuning") is in common words. Sentences about other work ("existing methods rely on X") speak for
        the paper only when none of its own (we, our, its name) does; an abbreviation the abstract defines
        ("matrix multiplication (MatMul)") or spells ("RL" for reinforcement learning) stands for its words."""
        abstract = hit.paper.abstract
        keys = {k: k for k in (_unprefixed(k) for k in sorted(set(terms(query)) - GENERIC))}
        keys |= _abbreviations(abstract, set(keys)) | _initialisms(abstract, query, set(keys))
        opposites = {_OPPOSITE[k]: k for k in keys if k in _OPPOSITE and _OPPOSITE[k] not in keys}
        holding = []
        for start, end in sentence_spans(abstract, hit.paper.spans):
            sentence = abstract[start:end]
            words = _WORDS.findall(sentence.lower())
            held = {i: k for i, w in enumerate(words) for k in keys | opposites if k == w or len(k) > 3 and k in w}
            if held and WITHHELD not in sentence:
                negated = any(_NEGATION.search(" ".join(words[max(0, i - 5) : i + 2])) for i in held)
                opposed = any(k in opposites for k in held.values())  # "slower" answers "faster?" no; "not slower", yes
                meant = {opposites.get(k) or keys[k] for k in held.values()}
                holding.append((sentence, len(meant), negated != opposed))
        name = (method_name(hit.paper) or label(hit.paper)).lower()
        own = [h for h in holding if _OWN.search(h[0]) or name in h[0].lower()]
        pool = own or [h for h in holding if not _OTHERS.search(h[0])] or holding
        if not pool:
            return None, ""
        top = max(h[1] for h in pool)
        most = [h for h in pool if h[1] == top]
        sentence, _, negated = next((h for h in most if h[2]), most[0])
        return ("No" if negated else "Yes"), sentence

    def _quoted(self, query: str, hits: list[Hit], wants: Want | None = None) -> list[Hit]:
        """The hits with the sentences that answer `query` (and hold what it `wants`, when they can) as their evidence."""
        quoter = self.judge.quoter
        return [
            replace(h, judgement=Judgement(True, 1.0, quoter.evidence_spans(query, h, wants), "offline")) for h in hits
        ]


def _abbreviations(abstract: str, keys: set[str]) -> dict[str, str]:
    """Abbreviations the abstract defines for words holding a key term ("matrix multiplication (MatMul)"),
    each with the key it stands for."""
    found: dict[str, str] = {}
    for phrase, short in _DEFINED.findall(abstract):
        for key in sorted(k for k in keys if any(k in w for w in phrase.lower().split())):
            found.setdefault(short.lower(), key)
    return found


def _figures(query: str) -> list[re.Pattern[str]]:
    """A number with its unit in the question ("1 bit", "8-bit", "4 GPUs"), each as a pattern for the same
    number before the same unit."""
    return [
        re.compile(rf"(?<![\d.]){re.escape(n)}[\s-]?{re.escape(unit.removesuffix('s'))}", re.I)
        for n, unit in _FIGURE.findall(query)
        if not set(terms(unit)) <= GENERIC
    ]


def _unprefixed(key: str) -> str:
    """ "retrain" as "train", so that "training-free" answers "does it need retraining?"; not "reli" (rely)."""
    return key[2:] if key.startswith("re") and len(key) >= 7 else key


def _initialisms(abstract: str, query: str, keys: set[str]) -> dict[str, str]:
    """Acronyms of the abstract spelt by the initials of consecutive question words that hold a key term
    ("RL tasks" for "reinforcement learning tasks"), each with that key."""
    words, ordered = _WORDS.findall(query.lower()), sorted(keys)
    found: dict[str, str] = {}
    for acronym in sorted(set(re.findall(r"\b[A-Z]{2,5}\b", abstract))):
        n = len(acronym)
        for i in range(len(words) - n + 1):
            run = words[i : i + n]
            if "".join(w[0] for w in run) != acronym.lower():
                continue
            key = next((k for k in ordered if any(k in w for w in run)), None)
            if key:
                found.setdefault(acronym.lower(), key)
    return found


def _pick(previous: list[Hit], n: int | None) -> Hit | None:
    """The paper "it" or "the second one" means: the one named by its place, else the first."""
    i = 0 if n is None else n - 1 if n > 0 else len(previous) + n
    return previous[i] if 0 <= i < len(previous) else None


def _line(n: int, hit: Hit) -> str:
    return f"- {label(hit.paper)}: " + " ".join(f"{s} [{n}]" for s in hit.quotes())


def _year_of(hit: Hit) -> str:
    return f"is from {hit.paper.year}" if hit.paper.year is not None else "has no known year"
