"""eval/check_dataset.py on the real question sets and on broken ones, as a subprocess like a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each run loads the corpus and builds BM25 (a few seconds)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "eval" / "check_dataset.py"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def record(**fields) -> dict:
    base = {
        "id": "x1",
        "question": "What end-to-end training speedup over BF16 does COAT achieve?",
        "kind": "numeric",
        "style": "lexical",
        "gold": ["1cf5cdef47c5373d"],
        "must_mention": ["1.43x"],
        "split": "dev",
    }
    return {**base, **fields}


def line(**fields) -> str:
    return json.dumps(record(**fields))


def test_the_shipped_question_sets_pass():
    result = run()
    assert result.returncode == 0, result.stderr
    assert "| user_words.jsonl | paraphrase | all |" in result.stdout


def test_each_problem_is_one_line_and_fails(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join(
            [
                line(must_mention=["9.99x"], bm25_rank=1),
                "not json",
                line(id="x1", gold=["ffffffffffffffff"]),
                line(
                    id="x3",
                    kind="metadata",
                    gold=["ac5a229a2d781da6"],
                    must_mention=["67"],
                    expect={"authors": 66},
                    split="train",
                ),
            ]
        )
        + "\n"
    )
    result = run(str(bad))
    assert result.returncode == 1
    for message in (
        "must_mention '9.99x' appears in no gold paper",
        "bad.jsonl:2: not JSON",
        "id 'x1' already used",
        "ffffffffffffffff are not in the corpus",
        "split 'train'",
        "expect authors 66",
    ):
        assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_write_fills_splits_and_ranks_then_validates(tmp_path):
    f = tmp_path / "q.jsonl"
    unsplit = [{k: v for k, v in record(id=f"x{i}").items() if k != "split"} for i in range(4)]
    f.write_text("".join(json.dumps(r) + "\n" for r in unsplit))
    assert run(str(f)).returncode == 1  # no split, no bm25_rank yet
    assert run(str(f), "--write").returncode == 0
    records = [json.loads(x) for x in f.read_text().splitlines()]
    assert sorted(r["split"] for r in records) == ["dev", "dev", "test", "test"]
    assert all(r["bm25_rank"] == 1 for r in records)
    before = f.read_text()
    assert run(str(f), "--write").returncode == 0 and f.read_text() == before  # splits never move


def test_a_missing_file_is_one_line_exit_2(tmp_path):
    result = run(str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: no such question file")
