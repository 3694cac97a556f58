"""Prompts for an LLM answerer: numbered sources inside tags that mark them as data, fitted to the context."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from rag.config import PROMPTS_DIR
from rag.errors import LLMError
from rag.question import Intent
from rag.safety import inert, sanitize
from rag.types import Hit, Turn

MAX_TERMS_CHARS = 300  # a line of terms; a model that rambles is cut here
MARGIN = 1.2  # the served model's tokenizer is unknown: count with cl100k and keep 20% spare
Excerpt = Callable[[str, Hit], str]  # (question, source) -> the part of its abstract to show (None: all of it)


def load_prompt(name: str) -> str:
    return (PROMPTS_DIR / f"{name}.txt").read_text(encoding="utf-8")


def _inert(text: str) -> str:
    """Angle brackets become look-alikes, so text from a paper can never open or close a tag."""
    return text.replace("<", "‹").replace(">", "›")


def format_sources(hits: list[Hit], question: str = "", excerpt: Excerpt | None = None) -> str:
    """Number the sources [1]..[k] inside tags that mark them as quoted data, not instructions.

    The system prompt already says sources are data; making every hit inert once more (retrieval's
    hits are inert already; others may not be) makes sure text addressed to an AI never reaches the model.
    """
    blocks = []
    for i, hit in enumerate(hits, 1):
        safe = inert(hit)
        p = safe.paper
        meta = "; ".join(x for x in (p.date_raw, f"{p.authors} authors" if p.authors else "", p.organisation) if x)
        title, body = (
            _inert(p.display_title).replace('"', "'"),
            _inert(excerpt(question, safe) if excerpt else p.abstract),
        )
        blocks.append(f'<source id="{i}" title="{title}" meta="{_inert(meta)}">\n{body}\n</source>')
    return "\n\n".join(blocks)


def build_messages(question: str, hits: list[Hit], excerpt: Excerpt | None = None) -> list[dict[str, str]]:
    user = load_prompt("answer").format(sources=format_sources(hits, question, excerpt), question=_inert(question))
    return [{"role": "system", "content": load_prompt("system")}, {"role": "user", "content": user}]


def field_terms_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": load_prompt("field_terms").format(question=_inert(question))}]


def judge_messages(question: str, hit: Hit) -> list[dict[str, str]]:
    """One paper put to a yes/no judge. The question comes before the paper, so a server that caches
    prompts reuses the shared prefix for every paper of an answer."""
    p = inert(hit).paper
    title = _inert(p.display_title).replace('"', "'")
    user = load_prompt("judge").format(question=_inert(question), title=title, abstract=_inert(p.abstract))
    return [{"role": "system", "content": load_prompt("judge_system")}, {"role": "user", "content": user}]


def _first_line(reply: str) -> str:
    """A short reply's first non-blank line, made inert: the model may go on past what was asked."""
    lines = reply.strip().splitlines()
    return sanitize(lines[0]).strip() if lines else ""


@lru_cache(maxsize=1)
def _encoding():
    """tiktoken's cl100k, from the copy llama-index ships (tiktoken alone would download it)."""
    import importlib.util

    import tiktoken

    spec = importlib.util.find_spec("llama_index.core")  # its folder, without importing all of llama-index
    if spec and spec.submodule_search_locations:
        os.environ.setdefault(
            "TIKTOKEN_CACHE_DIR", os.path.join(spec.submodule_search_locations[0], "_static", "tiktoken_cache")
        )
    return tiktoken.get_encoding("cl100k_base")


def count_tokens(messages: list[dict[str, str]]) -> int:
    return sum(len(_encoding().encode(m["content"], disallowed_special=())) for m in messages)


def fit(question: str, hits: list[Hit], context: int, answer_tokens: int, excerpt: Excerpt | None = None) -> list[Hit]:
    """Drop the lowest-ranked sources until the prompt and the answer fit the model's context."""
    budget = context - answer_tokens
    while len(hits) > 1 and count_tokens(build_messages(question, hits, excerpt)) * MARGIN > budget:
        hits = hits[:-1]
    return hits


def question_fits(question: str, context: int, answer_tokens: int) -> bool:
    """The question with the instructions and one short source must fit, or no answer can."""
    return count_tokens(build_messages(question, [])) * MARGIN + 400 <= context - answer_tokens


class LLMAnswerer:
    """Writes the answer with a chat model, from sources fitted to its context."""

    mode = "llm"
    notice = ""

    def __init__(self, chat: Any, context: int, answer_tokens: int, excerpt: Excerpt | None = None) -> None:
        self.chat = chat
        self.name = chat.name
        self.context = context
        self.answer_tokens = answer_tokens
        self.excerpt = excerpt

    def fits(self, question: str) -> bool:
        return question_fits(question, self.context, self.answer_tokens)

    def condense(self, question: str, turns: list[Turn]) -> str:
        """A follow-up rewritten by the model to stand alone, so retrieval sees its topic."""
        lines = "\n".join(f"User: {t.question}\nAssistant: {t.answer[:500]}" for t in turns[-3:])
        text = "".join(
            self.chat.stream(
                [{"role": "user", "content": load_prompt("condense").format(history=lines, question=question)}]
            )
        )
        return _first_line(text) or question

    def field_terms(self, question: str) -> str:
        """The field's own words for a question asked in other words (one line of terms), or "" when the model
        gives none or cannot be reached: retrieval and the offline judge read them beside the question."""
        line = ""
        try:
            for piece in self.chat.stream(field_terms_messages(question)):
                line += piece
                if "\n" in line.lstrip() or len(line) > MAX_TERMS_CHARS:
                    break
        except LLMError:
            return ""
        return _first_line(line)[:MAX_TERMS_CHARS].strip()

    def fit(self, intent: Intent, hits: list[Hit]) -> list[Hit]:
        return fit(intent.query, hits, self.context, self.answer_tokens, self.excerpt)

    def stream(self, intent: Intent, hits: list[Hit]) -> Iterator[str]:
        yield from self.chat.stream(build_messages(intent.query, hits, self.excerpt))
