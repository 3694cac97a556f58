"""A fast path for a list of weighted regular expressions that rarely match.

Nearly every sentence matches no cue, and running all 43 patterns over it costs ~0.8 ms (0.13 ms
through the gates), paid for every paper a process shows for the first time. From each cue's parsed form we
read what any match must contain: a list of clauses, each a set of strings of which the match holds
at least one. A cue whose clauses the sentence does not all meet cannot match and is not run, so
the verdict is the same as running every pattern (a test holds the two equal).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any

_sre: Any = importlib.import_module(
    "re._parser"
)  # private, and untyped: tests/test_dependency_internals.py pins what is read

Clauses = tuple[frozenset[str], ...]
_ALNUM = re.compile(r"[^\W_]+")
_SEPARATORS = re.compile(r"[\W_]+")


def _fold(text: str) -> str:
    """One spelling per case class, so that `in` agrees with re.IGNORECASE (which pairs i, ı and İ)."""
    return text.casefold().replace("ı", "i").replace("\u0307", "")


def _strength(strings: frozenset[str]) -> tuple[int, int]:
    return min(map(len, strings)), -len(strings)


def _required(items: Iterable[tuple], word_start: bool = False) -> Clauses:
    """The clauses every match of the parsed sequence `items` meets (none when nothing is certain).
    A string that follows `\\b` (or `(?:\\b|(?<=_))`) is kept as " word", looked for at a word start."""
    clauses: list[frozenset[str]] = []
    run, starts = "", False
    for op, av in [*items, (None, None)]:  # the sentinel closes the last run of literals
        name = str(op)
        if name == "LITERAL":
            run, starts = (run + chr(av), starts) if run else (chr(av), word_start)
            continue
        if run:
            run = _fold(run)
            clauses.append(frozenset({" " + run if starts and _ALNUM.fullmatch(run) else run.lstrip()}))
        run = ""
        if name in ("SUBPATTERN", "ATOMIC_GROUP"):
            clauses += _required(av[-1] if name == "SUBPATTERN" else av, word_start)
        elif name == "BRANCH":  # one of the alternatives: the union of each one's strongest clause
            strongest = [max(_required(a, word_start), key=_strength, default=None) for a in av[1]]
            found = [s for s in strongest if s is not None]
            clauses += [frozenset().union(*found)] if len(found) == len(strongest) else []
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") and av[0] >= 1:
            clauses += _required(av[2], word_start)
        elif name == "ASSERT":  # a lookaround's text is in the sentence too
            clauses += _required(av[1])
        word_start = _word_start(name, av)
    return tuple(c for c in clauses if all(c))


def _word_start(name: str, av: Any) -> bool:
    """`\\b`, or a choice of `\\b` and "after an underscore": what follows starts a word of `spaced`."""
    if name == "BRANCH":
        return all(
            len(a) == 1 and (_word_start(str(a[0][0]), a[0][1]) or _after_underscore(str(a[0][0]), a[0][1]))
            for a in av[1]
        )
    return name == "AT" and str(av) == "AT_BOUNDARY"


def _after_underscore(name: str, av: Any) -> bool:
    return name == "ASSERT" and av[0] == -1 and list(av[1]) == [(_sre.LITERAL, ord("_"))]


def _gate(pattern: re.Pattern) -> tuple[frozenset[str], tuple[Clauses, ...]]:
    """What a match of `pattern` must contain: for each of its top-level alternatives, the clauses
    that alternative meets; and first, the strings of which any match holds one (a quick "no")."""
    parsed = list(_sre.parse(pattern.pattern, pattern.flags))
    alternatives = parsed[0][1][1] if len(parsed) == 1 and str(parsed[0][0]) == "BRANCH" else [parsed]
    gate = tuple(_selective(_required(a)) for a in alternatives)
    return (frozenset().union(*(clauses[0] for clauses in gate)) if all(gate) else frozenset()), gate


def _selective(clauses: Clauses) -> Clauses:
    """The strongest clause, and the others whose strings are not so short that most sentences hold them."""
    ranked = sorted(set(clauses), key=lambda c: (_strength(c), sorted(c)), reverse=True)
    return tuple(c for i, c in enumerate(ranked) if i == 0 or _strength(c)[0] >= 4)


def _trie(strings: Iterable[str]) -> str:
    """A regex matching the longest of `strings` that starts at a position (common prefixes shared)."""
    tree: dict = {}
    for s in strings:
        node = tree
        for ch in s:
            node = node.setdefault(ch, {})
        node[""] = {}

    def branch(node: dict) -> str:
        children = [re.escape(ch) + branch(child) for ch, child in sorted(node.items()) if ch]
        body = children[0] if len(children) == 1 else "(?:" + "|".join(children) + ")"
        return "" if not children else f"(?:{body})?" if "" in node else body

    return branch(tree)


Gate = tuple[frozenset[str], tuple[Clauses, ...]]


class Compiled:
    """The cues compiled, each with its gate, and the one pass that finds which gate strings a
    sentence holds. Built on first use (~90 ms): a search whose papers ingest marked clean never needs it."""

    def __init__(self, cues: list[tuple[int, re.Pattern]]) -> None:
        self.cues = cues
        self.gates: list[Gate] = [_gate(pattern) for _, pattern in cues]
        strings = sorted({s for _, gate in self.gates for clauses in gate for clause in clauses for s in clause})
        # Every position's longest gate string, found in one pass (the lookahead lets matches overlap) ...
        self.anywhere = re.compile(f"(?=({_trie(s for s in strings if s[0] != ' ')}))")
        self.at_word_start = re.compile(f"(?=({_trie(s for s in strings if s[0] == ' ')}))")
        # ... stands for every gate string inside it.
        self.inside = {s: frozenset(t for t in strings if t in s) for s in strings}

    def present(self, text: str) -> frozenset[str]:
        """The gate strings `text` holds, found once; then each cue's gate is set arithmetic."""
        spaced = " " + _fold(_SEPARATORS.sub(" ", text))  # word starts as `\b` sees them, before folding
        longest = set(self.anywhere.findall(_fold(text))) | set(self.at_word_start.findall(spaced))
        return frozenset().union(*(self.inside[s] for s in longest))

    def score(self, text: str) -> int:
        """Sum of the weights of the cues the normalised `text` matches."""
        present = self.present(text)
        return sum(
            weight
            for (weight, pattern), gate in zip(self.cues, self.gates)
            if may_match(gate, present) and pattern.search(text)
        )


def may_match(gate: Gate, present: frozenset[str]) -> bool:
    """False when `pattern.search` cannot find the cue in a sentence holding just the `present` strings."""
    some, alternatives = gate
    if some and some.isdisjoint(present):
        return False
    return any(all(not clause.isdisjoint(present) for clause in clauses) for clauses in alternatives)
