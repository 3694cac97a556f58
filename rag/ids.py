"""Paper identifiers (DOI, arXiv id, PubMed id): validated and normalised, and the only thing a link is built from.

A link shown to a user points at doi.org, arxiv.org or PubMed with an identifier that matched a strict
pattern here, so no text from a corpus file (an abstract, a `url` field) can become a link of its own.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

# Crossref's recommended pattern; it covers nearly every DOI and holds no character that needs escaping in a URL.
_DOI = re.compile(r"10\.[0-9]{4,9}/[-._;()/:a-z0-9]+")
_DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi:")
_ARXIV_NEW = re.compile(r"[0-9]{4}\.[0-9]{4,5}(?:v[0-9]+)?")
_ARXIV_OLD = re.compile(r"[a-z][a-z-]*(?:\.[A-Z]{2})?/[0-9]{7}(?:v[0-9]+)?")  # cs/0112017, math.AG/0309136
_ARXIV_PREFIXES = ("https://arxiv.org/abs/", "http://arxiv.org/abs/", "arxiv:")
_PMID = re.compile(r"[1-9][0-9]{0,8}")
_PUBMED = "https://pubmed.ncbi.nlm.nih.gov/"


def doi(text: str) -> str:
    """The bare lower-case DOI in `text` (bare, `doi:` or a doi.org URL), or "" when it is not one."""
    value = unquote(text.strip()).lower()
    for prefix in _DOI_PREFIXES:
        if value.startswith(prefix):
            value = value[len(prefix) :].strip()
            break
    return value if _DOI.fullmatch(value) else ""


def arxiv_id(text: str) -> str:
    """An arXiv id, new (2301.01234v2) or old style (cs/0112017), from bare text, `arXiv:` or an abs URL; else ""."""
    value = text.strip()
    for prefix in _ARXIV_PREFIXES:
        if value.lower().startswith(prefix):
            value = value[len(prefix) :].strip()
            break
    return value if _ARXIV_NEW.fullmatch(value) or _ARXIV_OLD.fullmatch(value) else ""


def pmid(text: str) -> str:
    """A PubMed id (digits only, no leading zero), or ""."""
    value = text.strip()
    return value if _PMID.fullmatch(value) else ""


def arxiv_base(identifier: str) -> str:
    """The id without its version, so 2301.01234v1 and 2301.01234v2 name the same paper."""
    return re.sub(r"v[0-9]+$", "", identifier)


def from_url(url: str) -> dict[str, str]:
    """The identifier a doi.org, arxiv.org or PubMed URL names ({"doi": ...} etc.); {} for any other URL."""
    parts = urlsplit(url.strip())
    host, path = parts.hostname or "", parts.path
    if parts.scheme not in ("http", "https"):
        return {}
    if host in ("doi.org", "dx.doi.org") and (found := doi(path.lstrip("/"))):
        return {"doi": found}
    if host in ("arxiv.org", "www.arxiv.org") and path.startswith("/abs/") and (found := arxiv_id(path[5:])):
        return {"arxiv_id": found}
    if host == "pubmed.ncbi.nlm.nih.gov" and (found := pmid(path.strip("/"))):
        return {"pmid": found}
    return {}


def link(doi_: str = "", arxiv: str = "", pubmed: str = "", url: str = "") -> str | None:
    """A link built from the first valid identifier (DOI, then arXiv id, then PMID), else from a `url` that
    names one of them; None otherwise. Every value is validated again here, so a stored record cannot
    smuggle in another link."""
    ids = {"doi": doi(doi_), "arxiv_id": arxiv_id(arxiv), "pmid": pmid(pubmed)}
    if not any(ids.values()):
        ids.update(from_url(url))
    if ids["doi"]:
        return f"https://doi.org/{ids['doi']}"
    if ids["arxiv_id"]:
        return f"https://arxiv.org/abs/{ids['arxiv_id']}"
    if ids["pmid"]:
        return f"{_PUBMED}{ids['pmid']}/"
    return None
