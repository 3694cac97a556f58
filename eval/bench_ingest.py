"""Ingest and search speed on the default corpus: prints the figures, asserts nothing.

    python eval/bench_ingest.py
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rag import corpus
from rag.chunk import chunk_paper, embed_text
from rag.config import Settings
from rag.embed import MiniLMEmbedding
from rag.index import ingest
from rag.retrieve import Retriever

QUESTIONS = [
    "which papers report FP8 training speedups?",
    "training on more than ten thousand GPUs",
    "carbon footprint of training language models",
    "tokenized model parameters for scaling transformers",
    "detoxification with a Stackelberg game",
]


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=tmp / "index")
    embedder = MiniLMEmbedding(batch_size=settings.embed_batch_size)
    papers = corpus.load(settings.corpus_paths).papers
    n = len(papers)

    texts = [embed_text(p, c.text) for p in papers for c in chunk_paper(p, embedder.count_tokens, settings.chunk_tokens)]
    t = time.perf_counter()
    embedder.get_text_embedding_batch(texts)
    raw_chunks = time.perf_counter() - t
    t = time.perf_counter()
    embedder.get_text_embedding_batch([f"{p.title}\n{p.abstract}" for p in papers])
    raw_whole = time.perf_counter() - t

    report = ingest(settings.corpus_paths, settings, embedder)
    again = ingest(settings.corpus_paths, settings, embedder)
    env = {**os.environ, "RAG_DATA_DIR": str(settings.data_dir)}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rag.cli", "ingest"], env=env, check=True, capture_output=True)
    cli_again = time.perf_counter() - t

    retriever = Retriever(settings, embedder)
    for q in QUESTIONS:
        retriever.search(q)
    times = []
    for _ in range(4):
        for q in QUESTIONS:
            t = time.perf_counter()
            retriever.search(q)
            times.append(time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rag.cli", "search", QUESTIONS[0], "--json"], env=env, check=True, capture_output=True)
    cli_search = time.perf_counter() - t

    print(f"papers: {n}, chunks: {len(texts)}")
    print(f"raw embedder, same chunk texts:      {raw_chunks:6.1f} s  {n / raw_chunks:5.2f} abstracts/s  {len(texts) / raw_chunks:5.1f} chunks/s")
    print(f"raw embedder, whole abstracts (256): {raw_whole:6.1f} s  {n / raw_whole:5.2f} abstracts/s")
    print(f"ingest (parse+chunk+embed+store):    {report.seconds:6.1f} s  {n / report.seconds:5.2f} abstracts/s  "
          f"= {raw_chunks / report.seconds:.2f}x raw on the same texts")
    print(f"re-ingest unchanged, in process:     {again.seconds:6.2f} s  ({again.embedded} chunks embedded)")
    print(f"re-ingest unchanged, `rag ingest`:   {cli_again:6.2f} s  (whole process, imports included)")
    print(f"search, warm, in process:            median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {len(times)}")
    print(f"`rag search --json`, whole process:  {cli_search:6.2f} s")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
