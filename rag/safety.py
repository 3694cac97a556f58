"""Abstracts are untrusted: spot text addressed to an AI assistant, and make answers inert before output."""

from __future__ import annotations

import re

_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget) (all |any |the )?(previous|prior|above|earlier) (instructions|prompts?|rules)"
    r"|\b(reply|respond|answer) only with\b|\byou are now\b|\bsystem prompt\b",
    re.I,
)


def addresses_assistant(sentence: str) -> bool:
    return bool(_INSTRUCTION.search(sentence))


def sanitize(text: str) -> str:
    return text


def repeats_withheld(answer: str, withheld: list[str]) -> bool:
    return any(w.strip() and w.strip() in answer for w in withheld)


def terminal_safe(text: str) -> str:
    return text
