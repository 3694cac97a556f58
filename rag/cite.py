"""Citation checking by code: every [n] must name a given source and be backed by one of its sentences."""

from __future__ import annotations

import re

from rag.safety import WITHHELD, gives_order, repeats_withheld
from rag.text import plain_sentence_spans, sentence_spans, terms
from rag.tuned import SUPPORT_THRESHOLD
from rag.types import Citation, Hit, Paper

MARKER = re.compile(r"\[(\d+(?:\s*[-–,;]\s*\d+)*)\]")
LEADING_MARKERS = re.compile(r"^\s*(?:\[\d+\]\s*)+")
BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
LABEL = re.compile(r"^\s*([^:\n]{1,200}?):\s")  # "COAT: ..." / "Title: ..." at the start of a claim
# After a list bullet, a line whose paper's name a small model left out: "[2]: what it reports",
# ": what it reports [2]", or markers only ("[2]").
UNNAMED = re.compile(rf"(?:\[\d+\]\s*)?:\s*|(?=(?:{MARKER.pattern}\s*)+$)")
NAMELESS = re.compile(r"\s*\[\d+\]\s*:\s*")  # a line opening "[1]: what it reports", no bullet
MAX_RANGE = 50
REPEATED_MARKER = re.compile(r"(\[\d+\])(?:\s*\1)+")  # "[3] [3] [3] ...": a small model looping
CUT_MARKER = re.compile(r"\s*\[\d*$")  # "... [3": an answer cut off inside a marker
# A code-like string (letters and digits mixed, e.g. a planted "CANARY-7f3a9"): a claim may carry one only if its source does.
CODE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{6,}(?![\w-])")


def claim_spans(text: str) -> list[tuple[int, int]]:
    """Sentences of the answer, each one claim; in a list line a sentence without a marker of its
    own joins the next one, so "- X: a 1.4x speedup. Less memory [1]" is one cited claim.

    A marker written after the full stop ("... speedup. [1]") belongs to the sentence before it; one that
    opens a line with no sentence before it ("[1] rStar-Math reaches 90.0%.") cites the sentence it opens.
    """
    spans: list[tuple[int, int]] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        bullet = BULLET.match(line)
        skip = bullet.end() if bullet else 0
        pending: int | None = None
        for s, e in plain_sentence_spans(line[skip:]):
            s, e = s + skip, e + skip
            lead = LEADING_MARKERS.match(line[s:e])
            opens = (
                lead and pending is None and not (spans and offset <= spans[-1][0]) and line[s + lead.end() : e].strip()
            )
            if lead and not opens:
                if pending is not None:
                    spans.append((offset + pending, offset + s + lead.end()))
                    pending = None
                elif spans and offset <= spans[-1][0] and spans[-1][1] <= offset + s:
                    spans[-1] = (spans[-1][0], offset + s + lead.end())
                s += lead.end()
            if not line[s:e].strip():
                continue
            if bullet and not MARKER.search(line[s:e]):
                pending = s if pending is None else pending
                continue
            spans.append((offset + (s if pending is None else pending), offset + e))
            pending = None
        if pending is not None:
            spans.append((offset + pending, offset + len(line.rstrip())))
        offset += len(line)
    return spans


def _numbers(group: str) -> list[int]:
    """'1, 3' -> [1, 3]; '2-4' -> [2, 3, 4] (a range longer than MAX_RANGE keeps its ends only)."""
    nums: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group):
        ends = [int(x) for x in re.split(r"\s*[-–]\s*", part)]
        lo, hi = ends[0], ends[-1]
        nums += list(range(lo, hi + 1)) if 0 <= hi - lo <= MAX_RANGE else ends
    return nums


def strip_invalid(text: str, n_sources: int) -> tuple[str, list[int]]:
    """Remove citation numbers that name no given source; return the cleaned text and what was removed."""
    removed: list[int] = []

    def keep(m: re.Match) -> str:
        nums = _numbers(m.group(1))
        good = [n for n in nums if 1 <= n <= n_sources]
        removed.extend(n for n in nums if not 1 <= n <= n_sources)
        return "".join(f"[{n}]" for n in dict.fromkeys(good))

    return MARKER.sub(keep, text), removed


def metadata_text(paper: Paper) -> str:
    """What a claim may cite besides the abstract: date, authors count, organisation."""
    parts = [paper.date_raw]
    if paper.authors:
        parts.append(f"{paper.authors} authors")
    if paper.organisation:
        parts.append(paper.organisation)
    return " ".join(parts)


def _body(claim: str, paper: Paper) -> str:
    """The claim without its markers and without the words that only name the paper (its title, or a
    leading "Name:" label whose words the paper itself contains): naming is not evidence."""
    body = MARKER.sub(" ", claim)
    if paper.title:
        body = re.sub(re.escape(paper.title), " ", body, flags=re.I)
    label = LABEL.match(body)
    if label and set(terms(label.group(1))) <= set(terms(f"{paper.title} {paper.abstract}")):
        body = body[label.end() :]
    return body


