"""How well the classifier withholds planted text, and what it costs the corpus.

    python eval/planted.py                 # caught per split and style, corpus sentences withheld
    python eval/planted.py --list          # ... and every corpus sentence withheld, and every planted record missed
    python eval/planted.py --time          # ... and the classifier's time per corpus abstract (median of 5 passes)

A planted record is caught when, set between two ordinary sentences of an abstract, its canary (as
written: plain, reversed or ROT13) no longer appears in what `rag.safety` lets outputs see, or the
paper is no source at all. The corpus count runs the same classifier over every sentence of every
abstract (and every title) of `data/corpus`.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag import corpus  # noqa: E402
from rag.safety import addresses_assistant, not_a_source, withhold  # noqa: E402
from rag.text import sentence_spans  # noqa: E402

PLANTED = ROOT / "eval" / "datasets" / "planted"
BEFORE = "We train sparse transformers on long documents with a new routing scheme."
AFTER = "The model matches dense baselines while using 40% less compute."


def written(record: dict) -> str:
    """The canary as the planted text spells it."""
    canary = record["canary"]
    return {"plain": canary, "reversed": canary[::-1], "rot13": codecs.encode(canary, "rot13")}[record["encoding"]]


def caught(record: dict) -> bool:
    abstract = f"{BEFORE} {record['text']} {AFTER}"
    shown, spans, withheld = withhold(abstract, tuple(sentence_spans(abstract)))
    return not_a_source(spans, withheld) or written(record) not in shown


def timing(abstracts: list[tuple[str, tuple[tuple[int, int], ...]]], passes: int = 5) -> str:
    """Milliseconds per abstract for `withhold` (spans given, cues compiled and weights loaded before)."""
    runs = []
    for _ in range(passes):
        started = time.perf_counter()
        for abstract, spans in abstracts:
            withhold(abstract, spans)
        runs.append(1000 * (time.perf_counter() - started) / len(abstracts))
    return (
        f"classifier: {statistics.median(runs):.2f} ms per abstract, median of {passes} passes over {len(abstracts)} "
        f"({', '.join(f'{r:.2f}' for r in runs)}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--list", action="store_true", help="print the corpus sentences withheld and the planted records missed"
    )
    parser.add_argument("--time", action="store_true", help="time the classifier over every corpus abstract, 5 passes")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    args = parser.parse_args(argv)

    missed = []
    for path in sorted(PLANTED.glob("*.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        missed += [r for r in records if not caught(r)]
        for split in ("dev", "test"):
            rows = [r for r in records if r["split"] == split]
            lost = Counter(r["style"] for r in missed if r in rows)
            if rows:
                print(
                    f"{path.name} {split}: {len(rows) - sum(lost.values())}/{len(rows)} caught ({len({r['style'] for r in rows})} styles)"
                    + (f"; missed: {', '.join(f'{s} {n}' for s, n in sorted(lost.items()))}" if lost else "")
                )

    papers = corpus.load([args.corpus]).papers
    sentences = withheld = 0
    shown: list[str] = []
    for p in papers:
        spans = tuple(sentence_spans(p.abstract))
        _, kept, taken = withhold(p.abstract, spans)
        sentences += len(spans) + bool(p.title)
        withheld += len(taken) + (bool(p.title) and addresses_assistant(p.title))
        shown += [*taken, *([p.title] if p.title and addresses_assistant(p.title) else [])]
    print(
        f"corpus: {withheld} of {sentences} sentences withheld ({100 * withheld / sentences:.2f}%), {len(papers)} papers"
    )
    if args.time:
        print(timing([(p.abstract, tuple(sentence_spans(p.abstract))) for p in papers]))
    if args.list:
        for s in shown:
            print(f"  withheld: {s!r}")
        for r in missed:
            print(f"  missed {r['id']} ({r['split']}, {r['style']}): {r['text']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
