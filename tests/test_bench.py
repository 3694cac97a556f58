"""`rag bench`: the synthetic corpus, failure recording, and a real `--quick` run end to end."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag.dev import bench
from rag.errors import ConfigError

POOL = [f"Sentence {i} says one thing about models." for i in range(40)]
TITLES = ["Alpha: a first method", "Beta nets for speech", "Gamma: scaling it up", "Delta tuning of small models"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, timeout=900, cwd=cwd
    )


def test_synthetic_abstracts_are_pool_sentences_and_repeat_for_a_seed():
    rows = list(bench.synth_rows(30, 7, POOL, TITLES))
    assert rows == list(bench.synth_rows(30, 7, POOL, TITLES))
    assert rows != list(bench.synth_rows(30, 8, POOL, TITLES))
    low, _ = bench.WORDS_PER_ABSTRACT
    for row in rows:
        parts = re.findall(r"Sentence \d+ says one thing about models\.", row["abstract"])
        assert " ".join(parts) == row["abstract"]
        assert len(row["abstract"].split()) >= low
        assert row["title"].count(":") >= 1 and row["title"] not in TITLES
        assert 2015 <= int(row["date"][:4]) <= 2025


@pytest.mark.slow
def test_synthetic_corpus_gives_about_two_chunks_per_abstract(tmp_path):
    from rag import corpus
    from rag.config import DEFAULT_CORPUS
    from rag.embed import HashingEmbedding

    sentences, titles = bench.sentence_pool(corpus.load([DEFAULT_CORPUS]).papers)
    path = tmp_path / "c.jsonl"
    bench.write_jsonl(path, bench.synth_rows(60, bench.SEED, sentences, titles))
    papers, texts = bench.chunk_texts(path, HashingEmbedding(), bench.CHUNK_TOKENS)
    assert papers == 60
    assert 1.7 <= len(texts) / papers <= 2.3


def test_a_crashing_step_is_recorded_with_one_line_and_its_dependants_fail():
    said: list[str] = []

    def step(run: int) -> dict[str, float]:
        if run == 1:
            raise RuntimeError("Traceback (most recent call last):\n  ...\nsqlite: too many SQL variables")
        return {"a": 1.0, "b": 2.0}

    figures = bench.measure(["a", "b"], 3, step, said.append)
    assert {f.error for f in figures.values()} == {"RuntimeError: sqlite: too many SQL variables"}
    assert all(f.value is None for f in figures.values())
    assert len(said) == 2 and "failed" in said[-1]
    assert bench.derived(lambda x, y: x / y, figures["a"], bench.Figure(4.0)).error == figures["a"].error

    ok = bench.measure(["a"], 3, lambda run: {"a": [5.0, 1.0, 3.0][run]}, said.append)["a"]
    assert (ok.value, ok.runs, len(ok.load)) == (3.0, [5.0, 1.0, 3.0], 3)


@pytest.mark.parametrize(
    ("sizes", "runs", "sample", "needle"),
    [
        ("10k", None, None, "--sizes"),
        ("10,100000", None, None, "at least 50"),
        (None, 0, None, "--runs 0"),
        (None, None, 0, "--model-sample"),
    ],
)
def test_bad_options_are_one_clear_error(sizes, runs, sample, needle):
    with pytest.raises(ConfigError, match=needle):
        bench.parse_options(sizes, runs, True, Path("out"), False, sample)


def test_quick_defaults_and_explicit_values_win():
    quick = bench.parse_options(None, None, True, Path("o"), True, None)
    assert (quick.sizes, quick.runs, quick.model_sample) == ((bench.QUICK_CHUNKS,), 1, bench.QUICK_MODEL_SAMPLE)
    mine = bench.parse_options("100000, 2000", 2, False, Path("o"), True, 5)
    assert (mine.sizes, mine.runs, mine.model_sample, mine.server) == ((2000, 100000), 2, 5, False)


def test_cli_rejects_bad_sizes_in_one_line(tmp_path):
    done = _cli("bench", "--sizes", "ten", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: --sizes 'ten'") and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_failing_cold_process_reports_its_last_error_line(tmp_path):
    unreachable = bench.bench_settings(tmp_path / "c.jsonl", tmp_path / "idx", chroma_host="127.0.0.1", chroma_port=9)
    with pytest.raises(bench.StepFailed, match=r"`rag search` exited with 1: error: cannot reach the Chroma server"):
        bench.cold("search", unreachable, "anything", tmp_path)


def test_bench_settings_ignore_the_users_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_TOP_K", "3")
    monkeypatch.setenv("RAG_EMBED_BACKEND", "onnx")
    (tmp_path / ".env").write_text("RAG_CANDIDATES=7\n")
    s = bench.bench_settings(tmp_path / "c.jsonl", tmp_path / "idx")
    assert (s.top_k, s.candidates, s.embed_backend) == (10, 50, "hashing")
    env = bench.cli_env(s)
    assert env["RAG_EMBED_BACKEND"] == "hashing" and "RAG_TOP_K" not in env and "RAG_CHROMA_HOST" not in env


@pytest.mark.slow
def test_quick_run_writes_every_figure_and_the_plot(tmp_path):
    out = tmp_path / "bench-out"
    done = _cli("bench", "--quick", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "bench.json").read_text())

    assert result["meta"]["runs"] == 1 and result["meta"]["sizes"] == [bench.QUICK_CHUNKS]
    assert len(result["meta"]["load_start"]) == 3 and result["meta"]["cpus"] >= 1
    model = result["model"]
    assert model["papers"] == bench.QUICK_MODEL_SAMPLE
    assert set(model["figures"]) == set(bench.MODEL_FIGURES)
    [size] = result["sizes"]
    assert 0.8 * bench.QUICK_CHUNKS <= size["chunks"] <= 1.2 * bench.QUICK_CHUNKS
    assert (out / size["corpus"]).is_file()
    assert set(size["figures"]) == set(bench.SIZE_FIGURES)
    assert sorted(size["stores"]) == ["embedded", "server"]
    figures = [model["figures"], size["figures"], *size["stores"].values()]
    for store in size["stores"].values():
        assert set(store) == set(bench.STORE_FIGURES)
    for group in figures:
        for name, fig in group.items():
            assert fig["error"] is None, (name, fig["error"])
            assert math.isfinite(fig["value"]) and fig["value"] > 0, name
    embedded = size["stores"]["embedded"]
    assert embedded["ingest_vs_raw"]["value"] == pytest.approx(
        embedded["ingest_papers_per_s"]["value"] / size["figures"]["raw_embed_papers_per_s"]["value"]
    )
    assert 20 < embedded["cold_search_rss_mb"]["value"] < 4000  # this process's memory, not its parent's

    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rag bench (median of 1)" in done.stdout and "cold_search_s" in done.stdout
    assert not (out / "work").exists()
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_mentions(pid, str(out))]


def _cmdline_mentions(pid: str, text: str) -> bool:
    try:
        return text in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
