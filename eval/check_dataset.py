"""Validate the eval question sets and measure how much of each one BM25 alone already answers.

    python eval/check_dataset.py            # validate every eval/datasets/*.jsonl, print the table
    python eval/check_dataset.py --write    # also store each question's bm25_rank, fill in missing splits

A file whose records carry `turns` is a conversation file (conversations.jsonl): its records are
validated as conversations (below) and take no part in the BM25 table or in --write.

A "paraphrase" question that BM25 answers from shared key words does not test what it claims to,
and figures tuned on such questions look better than they are. So every answerable question
carries `bm25_rank`: the best rank of its gold papers when BM25 alone (the product's settings:
English stemming and stop words over title + abstract) searches the whole corpus with the raw
question. Exits 1 on any validation problem, 2 when a file or the corpus cannot be read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import numpy as np

from rag.corpus import load
from rag.dev.evaluate import KINDS
from rag.dev.metrics import ndcg_at_k, normalise
from rag.errors import CorpusError, UserError
from rag.types import Paper

STYLES = ("lexical", "paraphrase")
SPLITS = ("dev", "test")
REQUIRED = ("id", "question", "kind", "style", "gold", "must_mention", "split")
EXPECT_KEYS = ("count", "authors", "year", "date", "organisation")
CONV_REQUIRED = ("id", "turns", "follow", "style", "gold", "gold_previous", "must_mention", "split")
FOLLOWS = ("filter", "narrow", "it", "yesno", "new_topic")
TOP = 3  # a question "misses" when no gold paper is in BM25's top 3
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Record:
    """One question line and where it came from, for problem messages."""

    file: Path
    line: int
    data: dict

    @property
    def where(self) -> str:
        return f"{self.file.name}:{self.line}"

    @property
    def gold(self) -> list[str]:
        return self.data.get("gold") or []


class Lexical:
    """BM25 over title + abstract with the product's tokenisation, ranking papers like `rag search --method bm25`."""

    def __init__(self, papers: list[Paper]) -> None:
        import bm25s
        import Stemmer

        self.ids = sorted(p.paper_id for p in papers)
        text = {p.paper_id: f"{p.title}\n{p.abstract}" for p in papers}
        self._stemmer = Stemmer.Stemmer("english")
        self._bm25 = bm25s.BM25()
        corpus = bm25s.tokenize([text[i] for i in self.ids], stopwords="en", stemmer=self._stemmer, show_progress=False)
        self._bm25.index(corpus, show_progress=False)

    def ranking(self, query: str) -> list[str]:
        """Papers sharing at least one term with the query, best first; ties by paper id."""
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False)[
            0
        ]
        if not tokens:
            return []
        scores = np.asarray(self._bm25.get_scores(tokens), dtype=float)
        order = sorted(range(len(self.ids)), key=lambda i: (-scores[i], self.ids[i]))
        return [self.ids[i] for i in order if scores[i] > 0]


def best_rank(ranking: list[str], gold: list[str]) -> int | None:
    """1-based rank of the first gold paper, None when BM25 finds none of them."""
    wanted = set(gold)
    return next((r for r, pid in enumerate(ranking, 1) if pid in wanted), None)


# ---------------------------------------------------------------- reading and validation


