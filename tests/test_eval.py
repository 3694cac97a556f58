"""Eval metrics against hand-computed values, and `rag eval` end to end on the small corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL
from rag import metrics
from rag.evaluate import check_thresholds, load_dataset, mentions, summarise
from rag.errors import CorpusError


def test_hit_and_recall():
    ranked = ["a", "b", "c", "d"]
    assert metrics.hit_at_k(ranked, {"c"}, 2) == 0.0
    assert metrics.hit_at_k(ranked, {"c"}, 3) == 1.0
    assert metrics.recall_at_k(ranked, {"a", "d", "z"}, 4) == pytest.approx(2 / 3)


def test_duplicates_count_once_at_their_best_rank():
    # "a" twice: the deduplicated ranking is a, b, c, so "c" is at rank 3, not 4
    assert metrics.reciprocal_rank(["a", "a", "b", "c"], {"c"}) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(["a", "a", "b"], {"a", "b"}, 2) == 1.0


def test_empty_gold_scores_zero_not_error():
    assert metrics.recall_at_k(["a"], set(), 5) == 0.0
    assert metrics.ndcg_at_k(["a"], set(), 10) == 0.0
    assert metrics.reciprocal_rank([], {"a"}) == 0.0


def test_ndcg_by_hand():
    # gold at ranks 1 and 3 of 2 gold: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3)
    expected = 1.5 / (1 + 1 / 1.5849625007)
    assert metrics.ndcg_at_k(["g1", "x", "g2"], {"g1", "g2"}, 10) == pytest.approx(expected)


def test_ndcg_ties_in_gold_order_do_not_matter():
    assert metrics.ndcg_at_k(["g2", "g1"], {"g1", "g2"}, 10) == metrics.ndcg_at_k(["g1", "g2"], {"g1", "g2"}, 10) == 1.0


def test_mentions_normalises_numbers_and_case():
    assert mentions("A 1.43x speedup, 7,800 dollars", ["1.43X", "7800"]) == 1.0
    assert mentions("no numbers here", ["55.2%", "here"]) == 0.5


def _row(kind, gold, refused, cited, correct):
    return {
        "id": kind, "kind": kind, "question": "", "gold": gold, "correct": correct,
        "answer": {"refused": refused, "cited": cited, "validity": 1.0 if cited else None, "supported": None,
                   "precision": (len(set(gold) & set(cited)) / len(cited)) if cited and gold else None,
                   "recall": (len(set(gold) & set(cited)) / len(gold)) if gold else None, "mentions": 1.0 if gold else None},
    } | ({m: {k: 1.0 for k in ("hit@5", "hit@10", "recall@5", "recall@10", "mrr", "ndcg@10")} for m in ("bm25", "dense", "hybrid")} if gold else {})


def test_refusal_and_litqa_figures():
    rows = [
        _row("lookup", ["p1"], False, ["p1"], True),
        _row("lookup", ["p2"], True, [], False),  # wrongly refused
        _row("unanswerable", [], True, [], True),
        _row("unanswerable", [], False, ["p3"], False),  # answered what the corpus does not say
    ]
    a = summarise(rows)["answers"]["all"]
    assert a["refusal_precision"] == 0.5  # 2 refusals, 1 on an unanswerable
    assert a["refusal_recall"] == 0.5  # 2 unanswerables, 1 refused
    assert a["accuracy"] == 0.5  # 2 correct of 4
    assert a["precision"] == 0.5  # 1 correct of the 2 answered


def test_thresholds_name_the_failing_figure(tmp_path):
    summary = {"answers": {"all": {"accuracy": 0.8}}, "retrieval": {"all": {"hybrid": {"ndcg@10": 0.9}}}}
    floors = tmp_path / "t.toml"
    floors.write_text('[answers.all]\naccuracy = 0.85\n[retrieval.all]\n"hybrid.ndcg@10" = 0.5\n')
    assert check_thresholds(summary, floors) == ["answers.all.accuracy = 0.8 is below the threshold 0.85"]


def test_bad_dataset_line_is_named(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "a", "question": "q"}\n{not json}\n')
    with pytest.raises(CorpusError, match=r"q.jsonl:2"):
        load_dataset(bad)


def test_eval_command_end_to_end(tmp_path, pid_of):
    questions = [
        {"id": "e1", "question": "Which paper trains language models with 8-bit floating point formats?", "kind": "lookup",
         "gold": [pid_of("FP8 Formats Accelerate")], "must_mention": ["FP8"]},
        {"id": "e2", "question": "What is the capital of Australia?", "kind": "unanswerable", "gold": [], "must_mention": []},
    ]
    dataset = tmp_path / "mine.jsonl"
    dataset.write_text("\n".join(json.dumps(q) for q in questions))
    env = {"RAG_DATA_DIR": str(tmp_path / "index"), "RAG_CORPUS_PATHS": json.dumps([str(SMALL)]), "PATH": "/usr/bin:/bin"}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rag.cli", "eval", "--dataset", str(dataset), "--out", str(out)]
    first = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    result = json.loads((out / "results.json").read_text())
    by_id = {r["id"]: r for r in result["questions"]}
    assert by_id["e1"]["hybrid"]["hit@5"] == 1.0
    assert by_id["e1"]["correct"] and by_id["e2"]["answer"]["refused"]
    for png in ("retrievers.png", "answers_by_kind.png", "questions.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "## Retrieval" in (out / "report.md").read_text()
    again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads((out / "results.json").read_text()) == result


def test_judged_metrics_are_reported_apart():
    rows = [_row("lookup", ["p1"], False, ["p1"], True) | {"judge": {"faithfulness": 1.0, "relevancy": 0.0}}]
    summary = summarise(rows)
    assert summary["judged"]["all"] == {"faithfulness": 1.0, "relevancy": 0.0}
    assert "faithfulness" not in summary["answers"]["all"]


def test_judge_runs_llama_index_evaluators_through_our_chat_model():
    from rag.judge import judge
    from rag.types import Answer, Hit, Paper

    class ScriptedJudge:
        name, endpoint = "scripted", "local"

        def __init__(self, verdict):
            self.verdict, self.prompts = verdict, []

        def stream(self, messages):
            self.prompts.append(messages[0]["content"])
            yield self.verdict

    source = Hit(Paper("p", "COAT", "COAT achieves a 1.43x end-to-end training speedup."), 1.0)
    answer = Answer(question="How fast is COAT?", text="COAT is 1.43x faster [1].", mode="llm", model="s", sources=[source])
    yes, no = ScriptedJudge("YES"), ScriptedJudge("NO")
    assert judge(answer, yes) == {"faithfulness": 1.0, "relevancy": 1.0}
    assert judge(answer, no) == {"faithfulness": 0.0, "relevancy": 0.0}
    assert any("1.43x end-to-end" in p for p in yes.prompts)  # the abstract reached the judge
