"""The eval harness: question files and splits, figures per group, the gate, and `rag eval` end to end
(extractive, and LLM mode against a real scripted OpenAI-compatible server) on the small corpus."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL, FakeLLM

from rag.dev import evaluate
from rag.dev.evaluate import check_thresholds, load_dataset, mentions, read_thresholds, summarise
from rag.errors import ConfigError, CorpusError
from rag.question import read_question

THRESHOLDS = Path(__file__).resolve().parent.parent / "eval" / "thresholds.toml"
RETRIEVAL_ROW = {k: 1.0 for k in evaluate.RETRIEVAL}


def test_mentions_normalises_numbers_and_case():
    assert mentions("A 1.43x speedup, 7,800 dollars", ["1.43X", "7800"]) == 1.0
    assert mentions("no numbers here", ["55.2%", "here"]) == 0.5


# ---------------------------------------------------------------- question files


def _write(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_records_keep_their_split_and_unknown_fields(tmp_path):
    path = _write(
        tmp_path / "q.jsonl",
        {"id": "a", "question": "q?", "split": "dev", "bm25_rank": None, "expect": {"count": 12}},
        {"id": "b", "question": "r?", "kind": "unanswerable"},
    )
    a, b = load_dataset(path)
    assert (a.split, a.dataset, a.extra) == ("dev", "q.jsonl", {"bm25_rank": None, "expect": {"count": 12}})
    assert (b.split, b.kind, b.extra) == ("test", "unanswerable", {})  # no split: gated like a test question


def test_bad_dataset_line_is_named(tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "a", "question": "q"}\n{not json}\n')
    with pytest.raises(CorpusError, match=r"q.jsonl:2"):
        load_dataset(bad)


def test_unknown_split_is_named(tmp_path):
    path = _write(tmp_path / "q.jsonl", {"id": "a", "question": "q?", "split": "train"})
    with pytest.raises(CorpusError, match=r"q.jsonl:1: split 'train' is not one of dev, test"):
        load_dataset(path)


def test_a_folder_means_its_jsonl_files_in_sorted_order(tmp_path):
    _write(tmp_path / "b.jsonl", {"id": "b1", "question": "?"})
    _write(tmp_path / "a.jsonl", {"id": "a1", "question": "?"}, {"id": "a2", "question": "?", "split": "dev"})
    (tmp_path / "notes.txt").write_text("not a question file")
    questions = evaluate.load_datasets([tmp_path])
    assert [(q.dataset, q.id) for q in questions] == [("a.jsonl", "a1"), ("a.jsonl", "a2"), ("b.jsonl", "b1")]
    assert [q.id for q in evaluate.select(questions, "dev")] == ["a2"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=r"empty: no \*.jsonl question files"):
        evaluate.load_datasets([tmp_path / "empty"])


def test_a_split_with_no_questions_is_an_error(tmp_path):
    questions = load_dataset(_write(tmp_path / "q.jsonl", {"id": "a", "question": "q?"}))
    with pytest.raises(CorpusError, match="no dev questions"):
        evaluate.select(questions, "dev")
    with pytest.raises(ConfigError, match="--split 'train'"):
        evaluate.select(questions, "train")


# ---------------------------------------------------------------- figures


def _row(kind, gold, refused, cited, correct, split="test", dataset="a.jsonl", style="", validity=None):
    answer = {
        "refused": refused,
        "cited": cited,
        "validity": validity if validity is not None else (1.0 if cited else None),
        "supported": 1.0 if cited else None,
        "precision": (len(set(gold) & set(cited)) / len(cited)) if cited and gold else None,
        "recall": (len(set(gold) & set(cited)) / len(gold)) if gold else None,
        "mentions": 1.0 if gold else None,
    }
    row = {
        "id": kind,
        "dataset": dataset,
        "split": split,
        "kind": kind,
        "style": style,
        "question": "",
        "gold": gold,
        "correct": correct,
        "answer": answer,
    }
    return row | ({m: dict(RETRIEVAL_ROW) for m in evaluate.METHODS} if gold else {})


def test_refusal_false_refusal_and_litqa_figures():
    rows = [
        _row("lookup", ["p1"], False, ["p1"], True),
        _row("lookup", ["p2"], True, [], False),  # wrongly refused
        _row("unanswerable", [], True, [], True),
        _row("unanswerable", [], False, ["p3"], False),  # answered what the corpus does not say
    ]
    a = summarise(rows)["test"]["answers"]["all"]
    assert a["refusal_precision"] == 0.5  # 2 refusals, 1 on an unanswerable
    assert a["refusal_recall"] == 0.5  # 2 unanswerables, 1 refused
    assert a["false_refusals"] == 0.5  # 2 answerable, 1 refused
    assert a["accuracy"] == 0.5  # 2 correct of 4
    assert a["precision"] == 0.5  # 1 correct of the 2 answered


def test_figures_that_do_not_apply_are_blank():
    rows = [_row("lookup", ["p1"], False, ["p1"], True), _row("unanswerable", [], True, [], True)]
    s = summarise(rows)["test"]
    unanswerable = s["answers"]["kind:unanswerable"]
    for name in (
        "citation_precision",
        "citation_recall",
        "must_mention",
        "false_refusals",
        "citation_validity",
        "precision",
    ):
        assert unanswerable[name] is None, name
    assert s["retrieval"]["kind:unanswerable"] is None
    lookup = s["answers"]["kind:lookup"]
    assert lookup["refusal_precision"] is None and lookup["refusal_recall"] is None and lookup["false_refusals"] == 0.0
    splits = summarise(rows)
    result = {
        "mode": "extractive",
        "model": "m",
        "datasets": {"a.jsonl": 2},
        "summary": splits.pop("all"),
        "splits": splits,
        "questions": rows,
    }
    report = evaluate.markdown(result)
    line = next(ln for ln in report.splitlines() if ln.startswith("| kind:unanswerable |"))
    assert line == "| kind:unanswerable | 1 | 1.000 | - | - | - | - | - | - | 1.000 | 1.000 | - |"


def test_answers_by_kind_plot_has_refusal_bars(tmp_path, monkeypatch):
    """answers_by_kind.png draws refusal precision, recall and false refusals beside the answer metrics."""
    drawn: list[tuple[list[str], dict]] = []
    real_bars = evaluate.bars
    monkeypatch.setattr(
        evaluate, "bars", lambda ax, labels, series: (drawn.append((labels, series)), real_bars(ax, labels, series))
    )
    rows = [_row("lookup", ["p1"], False, ["p1"], True), _row("unanswerable", [], True, [], True)]
    splits = summarise(rows)
    evaluate.plot({"mode": "extractive", "summary": splits.pop("all"), "questions": rows}, tmp_path)
    labels, series = drawn[1]
    assert labels == ["lookup", "unanswerable"]
    assert series["refR"] == [None, 1.0] and series["refP"] == [None, 1.0] and series["fRef"] == [0.0, None]
    assert (tmp_path / "answers_by_kind.png").read_bytes()[:4] == b"\x89PNG"


def test_every_figure_per_split_file_kind_and_style():
    rows = [
        _row("lookup", ["p1"], False, ["p1"], True, split="dev", dataset="b.jsonl", style="paraphrase"),
        _row("lookup", ["p2"], False, ["p9"], False, split="test", dataset="a.jsonl", style="lexical"),
        _row("multi", ["p3"], False, ["p3"], True, split="test", dataset="b.jsonl", style="lexical"),
    ]
    s = summarise(rows)
    assert list(s) == ["dev", "test", "all"]
    assert list(s["all"]["answers"]) == [
        "all",
        "file:a.jsonl",
        "file:b.jsonl",
        "kind:lookup",
        "kind:multi",
        "style:lexical",
        "style:paraphrase",
    ]
    assert s["dev"]["answers"]["all"]["questions"] == 1 and s["test"]["answers"]["all"]["questions"] == 2
    assert s["test"]["answers"]["all"]["accuracy"] == 0.5
    assert s["all"]["answers"]["file:b.jsonl"]["accuracy"] == 1.0
    assert s["all"]["answers"]["kind:lookup"]["citation_precision"] == 0.5


def test_judged_metrics_are_reported_apart():
    rows = [_row("lookup", ["p1"], False, ["p1"], True) | {"judge": {"faithfulness": 1.0, "relevancy": 0.0}}]
    summary = summarise(rows)
    assert summary["test"]["judged"]["all"] == {"faithfulness": 1.0, "relevancy": 0.0}
    assert "faithfulness" not in summary["test"]["answers"]["all"]


def test_judge_runs_llama_index_evaluators_through_our_chat_model():
    from rag.dev.judge import judge
    from rag.types import Answer, Hit, Paper

    source = Hit(Paper("p", "COAT", "COAT achieves a 1.43x end-to-end training speedup."), 1.0)
    answer = Answer(
        question="How fast is COAT?", text="COAT is 1.43x faster [1].", mode="llm", model="s", sources=[source]
    )
    yes, no = FakeLLM(then="YES"), FakeLLM(then="NO")
    assert judge(answer, yes) == {"faithfulness": 1.0, "relevancy": 1.0}
    assert judge(answer, no) == {"faithfulness": 0.0, "relevancy": 0.0}
    assert any("1.43x end-to-end" in m["content"] for call in yes.calls for m in call)  # the abstract reached the judge


def test_latency_median_and_p95():
    timings = [{"total": t / 10, **({"first_token": t / 100} if t % 2 else {})} for t in range(1, 21)]
    assert evaluate.latency(timings) == {"median_s": 1.05, "p95_s": 1.9, "first_token_median_s": 0.1}


# ---------------------------------------------------------------- the gate


def _limits(tmp_path: Path, text: str) -> list:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return read_thresholds(path)


def test_thresholds_read_the_test_split_and_name_the_failing_figure(tmp_path):
    rows = [
        _row("lookup", ["p1"], False, ["p1"], True, split="test"),
        _row("lookup", ["p2"], True, [], False, split="dev"),
    ]
    limits = _limits(
        tmp_path,
        '[test.answers.all]\naccuracy = 0.9\nfalse_refusals = 0.1\n[test.retrieval.all]\n"hybrid.ndcg@10" = 0.5\n',
    )
    summary = summarise(rows)
    assert check_thresholds(summary, limits) == []  # the failing dev question is not gated
    summary["test"]["answers"]["all"] |= {"accuracy": 0.8, "false_refusals": 0.2}
    assert check_thresholds(summary, limits) == [
        "test.answers.all.accuracy = 0.8 is below the threshold 0.9",
        "test.answers.all.false_refusals = 0.2 is above the ceiling 0.1",
    ]


def test_citation_validity_is_gated_in_llm_mode_only(tmp_path):
    summary = summarise([_row("lookup", ["p1"], False, ["p1"], True, validity=0.5)])
    limits = _limits(tmp_path, "[test.answers.all]\ncitation_validity = 0.99\n")
    assert check_thresholds(summary, limits, "extractive") == []
    assert check_thresholds(summary, limits, "llm") == [
        "test.answers.all.citation_validity = 0.5 is below the threshold 0.99"
    ]


def test_thresholds_for_a_split_not_run_fail_with_a_reason(tmp_path):
    summary = summarise([_row("lookup", ["p1"], False, ["p1"], True, split="dev")])
    limits = _limits(tmp_path, "[test.answers.all]\naccuracy = 0.5\n[dev.answers.all]\nno_such_figure = 0.5\n")
    assert check_thresholds(summary, limits) == [
        "dev.answers.all.no_such_figure: no such figure, or it does not apply to these questions",
        "test.answers.all.accuracy: not measured in this run (no test questions in group 'all')",
    ]


@pytest.mark.parametrize(
    "text", ["[answers.all]\naccuracy = 0.9\n", "[test.answers.all]\naccuracy = 'high'\n", "not = [toml"]
)
def test_a_malformed_thresholds_file_is_one_clear_error(tmp_path, text):
    with pytest.raises(ConfigError, match=r"t.toml: (expected tables such as \[test.answers.all\]|not valid TOML)"):
        _limits(tmp_path, text)


def test_the_project_thresholds_name_only_real_figures():
    limits = read_thresholds(THRESHOLDS)
    assert {split for split, *_ in limits} == {"test"}
    for _, section, _, name, _ in limits:
        if section == "answers":
            assert name in evaluate.ANSWERS, name
        elif section == "conversations":
            assert name in evaluate.evaluate_chat.FIGURES, name
        else:
            method, metric = name.split(".")
            assert method in evaluate.METHODS and metric in evaluate.RETRIEVAL, name
    assert {"false_refusals", "citation_validity", "refusal_recall"} <= {name for *_, name, _ in limits}
    assert ("conversations", "accuracy") in {(section, name) for _, section, _, name, _ in limits}


# ---------------------------------------------------------------- `rag eval` end to end


def _questions(pid_of) -> list[dict]:
    return [
        {
            "id": "e1",
            "split": "dev",
            "question": "Which paper trains language models with 8-bit floating point formats?",
            "kind": "lookup",
            "style": "lexical",
            "gold": [pid_of("FP8 Formats Accelerate")],
            "must_mention": ["FP8"],
            "bm25_rank": 1,
        },
        {
            "id": "e2",
            "split": "test",
            "question": "How is the three-dimensional structure of proteins predicted from amino acid sequences?",
            "kind": "lookup",
            "style": "paraphrase",
            "gold": [pid_of("Protein Tertiary")],
            "must_mention": ["attention"],
        },
        {
            "id": "e3",
            "split": "test",
            "question": "What is the capital of Australia?",
            "kind": "unanswerable",
            "gold": [],
            "must_mention": [],
        },
        {
            "id": "e4",
            "split": "test",
            "question": "Which papers use federated learning on phones with differential privacy?",
            "kind": "multi",
            "style": "lexical",
            "gold": [pid_of("Differentially Private Federated")],
            "must_mention": [],
            "expect": {"count": 1},
        },
    ]


def _env(tmp_path: Path, index: str = "index", **extra: str) -> dict[str, str]:
    return {
        "RAG_DATA_DIR": str(tmp_path / index),
        "RAG_CORPUS_PATHS": json.dumps([str(SMALL)]),
        "RAG_EMBED_BACKEND": "hashing",
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "COLUMNS": "80",
        **extra,
    }


def _rag_eval(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", "eval", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def dataset(tmp_path, pid_of) -> Path:
    return _write(tmp_path / "mine.jsonl", *_questions(pid_of))


@pytest.mark.slow  # `rag eval` in subprocesses
def test_eval_command_end_to_end(tmp_path, dataset):
    out = tmp_path / "out"
    floors = tmp_path / "t.toml"
    floors.write_text(
        '[test.answers.all]\nrefusal_recall = 1.0\nfalse_refusals = 0.0\n[test.retrieval.all]\n"bm25.hit@10" = 1.0\n'
    )
    done = _rag_eval(tmp_path, _env(tmp_path), "--dataset", str(dataset), "--out", str(out), "--check", str(floors))
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "results.json").read_text())
    by_id = {r["id"]: r for r in result["questions"]}
    assert by_id["e1"]["hybrid"]["hit@5"] == 1.0 and by_id["e1"]["correct"]
    assert by_id["e3"]["answer"]["refused"] and by_id["e3"]["correct"]
    assert (
        by_id["e3"]["answer"]["text"].startswith("The corpus does not answer")
        and "[1]" in by_id["e1"]["answer"]["text"]
    )
    assert by_id["e1"]["extra"] == {"bm25_rank": 1} and by_id["e4"]["extra"] == {"expect": {"count": 1}}
    assert list(result["splits"]) == ["dev", "test"]
    assert result["splits"]["dev"]["answers"]["all"]["questions"] == 1
    assert (
        result["summary"]["answers"]["all"]["questions"] == 4
    )  # every question run, as readers of results.json expect
    assert result["splits"]["test"]["answers"]["kind:unanswerable"]["citation_precision"] is None
    for png in ("retrievers.png", "answers_by_kind.png", "questions.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "## Split: test (the CI gate reads this split)" in report and "## Split: dev" in report
    timing = json.loads((out / "timing.json").read_text())
    assert [t["id"] for t in timing["per_question"]] == ["e1", "e2", "e3", "e4"] and timing["latency"]["median_s"] > 0
    # the terminal tables keep every label whole in 80 columns, and the gate passed on the test split
    assert "kind:unanswerable" in done.stdout and "…" not in done.stdout
    assert "All extractive figures meet" in done.stdout

    dev_only = _rag_eval(
        tmp_path,
        _env(tmp_path),
        "--dataset",
        str(dataset),
        "--out",
        str(tmp_path / "dev"),
        "--split",
        "dev",
        "--check",
        str(floors),
    )
    assert dev_only.returncode == 1
    assert "test.answers.all.refusal_recall: not measured in this run" in dev_only.stderr
    assert "Traceback" not in dev_only.stderr


@pytest.mark.slow  # `rag eval` in subprocesses
def test_results_do_not_depend_on_the_hash_seed(tmp_path, dataset):
    outputs = []
    for seed in ("1", "2024"):
        out = tmp_path / f"out{seed}"
        done = _rag_eval(
            tmp_path, _env(tmp_path, f"index{seed}", PYTHONHASHSEED=seed), "--dataset", str(dataset), "--out", str(out)
        )
        assert done.returncode == 0, done.stderr
        outputs.append(((out / "results.json").read_text(), (out / "report.md").read_text()))
    assert outputs[0] == outputs[1]
    assert '"mode": "extractive"' in outputs[0][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare"], "--compare sets extractive beside the LLM: use it with --mode llm"),
        (["--mode", "llm"], "--mode llm needs an LLM"),
        (["--check", "missing.toml"], "missing.toml: no such thresholds file"),
        (["--beir", "no-such-folder"], "no-such-folder: no such folder"),
    ],
)
def test_eval_command_mistakes_are_user_errors(dataset, args, message):
    """Each ends in one UserError line (rag.cli.main prints it) before any index is opened."""
    from typer.testing import CliRunner

    from rag.cli import app
    from rag.errors import UserError

    result = CliRunner().invoke(app, ["eval", "--dataset", str(dataset), *args])
    assert isinstance(result.exception, UserError) and message in str(result.exception)
    assert not Path("index").exists() and not Path("data").exists()


@pytest.mark.parametrize(
    ("option", "value", "choices"),
    [("--split", "train", "'dev', 'test', 'all'"), ("--mode", "written", "'extractive', 'llm'")],
)
def test_eval_choice_options_reject_other_values_before_any_work(dataset, option, value, choices):
    """--split and --mode are choices: a usage error (exit 2) naming them, before any index is opened."""
    from typer.testing import CliRunner

    from rag.cli import app

    result = CliRunner().invoke(app, ["eval", "--dataset", str(dataset), option, value])
    assert result.exit_code == 2, result.output
    assert f"'{value}' is not one of {choices}" in " ".join(result.output.replace("│", " ").split())
    assert not Path("index").exists() and not Path("data").exists()


# ---------------------------------------------------------------- LLM mode against the fake LLM's endpoint


def _first_sentence_then_a_bad_marker(messages: list[dict[str, str]]) -> str:
    """The first sentence of source 1, cited [1], then a claim cited [99], a source it was never given."""
    source = re.search(r'<source id="1"[^>]*>\n(.*?)\n</source>', messages[-1]["content"], re.S)
    first = re.split(r"(?<=\.)\s+", source.group(1))[0] if source else "Nothing was given."
    return f"{first} [1] The same result was confirmed in a later study [99]."


@pytest.mark.slow  # `rag eval` in subprocesses
def test_llm_mode_compare_and_a_validity_gate_that_can_fail(tmp_path, dataset, fake_llm):
    out = tmp_path / "out"
    fake_llm.then = _first_sentence_then_a_bad_marker
    with fake_llm.serve() as endpoint:
        env = _env(tmp_path, RAG_LLM_BASE_URL=endpoint.base_url, RAG_LLM_MODEL="scripted", RAG_LLM_TIMEOUT="30")
        done = _rag_eval(
            tmp_path,
            env,
            "--dataset",
            str(dataset),
            "--mode",
            "llm",
            "--compare",
            "--out",
            str(out),
            "--check",
            str(THRESHOLDS),
        )
    assert endpoint.posts >= 3  # the answerable questions reached the LLM
    llm = json.loads((out / "llm" / "results.json").read_text())
    extractive = json.loads((out / "extractive" / "results.json").read_text())
    answered = [r for r in llm["questions"] if not r["answer"]["refused"]]
    written = [
        r for r in answered if not read_question(r["question"]).is_list
    ]  # a list, and "which paper ...", is written by code from the judgements
    assert written and all(r["answer"]["invalid_markers"] == 1 and r["answer"]["validity"] == 0.5 for r in written)
    assert all(
        "[1]" in r["answer"]["text"] and "[99]" not in r["answer"]["text"] for r in written
    )  # what the model wrote, checked
    assert [r["answer"]["validity"] for r in answered if r not in written] == [1.0, 1.0]  # e1 and e4
    assert llm["splits"]["test"]["answers"]["all"]["citation_validity"] == 0.75  # e2 0.5, e4 1.0
    assert extractive["splits"]["test"]["answers"]["all"]["citation_validity"] == 1.0
    # the gate reads the LLM run, where raw-marker validity is gated and fails
    assert done.returncode == 1
    assert "test.answers.all.citation_validity = 0.75 is below the threshold 0.99" in done.stderr
    compare = (out / "compare.md").read_text()
    assert "| figure | extractive | llm |" in compare
    assert "| citation validity (raw markers) | 1.000 | 0.833 |" in compare  # e1 1.0, e2 0.5, e4 1.0
    assert re.search(r"\| median time to first token \(s\) \| [\d.]+ \| [\d.]+ \|", compare)
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "citation validity (raw markers)" in done.stdout
