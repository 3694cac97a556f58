"""Ingest benchmarks: remote embedding concurrency, and peak memory against corpus size.

    python eval/bench_ingest.py concurrency [--papers 2000] [--delay 0.2] [--request-size 32] [--levels 1,8] [--runs 3]
    python eval/bench_ingest.py memory [--sizes 50000,200000] [--out bench-out] [--server]

`concurrency` ingests, in process, synthetic papers through a fake OpenAI-compatible endpoint
(`rag.dev.bench.FakeEmbeddings` in a process of its own, real HTTP on 127.0.0.1) that takes `--delay` seconds a request, once per
level of RAG_EMBED_CONCURRENCY, and prints the median papers/s of each and their ratio.
`memory` writes synthetic arXiv-snapshot records (JSON lines with id, title, abstract, authors,
categories, doi, update_date) and runs `rag ingest` on them in a fresh process under `/usr/bin/time -v`
with the hashing embedder, printing its peak resident memory and wall time per size; with `--server` the
ingest writes to a `chroma run` server (whose in-memory vector index is then not the ingest's), and the
server's own peak is printed beside it.
Both print the machine load when they start, since the figures depend on it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag import corpus
from rag.config import DEFAULT_CORPUS, PROJECT_ROOT
from rag.dev import bench


def pool() -> tuple[list[str], list[str]]:
    return bench.sentence_pool(corpus.load([DEFAULT_CORPUS]).papers)


def arxiv_rows(n: int) -> Iterator[dict]:
    """`n` records shaped like the arXiv metadata snapshot, of real sentences recombined (seeded)."""
    sentences, titles = pool()
    for i, row in enumerate(bench.synth_rows(n, bench.SEED, sentences, titles)):
        month = i // 99_999  # arXiv numbers up to 99999 papers a month: YYMM.NNNNN
        yield {
            "id": f"{15 + month // 12:02d}{month % 12 + 1:02d}.{i % 99_999 + 1:05d}",
            "title": row["title"],
            "abstract": row["abstract"],
            "authors": "A. Author, B. Author and C. Author",
            "categories": "cs.LG stat.ML",
            "doi": "",
            "update_date": row["date"],
        }


def concurrency(papers: int, delay: float, request_size: int, levels: list[int], runs: int) -> None:
    """Median papers/s of ingest, and of the embedder alone on the same chunk texts, at each concurrency. The
    endpoint runs in a process of its own, as a remote server would: in this one it would take the ingest's CPU."""
    from rag.embed import make_embedder
    from rag.ingest import ingest

    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "papers.jsonl"
        sentences, titles = pool()
        bench.write_jsonl(path, bench.synth_rows(papers, bench.SEED, sentences, titles))
        endpoint = _Endpoint(delay)
        rates: dict[int, tuple[float, float]] = {}
        try:
            for level in levels:

                def settings(run: int) -> Any:
                    return bench.bench_settings(
                        path,
                        Path(root) / f"index-{level}-{run}",
                        embed_backend="openai-compatible",
                        embed_base_url=endpoint.base_url,
                        embed_api_key="bench",
                        embed_model="fake-embed",
                        embed_concurrency=level,
                        embed_batch_size=request_size,
                    )

                embedder = make_embedder(settings(0))
                _, texts = bench.chunk_texts(path, embedder, settings(0).chunk_tokens)
                raw = [bench.timed(lambda: embedder.get_text_embedding_batch(texts))[0] for _ in range(runs)]
                seconds = []
                for run in range(runs):
                    started = time.perf_counter()
                    report = ingest([path], settings(run), make_embedder(settings(run)))
                    seconds.append(time.perf_counter() - started)
                    assert report.added == papers, report
                rates[level] = (papers / statistics.median(raw), papers / statistics.median(seconds))
                print(
                    f"concurrency {level}: embedding alone {rates[level][0]:.1f} papers/s ({len(texts)} chunks; runs "
                    f"{', '.join(f'{s:.1f}' for s in raw)} s), ingest {rates[level][1]:.1f} papers/s (runs "
                    f"{', '.join(f'{s:.1f}' for s in seconds)} s)",
                    flush=True,
                )
        finally:
            endpoint.close()
    low, high = min(levels), max(levels)
    print(
        f"{papers} papers, {delay * 1000:.0f} ms a request of {request_size} texts, medians of {runs}: concurrency {high} "
        f"embeds {rates[high][0] / rates[low][0]:.1f}x and ingests {rates[high][1] / rates[low][1]:.1f}x as fast as {low}"
    )


class _Endpoint:
    """`bench.FakeEmbeddings` in a child process (its base URL read from the child's first line)."""

    def __init__(self, delay: float) -> None:
        code = (
            "import sys, time\n"
            "from rag.dev.bench import FakeEmbeddings\n"
            f"e = FakeEmbeddings(delay={delay!r})\n"
            "print(e.base_url, flush=True)\n"
            "time.sleep(10**9)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def memory(sizes: list[int], out: Path, server: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        path = out / f"arxiv-{size}.jsonl"
        if not path.exists():
            bench.write_jsonl(path, arxiv_rows(size))
        with tempfile.TemporaryDirectory(dir=out) as data:
            env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
            env.update(RAG_DATA_DIR=data, RAG_EMBED_BACKEND="hashing", PYTHONPATH=str(PROJECT_ROOT))
            chroma = None
            if server:
                port = bench._free_port()
                chroma = bench._start_chroma(Path(data) / "chroma", port, Path(data) / "chroma.log")
                env.update(RAG_CHROMA_HOST="127.0.0.1", RAG_CHROMA_PORT=str(port))
            try:
                command = ["/usr/bin/time", "-v", sys.executable, "-m", "rag.cli", "ingest", str(path)]
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                held = f", the Chroma server held {_hwm(chroma.pid) / 2**20:.2f} GB at most" if chroma else ""
            finally:
                if chroma:
                    chroma.terminate()
                    chroma.wait(timeout=30)
        peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", done.stderr).group(1)
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
        where = "Chroma server" if server else "embedded Chroma"
        print(
            f"{size} papers, {where}: ingest peak RSS {peak / 2**20:.2f} GB, wall {wall} ({status}){held}", flush=True
        )


def _hwm(pid: int) -> int:
    """A live process's peak resident memory in KB (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("concurrency")
    c.add_argument("--papers", type=int, default=2000)
    c.add_argument("--delay", type=float, default=0.2)
    c.add_argument("--request-size", type=int, default=32, help="texts per request (RAG_EMBED_BATCH_SIZE)")
    c.add_argument("--levels", default="1,8")
    c.add_argument("--runs", type=int, default=3)
    m = sub.add_parser("memory")
    m.add_argument("--sizes", default="50000,200000")
    m.add_argument("--out", type=Path, default=Path("bench-out"))
    m.add_argument("--server", action="store_true", help="write to a `chroma run` server, whose memory is its own")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    if args.what == "concurrency":
        concurrency(args.papers, args.delay, args.request_size, [int(x) for x in args.levels.split(",")], args.runs)
    else:
        memory([int(x) for x in args.sizes.split(",")], args.out, args.server)


if __name__ == "__main__":
    main()
