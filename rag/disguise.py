"""Planted text that hides what it says from word cues: other readings of a sentence, and other languages.

An order written backwards, in ROT13 or in leetspeak has the cues' words only once decoded, so
`readings` gives the decoded forms worth classifying again. `foreign` tells a sentence written in
another language than the English the rules read: an English abstract has no such sentence, and the
rules cannot see an order in it.

Pure functions over strings, standard library only.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path

from rag.text import STOPWORDS

TOKENIZER = Path(__file__).resolve().parent / "resources" / "minilm-tokenizer.json"
_TOKEN = re.compile(r"\S+")
_LONG_WORD = re.compile(r"[A-Za-z]{3,}")
_ADDRESS = re.compile(r"\S*[/@]\S*")  # URLs, paths and e-mail addresses: no language to tell
_CLAUSE = re.compile(r"[.!?;:\n\u3002\uff01\uff1f]")

_WORD = re.compile(r"[^\W\d_]+")
_LEET = re.compile(r"\b(?=[\w@$]*[A-Za-z])(?=[\w@$]*[013457@$])[\w@$]+\b|\b[013457]{2,}\b")
_DIGIT_LETTERS = [str.maketrans("013457@$", "oieasta" + "s"), str.maketrans("013457@$", "oleasta" + "s")]
# Words most frequent in running text of the languages a planted order is most often written in,
# none of them an English word.
_OTHER_STOPWORDS = frozenset(
    "le la les des du une est pour par sur dans avec ce cette qui que ou ne pas vous "
    "der die das und mit zu auf ist nicht ein eine dem den des sie wir ihr jede jeder diesem "
    "el los las y con del por para es una su como lo se debe cualquier "
    "il di della che gli con per non una sono questo ogni deve "
    "het een van en met niet zijn voor dat alle alleen "
    "os um uma com não para toda todo deve".split()
)


@cache
def _english() -> frozenset[str]:
    return frozenset(STOPWORDS.read_text().split())


def _common(text: str) -> int:
    """How many of the words of `text` are English function words."""
    english = _english()
    return sum(w.lower() in english for w in _WORD.findall(text))


def readings(sentence: str) -> list[str]:
    """The stretches of the sentence written backwards or in ROT13 (three or more words that are English
    words only once decoded), decoded, and the sentence with leetspeak digits read as letters: what
    an obedient model would read."""
    vocabulary = _vocabulary()
    unknown = [w for w in _LONG_WORD.findall(sentence.lower()) if w not in vocabulary]
    decoders = [d for d in (_reverse, _rot13) if sum(d(w) in vocabulary for w in unknown) >= 3]  # most sentences: none
    found = [decode(run) for decode in decoders for run in _encoded_runs(sentence, decode)]
    if len(_LEET.findall(sentence)) >= 3:
        found += [_LEET.sub(lambda m: m.group(0).translate(table), sentence) for table in _DIGIT_LETTERS]
    return found


def _reverse(text: str) -> str:
    return text[::-1]


def _rot13(text: str) -> str:
    return codecs.encode(text, "rot13")


def _encoded_runs(sentence: str, decode: Callable[[str], str]) -> list[str]:
    """Runs of tokens holding at least three words that `decode` turns into English ones; a token that
    tells nothing (short, a code, punctuation) neither breaks a run nor counts, and is part of it."""
    runs: list[str] = []
    run: list[tuple[re.Match, bool]] = []
    for token in [*_TOKEN.finditer(sentence), None]:
        encoded = _encoded(token.group(0), decode) if token else False
        if encoded is not False:
            run.append((token, bool(encoded)))  # type: ignore[arg-type]
            continue
        if sum(hit for _, hit in run) >= 3:
            runs.append(sentence[run[0][0].start() : run[-1][0].end()])
        run = []
    return runs


def _encoded(token: str, decode: Callable[[str], str]) -> bool | None:
    """True: an English word once decoded; False: one as written (or not one either way); None: too short to tell."""
    words = _LONG_WORD.findall(token)
    if len(words) != 1 or any(c.isdigit() for c in token):
        return None
    word = words[0].lower()
    return word not in _vocabulary() and decode(word) in _vocabulary()


@cache
def _vocabulary() -> frozenset[str]:
    """English words of three letters or more: the whole words of the MiniLM tokenizer's vocabulary."""
    vocab = json.loads(TOKENIZER.read_text(encoding="utf-8"))["model"]["vocab"]
    return frozenset(w for w in vocab if len(w) > 2 and w.isascii() and w.isalpha())


@lru_cache(maxsize=4096)  # asked of each sentence for the abstract's language, then again when classifying it
def foreign(sentence: str) -> bool:
    """Written, in some clause, in another language: a third or more of its letters of another script
    (Cyrillic, CJK, ...), or Latin words of which none is an English function word and two or more are
    another language's."""
    text = _ADDRESS.sub(" ", sentence)
    if text.isascii() and sum(w.lower() in _OTHER_STOPWORDS for w in _WORD.findall(text)) < 2:
        return False  # the usual sentence: no other script, and too few of another language's words
    return any(_foreign_clause(clause) for clause in _CLAUSE.split(text))


def _foreign_clause(clause: str) -> bool:
    letters = [c for c in clause if c.isalpha()]
    if len(letters) >= 6 and sum(
        not ("a" <= c.lower() <= "z" or "\u00c0" <= c <= "\u024f") for c in letters
    ) >= 0.3 * len(letters):
        return True
    words = [w.lower() for w in _WORD.findall(clause)]
    return len(words) >= 4 and _common(clause) == 0 and sum(w in _OTHER_STOPWORDS for w in words) >= 2