def read_records(path: Path) -> tuple[list[Record], list[str]]:
    """Every non-blank line as a Record; a line that is not a JSON object is a problem, not a crash."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CorpusError(f"{path}: cannot read the question file ({e}); give a UTF-8 JSONL file") from None
    records, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path.name}:{n}: not JSON ({e.msg}); write one JSON object per line")
            continue
        if not isinstance(data, dict):
            problems.append(f"{path.name}:{n}: not a JSON object; write one question record per line")
            continue
        records.append(Record(path, n, data))
    return records, problems


def check_record(rec: Record, papers: dict[str, Paper]) -> list[str]:
    """Problems with one question: fields, kind/style/split values, gold ids, must_mention facts, expect."""
    d = rec.data
    missing = [f for f in REQUIRED if f not in d]
    if missing:
        return [f"{rec.where}: missing field(s) {', '.join(missing)}"]
    problems = []
    for field, allowed in (("kind", KINDS), ("style", STYLES), ("split", SPLITS)):
        if d[field] not in allowed:
            problems.append(f"{rec.where}: {field} {d[field]!r} is not one of {', '.join(allowed)}")
    if not isinstance(d["gold"], list) or not isinstance(d["must_mention"], list):
        return problems + [f"{rec.where}: gold and must_mention must be lists"]
    if len(set(d["gold"])) != len(d["gold"]):
        problems.append(f"{rec.where}: gold lists a paper twice")
    unknown = [g for g in d["gold"] if g not in papers]
    if unknown:
        problems.append(f"{rec.where}: gold id(s) {', '.join(map(str, unknown))} are not in the corpus")
    if (d["kind"] == "unanswerable") != (not d["gold"]):
        problems.append(f"{rec.where}: gold must be empty exactly when kind is unanswerable")
    if d["kind"] == "unanswerable" and d["must_mention"]:
        problems.append(f"{rec.where}: an unanswerable question has nothing to mention; empty must_mention")
    if d["kind"] != "unanswerable" and not d["must_mention"]:
        problems.append(f"{rec.where}: an answerable question needs at least one must_mention fact")
    gold = [papers[g] for g in d["gold"] if g in papers]
    problems += check_expect(rec, gold)
    if not unknown:
        problems += [
            f"{rec.where}: must_mention {fact!r} appears in no gold paper's {'text or metadata' if d['kind'] == 'metadata' else 'title or abstract'}"
            for fact in d["must_mention"]
            if not mentioned(str(fact), gold, d)
        ]
    return problems


def mentioned(fact: str, gold: list[Paper], d: dict) -> bool:
    """The fact as the answer must state it: in a gold title/abstract, or for metadata in its values."""
    sources = [f"{p.title} {p.abstract}" for p in gold]
    if d["kind"] == "metadata":
        sources += [v for p in gold for v in metadata_values(p)]
        sources += [str(v) for v in (d.get("expect") or {}).values()]
    return any(normalise(fact) in normalise(s) for s in sources)


def metadata_values(paper: Paper) -> list[str]:
    return [
        str(v)
        for v in (paper.year, paper.authors, paper.date_raw, paper.date, paper.organisation)
        if v not in (None, "")
    ]


def check_expect(rec: Record, gold: list[Paper]) -> list[str]:
    """`expect` holds exact answers; each must agree with the gold papers' metadata."""
    expect = rec.data.get("expect")
    if expect is None:
        return []
    if rec.data["kind"] != "metadata" or not isinstance(expect, dict) or not expect:
        return [f'{rec.where}: expect belongs only on metadata questions, as an object such as {{"count": 4}}']
    problems = [
        f"{rec.where}: expect key {k!r} is not one of {', '.join(EXPECT_KEYS)}" for k in expect if k not in EXPECT_KEYS
    ]
    if "count" in expect and expect["count"] != len(gold):
        problems.append(f"{rec.where}: expect count {expect['count']} but gold lists {len(gold)} papers")
    for key in ("authors", "year", "date", "organisation"):
        if key in expect:
            values = {getattr(p, key) for p in gold}
            if values != {expect[key]}:
                problems.append(
                    f"{rec.where}: expect {key} {expect[key]!r} but the gold papers have {sorted(map(str, values))}"
                )
    return problems


def check_ids(records: list[Record]) -> list[str]:
    """Ids must be unique across every question file, so results from several files can be merged."""
    seen: dict[str, str] = {}
    problems = []
    for rec in records:
        qid = str(rec.data.get("id"))
        if qid in seen:
            problems.append(f"{rec.where}: id {qid!r} already used at {seen[qid]}")
        seen.setdefault(qid, rec.where)
    return problems


def check_ranks(records: list[Record], ranks: dict[int, int | None]) -> list[str]:
    """A stored bm25_rank that no longer matches the corpus would mislead whoever reads it."""
    return [
        f"{rec.where}: bm25_rank is {rec.data.get('bm25_rank', 'missing')}, BM25 now gives {ranks[id(rec)]}; run with --write"
        for rec in records
        if rec.data.get("bm25_rank", "missing") != ranks[id(rec)]
    ]


# ---------------------------------------------------------------- conversations


def is_conversation_file(records: list[Record]) -> bool:
    """A file of multi-turn conversations: its records carry `turns` instead of `question`."""
    return any("turns" in r.data for r in records)


