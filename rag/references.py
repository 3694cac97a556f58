"""Citations out: the papers an answer cites as BibTeX, and the answer as Markdown with a reference list.

Titles and venues come from corpus files, so they are escaped for the output's syntax (LaTeX by
bibtexparser's encoder, Markdown here); a link is only ever one built from a validated identifier.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from typing import TYPE_CHECKING

import bibtexparser
from bibtexparser.library import Library
from bibtexparser.middlewares import LatexEncodingMiddleware
from bibtexparser.model import Block, Entry, Field

if TYPE_CHECKING:
    from rag.types import Answer, Paper


def answer_json(answer: Answer) -> dict:
    """An answer's JSON with the BibTeX of the papers it cites, as every front door returns it."""
    return answer.to_json() | {"bibtex": bibtex([p for _, p in answer.cited()])}


def bibtex(papers: list[Paper]) -> str:
    """BibTeX entries for `papers`, in order, with keys that are the same for the same papers in every run."""
    keys = cite_keys(papers)
    text_entries: list[Block] = [
        Entry("article" if p.venue else "misc", key, _text_fields(p)) for p, key in zip(papers, keys)
    ]
    library = LatexEncodingMiddleware().transform(Library(text_entries))
    for entry, paper in zip(library.entries, papers):
        entry.fields.extend(_id_fields(paper))  # verbatim fields: `\_` in a DOI would be taken literally
    return bibtexparser.write_string(library) if papers else ""


def cite_keys(papers: list[Paper]) -> list[str]:
    """`<first word of the title><year>`, plus a hash of the paper id on every paper whose key is shared,
    so a key does not depend on which other papers are in the file."""
    base = [(_word(p.title) or _word(p.abstract) or "paper") + (str(p.year) if p.year else "") for p in papers]
    shared = {k for k, n in Counter(base).items() if n > 1}
    suffixes = ["-" + hashlib.sha1(p.paper_id.encode()).hexdigest()[:4] for p in papers]
    return [k + suffix if k in shared else k for k, suffix in zip(base, suffixes)]


def _word(text: str) -> str:
    """The first word's ASCII letters and digits, lower case (`Öl` -> `ol`); "" when no word has any."""
    for word in text.split():
        ascii_word = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
        if cleaned := re.sub(r"[^a-z0-9]", "", ascii_word.lower()):
            return cleaned[:30]
    return ""


def _text_fields(p: Paper) -> list[Field]:
    fields = [Field("title", p.display_title)]
    if p.venue:
        fields.append(Field("journal", p.venue))
    if p.year:
        fields.append(Field("year", str(p.year)))
    return fields


def _id_fields(p: Paper) -> list[Field]:
    """Identifiers and the link: all validated (`rag.ids`), so they need no escaping."""
    fields = [Field("doi", p.doi)] if p.doi else []
    if p.arxiv_id:
        fields += [Field("eprint", p.arxiv_id), Field("archiveprefix", "arXiv")]
    if p.pmid:
        fields.append(Field("pmid", p.pmid))
    if p.link:
        fields.append(Field("url", p.link))
    return fields


_INLINE = re.compile(r"([\\`*_{}\[\]<>!|~])")  # with [ and ] escaped, a ( can start no link
_LINE_START = re.compile(r"^(\s*)(?:([#+\-=])|([0-9]+)([.)]))", re.M)  # headings, list items, rules


def md_escape(text: str) -> str:
    """Text that Markdown shows as written: no link, emphasis, heading or HTML can come from a corpus file."""
    return _LINE_START.sub(_escape_line_start, _INLINE.sub(r"\\\1", text))


def _escape_line_start(m: re.Match) -> str:
    indent, mark, number, dot = m.groups()
    return indent + ("\\" + mark if mark else number + "\\" + dot)


def markdown(answer: Answer) -> str:
    """The answer (its own list bullets kept), then `## References`: each cited paper's [n], title, year and
    link (a bullet list, since a numbered one would renumber [1], [3] as 1, 2)."""
    lines = [("- " + md_escape(ln[2:])) if ln.startswith("- ") else md_escape(ln) for ln in answer.text.splitlines()]
    lines.append("")
    cited = answer.cited()
    if cited:
        lines += ["## References", ""]
        for n, paper in cited:
            year = f" ({paper.year})" if paper.year else ""
            link = f" <{paper.link}>" if paper.link else ""
            lines.append(f"- \\[{n}\\] {md_escape(paper.display_title)}{year}.{link}")
    if answer.notice:
        lines += ["", md_escape(answer.notice)]
    return "\n".join(lines) + "\n"
