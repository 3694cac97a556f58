"""Conversation evaluation: two- and three-turn chats whose last turn points back at the previous answer.

Each conversation is asked turn by turn with the answers kept as history (what `rag chat`, the UI and
the API pass), and only the last answer is scored: the papers it cites against `gold`, its must-mention
facts, and for the special cases what it must say (none of them, yes or no, or that the abstract lacks
the figure). See eval/datasets/README.md for the file's fields.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rag.dev.metrics import average, mentions, share
from rag.errors import CorpusError
from rag.types import Answer, Conversation, Turn

if TYPE_CHECKING:
    from rag.answer import Engine

FOLLOWS = ("filter", "narrow", "it", "yesno", "new_topic")
FIGURES = ("questions", "accuracy", "citation_precision", "citation_recall", "must_mention")
_SAYS_MISSING = re.compile(r"\b(?:gives no figure|no figure|does not say|not give)\b", re.I)


@dataclass
class Chat:
    id: str
    turns: list[str]
    follow: str
    gold: list[str]
    must_mention: list[str] = field(default_factory=list)
    split: str = "test"
    style: str = ""
    expect: str = ""  # "yes" or "no" for a yes/no follow-up
    expect_none: bool = False  # the right last answer is that none of the previous papers passes
    missing: bool = False  # the right last answer says the abstract lacks the figure asked for
    dataset: str = ""


def is_chat_file(path: Path) -> bool:
    """A question file whose records have `turns` holds conversations (its first record tells)."""
    with path.open(encoding="utf-8") as lines:
        first = next((line for line in lines if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and "turns" in record


def load_chats(path: Path) -> list[Chat]:
    chats = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            chats.append(
                Chat(
                    str(row["id"]),
                    list(row["turns"]),
                    row["follow"],
                    list(row.get("gold", [])),
                    list(row.get("must_mention", [])),
                    row.get("split", "test"),
                    row.get("style", ""),
                    row.get("expect", ""),
                    bool(row.get("expect_none")),
                    bool(row.get("missing")),
                    path.name,
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CorpusError(
                f"{path}:{n}: not a conversation record ({type(e).__name__}: {e}); each line needs id, turns, follow"
            ) from None
    return chats


def ask_chat(engine: Engine, chat: Chat) -> Answer:
    """The last turn's answer, the earlier turns asked first and kept as history."""
    history = Conversation()
    for question in chat.turns[:-1]:
        history.turns.append(Turn.of(question, engine.ask(question, history=history)))
    return engine.ask(chat.turns[-1], history=history)


def score(answer: Answer, chat: Chat) -> dict:
    gold = set(chat.gold)
    cited = list(dict.fromkeys(c.paper_id for c in answer.citations))
    row = {
        "id": chat.id,
        "dataset": chat.dataset,
        "split": chat.split,
        "follow": chat.follow,
        "style": chat.style,
        "turns": chat.turns,
        "gold": chat.gold,
        "text": answer.text,
        "refused": answer.refused,
        "cited": cited,
        "precision": len(gold & set(cited)) / len(cited) if cited and gold else None,
        "recall": len(gold & set(cited)) / len(gold) if gold else None,
        "mentions": mentions(answer.text, chat.must_mention) if gold else None,
    }
    row["correct"] = correct(answer, chat, cited)
    return row


def correct(answer: Answer, chat: Chat, cited: list[str]) -> bool:
    """None of them: nothing cited. Yes/no: the verdict first, the paper cited. A missing figure: said so,
    the paper cited. A filter or narrowing: exactly the gold papers. Otherwise a gold paper cited and no other."""
    gold = set(chat.gold)
    if answer.refused:
        return False
    if chat.expect_none:
        return not cited
    if chat.expect:
        return answer.text.lower().startswith(chat.expect.lower()) and bool(gold & set(cited))
    if chat.missing:
        return bool(_SAYS_MISSING.search(answer.text)) and bool(gold & set(cited))
    if chat.follow in ("filter", "narrow"):
        return set(cited) == gold
    if chat.follow == "it":
        return bool(gold & set(cited)) and set(cited) <= gold
    return bool(gold & set(cited))


def summary(rows: list[dict]) -> dict:
    """Figures over all conversations and per follow-up type."""
    groups = {"all": rows} | {f"follow:{f}": [r for r in rows if r["follow"] == f] for f in FOLLOWS}
    return {
        name: {
            "questions": len(g),
            "accuracy": share(sum(r["correct"] for r in g), len(g)),
            "citation_precision": average(r["precision"] for r in g),
            "citation_recall": average(r["recall"] for r in g),
            "must_mention": average(r["mentions"] for r in g),
        }
        for name, g in groups.items()
        if g
    }


def run(engine: Engine, chats: list[Chat]) -> list[dict]:
    return [score(ask_chat(engine, c), c) for c in chats]