def check_conversation(rec: Record, papers: dict[str, Paper]) -> list[str]:
    """Problems with one conversation: fields and types, follow/style/split values, gold ids, and the
    rules each follow-up type sets on gold, gold_previous, expect, expect_none and missing."""
    d = rec.data
    missing = [f for f in CONV_REQUIRED if f not in d]
    if missing:
        return [f"{rec.where}: missing field(s) {', '.join(missing)}"]
    problems = []
    if not isinstance(d["id"], str) or not d["id"]:
        problems.append(f"{rec.where}: id must be a non-empty string")
    turns = d["turns"]
    if (
        not isinstance(turns, list)
        or not 2 <= len(turns) <= 3
        or not all(isinstance(t, str) and t.strip() for t in turns)
    ):
        problems.append(f"{rec.where}: turns must be a list of 2 or 3 non-empty question strings")
    for field, allowed in (("follow", FOLLOWS), ("style", STYLES), ("split", SPLITS)):
        if d[field] not in allowed:
            problems.append(f"{rec.where}: {field} {d[field]!r} is not one of {', '.join(allowed)}")
    lists = ("gold", "gold_previous", "must_mention")
    if not all(isinstance(d[f], list) for f in lists):
        return problems + [f"{rec.where}: {', '.join(lists)} must be lists"]
    if not all(isinstance(f, str) and f for f in d["must_mention"]):
        problems.append(f"{rec.where}: must_mention must hold non-empty strings")
    for field in ("gold", "gold_previous"):
        if not all(isinstance(g, str) for g in d[field]):
            problems.append(f"{rec.where}: {field} must hold paper id strings")
            continue
        if len(set(d[field])) != len(d[field]):
            problems.append(f"{rec.where}: {field} lists a paper twice")
        unknown = [g for g in d[field] if g not in papers]
        if unknown:
            problems.append(f"{rec.where}: {field} id(s) {', '.join(unknown)} are not in the corpus")
    if problems:
        return problems
    follow, gold, previous = d["follow"], d["gold"], d["gold_previous"]
    if not previous:
        problems.append(f"{rec.where}: gold_previous is empty; the earlier turns must be answerable")
    expect_none = d.get("expect_none", False)
    if expect_none not in (True, False):
        problems.append(f"{rec.where}: expect_none must be true or absent")
    elif expect_none != (not gold):
        problems.append(f"{rec.where}: gold must be empty exactly when expect_none is true")
    elif expect_none and follow not in ("filter", "narrow"):
        problems.append(f"{rec.where}: expect_none belongs only on filter and narrow conversations")
    if expect_none and d["must_mention"]:
        problems.append(f"{rec.where}: an expect_none answer names no paper; empty must_mention")
    if follow in ("filter", "narrow") and not set(gold) <= set(previous):
        problems.append(
            f"{rec.where}: a {follow} answer keeps some of the previous papers; gold must be a subset of gold_previous"
        )
    if follow in ("it", "yesno") and (len(gold) != 1 or gold != previous):
        problems.append(
            f"{rec.where}: an {follow} turn is about the one previous paper; gold and gold_previous must be that same single paper"
        )
    if follow == "new_topic" and set(gold) & set(previous):
        problems.append(f"{rec.where}: a new_topic answer starts afresh; gold shares papers with gold_previous")
    if "expect" in d and follow != "yesno":
        problems.append(f"{rec.where}: expect belongs only on yesno conversations")
    if follow == "yesno" and d.get("expect") not in ("yes", "no"):
        problems.append(f'{rec.where}: a yesno conversation needs expect "yes" or "no"')
    if "missing" in d:
        if d["missing"] is not True or follow != "it":
            problems.append(f"{rec.where}: missing belongs only on it conversations, as true")
        elif d["must_mention"]:
            problems.append(f"{rec.where}: a missing figure cannot be mentioned; empty must_mention")
    # a filter keeps papers by their metadata, so a year may be a fact to mention; other facts are in the text
    as_kind = {"kind": "metadata" if follow == "filter" else "text"}
    where = "text or metadata" if follow == "filter" else "title or abstract"
    problems += [
        f"{rec.where}: must_mention {fact!r} appears in no gold paper's {where}"
        for fact in d["must_mention"]
        if isinstance(fact, str) and not mentioned(fact, [papers[g] for g in gold], as_kind)
    ]
    return problems


def conversation_table(records: list[Record]) -> list[str]:
    """One row per follow-up type and a total: conversations, dev/test, three-turn, expect_none, missing."""
    head = ["follow", "conversations", "dev", "test", "three-turn", "expect_none", "missing"]
    rows = [head, ["---"] * len(head)]
    for follow in (*FOLLOWS, "all"):
        group = [r for r in records if follow in ("all", r.data["follow"])]
        splits = Counter(r.data["split"] for r in group)
        rows.append(
            [
                follow,
                len(group),
                splits["dev"],
                splits["test"],
                sum(len(r.data["turns"]) == 3 for r in group),
                sum(bool(r.data.get("expect_none")) for r in group),
                sum(bool(r.data.get("missing")) for r in group),
            ]
        )
    return ["| " + " | ".join(map(str, row)) + " |" for row in rows]


# ---------------------------------------------------------------- splits and writing


def stable_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def assign_splits(records: list[Record]) -> None:
    """Give each record without a split the side its file's (kind, style) group has fewer of.

    Records are taken in the order of a hash of their id, so the assignment is the same on every
    run and machine, and records that already have a split never move.
    """
    counts: dict[tuple, Counter] = defaultdict(Counter)
    for rec in records:
        if rec.data.get("split") in SPLITS:
            counts[stratum(rec)][rec.data["split"]] += 1
    for rec in sorted(
        (r for r in records if r.data.get("split") not in SPLITS), key=lambda r: stable_hash(str(r.data.get("id")))
    ):
        c = counts[stratum(rec)]
        rec.data["split"] = min(SPLITS, key=lambda s: (c[s], s))
        c[rec.data["split"]] += 1