def _name_unnamed(text: str, sources: list[Hit]) -> str:
    """A list line without the paper's name ("- [2]", "- : a 1.4x speedup [2]", "- [2]: a 1.4x
    speedup"), or a line in the place of the name ("[2]: a 1.4x speedup"), gets the title of the source
    its first marker names, and keeps a citation: the line says which paper fits, and the reader should
    not have to look it up. Markers are valid here (`strip_invalid` ran first)."""
    lines = []
    for line in text.splitlines(keepends=True):
        content = line.rstrip("\r\n")
        bullet = BULLET.match(content)
        start = bullet.end() if bullet else 0
        unnamed = UNNAMED.match(content, start) if bullet else NAMELESS.match(content)
        first = MARKER.search(content, start) if unnamed else None
        if first is None or unnamed is None:
            lines.append(line)
            continue
        n = _numbers(first.group(1))[0]
        body = content[unnamed.end() :]
        cited = body if MARKER.search(body) else f"{body} [{n}]"
        title = sources[n - 1].paper.display_title
        lines.append(f"{content[:start]}{title}{': ' if unnamed.group() else ' '}{cited}{line[len(content) :]}")
    return "".join(lines)


def best_sentence(claim: str, paper: Paper) -> tuple[float, int, int]:
    """(support, start, end) of the abstract sentence that best backs `claim`.

    Support is the share of the claim's content words (stemmed) found in that sentence or in the
    paper's metadata: a crude test, but one that a fabricated claim rarely passes. A claim of several
    sentences (a list line that retells the abstract) may be backed sentence by sentence instead. A
    claim that only names the paper ("- COAT [1]" in a list) cites it: full support, quoting its
    opening sentence.
    """
    body = _body(claim, paper)
    wanted = set(terms(body))
    spans = sentence_spans(paper.abstract, paper.spans) or [(0, len(paper.abstract))]
    if not wanted:
        named = bool(set(terms(MARKER.sub(" ", claim))))
        return (1.0 if named else 0.0), spans[0][0], spans[0][1]
    context = set(terms(metadata_text(paper)))
    quotable = [
        (start, end, set(terms(paper.abstract[start:end])) | context)
        for start, end in spans
        if WITHHELD not in paper.abstract[start:end]
    ]
    best = (-1.0, 0, 0)
    for start, end, words in quotable:  # a withheld sentence is never a quote
        got = len(wanted & words) / len(wanted)
        if got > best[0]:
            best = (got, start, end)
    parts = [p for p in (set(terms(body[a:b])) for a, b in plain_sentence_spans(body)) if p]
    if len(parts) > 1 and quotable:
        each = sum(max(len(part & words) for _, _, words in quotable) for part in parts) / sum(map(len, parts))
        best = (max(best[0], each), best[1], best[2])
    return best


PLANTED = (
    "[A sentence of the answer was removed: it gave an order, repeated withheld text, or held a code no source has.]"
)


def drop_planted(text: str, sources: list[Hit], question: str = "") -> str:
    """The answer with each sentence replaced by PLANTED that reads as an order, repeats most of a sentence
    withheld from its sources, or carries a code-like string found neither in the question nor in what the
    sources show (their withheld sentences are not shown): what a model obeying planted text adds, and no
    source backs."""
    known = " ".join([question, *(f"{h.paper.title} {h.paper.abstract}" for h in sources)]).lower()
    withheld = [sentence for h in sources for sentence in h.withheld]
    pieces, last = [], 0
    for start, end in claim_spans(text):
        body = MARKER.sub(" ", text[start:end])
        if (
            gives_order(body[len(m.group(0)) if (m := LABEL.match(body)) else 0 :])
            or any(code.lower() not in known for code in CODE.findall(body))
            or repeats_withheld(body, withheld)
        ):
            pieces += [text[last:start], PLANTED]
            last = end
    return "".join(pieces) + text[last:]


def check(text: str, sources: list[Hit], question: str = "") -> tuple[str, list[Citation], list[int]]:
    """Clean `text` of invalid citations, of a model's looping markers and of planted sentences (`drop_planted`),
    and check each remaining [n] against source n."""
    text, removed = strip_invalid(CUT_MARKER.sub("", text), len(sources))
    text = REPEATED_MARKER.sub(r"\1", text)
    text = drop_planted(text, sources, question)
    text = _name_unnamed(text, sources)
    citations: list[Citation] = []
    for start, end in claim_spans(text):
        claim = text[start:end].strip()
        if PLANTED in claim:
            continue
        for n in dict.fromkeys(int(x) for x in re.findall(r"\[(\d+)\]", claim)):
            paper = sources[n - 1].paper
            support, q0, q1 = best_sentence(claim, paper)
            foreign = _foreign_codes(claim, paper)
            citations.append(
                Citation(
                    n=n,
                    paper_id=paper.paper_id,
                    title=paper.display_title,
                    claim=claim,
                    quote=paper.abstract[q0:q1],
                    quote_start=q0,
                    quote_end=q1,
                    support=round(support, 3),
                    supported=support >= SUPPORT_THRESHOLD and not foreign,
                )
            )
    return text, citations, removed


def _foreign_codes(claim: str, paper: Paper) -> list[str]:
    """Code-like strings of the claim that its source does not hold (text planted in a withheld sentence
    and repeated by a model is not in the source as the answer sees it)."""
    source = f"{paper.title} {paper.abstract}".lower()
    return [code for code in CODE.findall(MARKER.sub(" ", claim)) if code.lower() not in source]