def stratum(rec: Record) -> tuple[str, object, object]:
    return (rec.file.name, rec.data.get("kind"), rec.data.get("style"))


def write_file(path: Path, records: list[Record]) -> None:
    """Rewrite one file in place, one record per line, keys in their existing order, non-ASCII kept."""
    path.write_text("".join(json.dumps(r.data, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


# ---------------------------------------------------------------- the table


def table(records: list[Record], rankings: dict[int, list[str]]) -> list[str]:
    """One row per file, style and kind, plus a row per file and style and one per file."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for rec in records:
        f, k, s = rec.file.name, rec.data["kind"], rec.data["style"]
        for key in ((f, s, k), (f, s, "all"), (f, "all", "all")):
            groups[key].append(rec)
    head = ["file", "style", "kind", "questions", "dev", "test", "answerable", f"miss top-{TOP}", "bm25 nDCG@10"]
    rows = [head, ["---"] * len(head)]
    for key in sorted(groups, key=lambda k: (k[0], k[1] == "all", k[1], k[2] == "all", k[2])):
        group = groups[key]
        splits = Counter(r.data["split"] for r in group)
        answerable = [r for r in group if r.gold]
        misses = sum(1 for r in answerable if (best_rank(rankings[id(r)], r.gold) or TOP + 1) > TOP)
        ndcg = mean(ndcg_at_k(rankings[id(r)], set(r.gold), 10) for r in answerable) if answerable else None
        rows.append(
            [
                *key,
                len(group),
                splits["dev"],
                splits["test"],
                len(answerable),
                misses if answerable else "-",
                f"{ndcg:.3f}" if ndcg is not None else "-",
            ]
        )
    return ["| " + " | ".join(map(str, row)) + " |" for row in rows]


# ---------------------------------------------------------------- entry point


def run(paths: list[Path], corpus_path: Path, write: bool) -> int:
    corpus = load([corpus_path])
    if not corpus.papers:
        raise CorpusError(f"{corpus_path}: no papers found; give the corpus the questions were written for")
    papers = {p.paper_id: p for p in corpus.papers}
    per_file, conv_files, problems = {}, {}, []
    for path in paths:
        found_records, found = read_records(path)
        (conv_files if is_conversation_file(found_records) else per_file)[path] = found_records
        problems += found
    records = [r for recs in per_file.values() for r in recs]
    conversations = [r for recs in conv_files.values() for r in recs]
    if write:
        assign_splits(records)
    problems += check_ids(records + conversations)
    for rec in records:
        problems += check_record(rec, papers)
    for rec in conversations:
        problems += check_conversation(rec, papers)
    lexical = Lexical(corpus.papers)
    rankings = {id(r): lexical.ranking(str(r.data.get("question", ""))) for r in records}
    ranks = {id(r): best_rank(rankings[id(r)], r.gold) if r.gold else None for r in records}
    if write:
        for rec in records:
            rec.data["bm25_rank"] = ranks[id(rec)]
        for path, recs in per_file.items():
            write_file(path, recs)
    else:
        problems += check_ranks(records, ranks)
    valid = [
        r
        for r in records
        if all(f in r.data for f in REQUIRED) and r.data["kind"] in KINDS and r.data["style"] in STYLES
    ]
    print("\n".join(table(valid, rankings)))
    if conv_files:
        valid_conv = [r for r in conversations if not check_conversation(r, papers)]
        print()
        print("\n".join(conversation_table(valid_conv)))
    for line in problems:
        print(line, file=sys.stderr)
    counts = f"{len(records)} questions" + (f" and {len(conversations)} conversations" if conv_files else "")
    print(f"{counts} in {len(paths)} file(s), {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="question files (default: eval/datasets/*.jsonl)")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus", help="corpus the gold ids refer to")
    parser.add_argument("--write", action="store_true", help="store bm25_rank and fill in missing splits")
    args = parser.parse_args(argv)
    paths = args.files or sorted((ROOT / "eval" / "datasets").glob("*.jsonl"))
    try:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing or not paths:
            raise CorpusError(
                f"no such question file: {', '.join(missing) or 'eval/datasets/*.jsonl'}; give JSONL question files"
            )
        if not args.corpus.exists():
            raise CorpusError(f"{args.corpus}: no such corpus; pass --corpus with the folder the gold ids refer to")
        return run(paths, args.corpus, args.write)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
