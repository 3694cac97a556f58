"""The `rag` command line, run as a real subprocess against a private index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LANG_FILE, SCI_FILE, SMALL, TXT_FILE, free_port

from rag.console import short_time

STABLE_KEYS = {"paper_id", "title", "abstract", "source", "date", "year", "score"}


def cli_env(data_dir: Path, corpus: list[Path] | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(data_dir)
    env["RAG_CORPUS_PATHS"] = json.dumps([str(p) for p in (corpus or [SMALL])])
    env["ANONYMIZED_TELEMETRY"] = "False"
    env.update(extra)
    return env


def rag(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def first_search(tmp_path_factory):
    """`rag search --json` on an empty index: it ingests the default corpus first."""
    root = tmp_path_factory.mktemp("cli_search")
    env = cli_env(root / "index")
    proc = rag(["search", "--json", "-k", "5", "proteins folding into their three-dimensional shape"], env, root)
    return proc, env, root


def test_search_json_on_empty_index_ingests_first(first_search, pid_of):
    proc, _, _ = first_search
    assert proc.returncode == 0, proc.stderr
    assert "index is empty" in proc.stderr
    assert "12 papers: 12 added" in proc.stderr  # the ingest summary goes to stderr, not into the JSON
    hits = json.loads(proc.stdout)
    assert isinstance(hits, list) and 1 <= len(hits) <= 5
    for hit in hits:
        assert STABLE_KEYS <= set(hit)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h["paper_id"] for h in hits}) == len(hits)
    assert hits[0]["paper_id"] == pid_of("Protein Tertiary Structure")
    assert (hits[0]["source"], hits[0]["year"]) == (SCI_FILE, 2021)


def test_search_again_uses_the_index_and_filters(first_search):
    _, env, root = first_search
    proc = rag(["search", "--json", "--year-from", "2030", "protein structure"], env, root)
    assert proc.returncode == 0, proc.stderr
    assert "index is empty" not in proc.stderr
    assert json.loads(proc.stdout) == []
    proc = rag(["search", "--json", "-k", "20", "--source", TXT_FILE, "learning"], env, root)
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert len(hits) == 3 and {h["source"] for h in hits} == {TXT_FILE}


@pytest.mark.parametrize("missing", ["/missing/path", "/missing/papers [draft]"], ids=["plain", "brackets"])
def test_ingest_missing_path_is_one_error_line(tmp_path, missing):
    proc = rag(["ingest", missing], cli_env(tmp_path / "index"), tmp_path)
    line = assert_one_line_error(proc)
    assert missing in line


def test_search_with_dead_chroma_server_is_one_error_line(tmp_path):
    port = free_port()
    env = cli_env(tmp_path / "index", RAG_CHROMA_HOST="127.0.0.1", RAG_CHROMA_PORT=str(port))
    proc = rag(["search", "anything"], env, tmp_path)
    line = assert_one_line_error(proc)
    assert f"127.0.0.1:{port}" in line and "chroma run" in line
    assert proc.stdout == ""


def test_corpus_stats_prints_per_file_counts(tmp_path):
    proc = rag(["corpus", "stats"], cli_env(tmp_path / "index"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.replace("│", "|").replace("┃", "|").split("|") if c.strip()]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    assert rows.get(LANG_FILE) == "5" and rows.get(SCI_FILE) == "4" and rows.get(TXT_FILE) == "3", proc.stdout
    assert "12 papers" in proc.stdout and "8 with a known year" in proc.stdout


def test_bad_file_among_good_ones_is_skipped(tmp_path, pid_of):
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(SMALL / LANG_FILE, folder / LANG_FILE)
    (folder / "scan.txt").write_bytes(b"%PDF-1.7\n\x00\x01\x02binary\x00" * 50)
    env = cli_env(tmp_path / "index", corpus=[folder])

    proc = rag(["ingest", str(folder)], env, tmp_path)

    assert proc.returncode == 3, proc.stderr  # stored what it could, but something was skipped
    assert "Traceback" not in proc.stderr
    assert "1 problem(s), see above" in proc.stderr.splitlines()[-1]
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "scan.txt" in skipped[0], proc.stderr
    assert "5 papers: 5 added" in proc.stderr

    proc = rag(["search", "--json", "-k", "3", "federated learning privacy on phone keyboards"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "index is empty" not in proc.stderr
    hits = json.loads(proc.stdout)
    assert hits[0]["paper_id"] == pid_of("Differentially Private Federated")
    assert {h["source"] for h in hits} == {LANG_FILE}


def test_the_footer_quotes_what_was_quoted_and_nothing_for_a_computed_answer(capsys):
    """A metadata answer cites papers without quoting them: no empty quote marks under its source."""
    from rag import console
    from rag.types import Answer, Citation, Hit, Paper

    paper = Paper("p1", "PaLM", "An abstract.")
    computed = Citation(
        n=1, paper_id="p1", title="PaLM", claim="c", quote="", quote_start=0, quote_end=0, support=1.0, supported=True
    )
    quoted = Citation(
        n=1,
        paper_id="p1",
        title="PaLM",
        claim="c",
        quote="An abstract.",
        quote_start=0,
        quote_end=12,
        support=1.0,
        supported=True,
    )
    for citation, expected in ((computed, None), (quoted, '"An abstract."')):
        console.print_answer_footer(
            Answer(
                question="q",
                text="t [1]",
                mode="extractive",
                model="m",
                citations=[citation],
                sources=[Hit(paper, 1.0)],
            )
        )
        printed = capsys.readouterr().out
        assert "[1] PaLM" in printed
        assert ('""' in printed) is False and (expected is None or expected in printed)


def test_the_footer_of_a_refusal_shows_its_notice_as_plain_text(capsys):
    """A refusal's notice names the papers a year filter left out; their titles are untrusted text, so a
    bracketed title prints as written instead of being read as terminal markup."""
    from rag import console
    from rag.types import Answer

    notice = "1 more match but have no known year: [bold]Speculative Decoding[/bold] Revisited."
    console.print_answer_footer(
        Answer(
            question="q",
            text="The corpus does not answer this.",
            mode="extractive",
            model="m",
            refused=True,
            notice=notice,
        )
    )
    assert notice in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("read_only", "wrote", "code", "ends_at_once"),
    [(True, False, 0, True), (True, True, 0, False), (True, False, 1, False), (False, False, 0, False)],
    ids=["search", "search-that-ingested-first", "failed-search", "other-command"],
)
def test_only_a_read_only_command_that_succeeded_skips_the_teardown(monkeypatch, read_only, wrote, code, ends_at_once):
    """Skipping the interpreter's teardown is safe only when nothing was written: never after an ingest."""
    from rag import cli, console

    ended: list[int] = []
    monkeypatch.setattr(cli.os, "_exit", ended.append)
    monkeypatch.setattr(cli, "session", console.Session())

    def command() -> None:
        cli.session.read_only, cli.session.wrote = read_only, wrote
        sys.exit(code)

    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit):
        cli.main()
    assert ended == ([0] if ends_at_once else [])


def test_ask_after_a_refusal_prints_no_mode_and_no_llm_how_to(first_search):
    """A refusal ends with its reason and the papers a year filter left out, each note on a line of its own."""
    _, env, root = first_search
    proc = rag(
        ["ask", "--year-from", "2021", "large language models trained on source code for program synthesis"], env, root
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("The corpus does not answer this.")
    assert "(extractive" not in proc.stdout and "RAG_LLM_BASE_URL" not in proc.stdout, proc.stdout
    note = [line for line in proc.stdout.splitlines() if "no known year" in line]
    assert note == [
        "1 more match but have no known year: Large Language Models Trained on Source Code for Program Synthesis."
    ]
    proc = rag(["ask", "--verbose", "What is the boiling point of tungsten in Antarctica?"], env, root)
    assert proc.returncode == 0 and "No paper mentions Antarctica" in proc.stdout, proc.stderr
    assert "(extractive" not in proc.stdout and "RAG_LLM_BASE_URL" not in proc.stdout, proc.stdout


def test_ask_names_the_model_and_how_to_configure_one_only_with_verbose(first_search):
    _, env, root = first_search
    question = "How much did FP8 training improve throughput on Hopper GPUs?"
    plain = rag(["ask", question], env, root)
    verbose = rag(["ask", "--verbose", question], env, root)
    assert plain.returncode == verbose.returncode == 0, (plain.stderr, verbose.stderr)
    assert "[1] FP8 Formats" in plain.stdout and "RAG_LLM_BASE_URL" not in plain.stdout
    flat = " ".join(verbose.stdout.split())
    assert flat.count("RAG_LLM_BASE_URL") == 1 and flat.count("extractive (no LLM)") == 1, verbose.stdout
    assert "(extractive, extractive" not in flat


def test_a_latin_1_line_is_a_notice_and_the_ingest_succeeds(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(SMALL / LANG_FILE, folder / LANG_FILE)
    abstract = "Une méthode d'apprentissage évalue la mémoire et la précision sur un banc d'essai inventé pour ce test."
    (folder / "latin1.txt").write_bytes(f"Abstract:{abstract}\n".encode("latin-1"))
    (folder / "blob.bin").write_bytes(b"\x00\x01")
    proc = rag(["ingest", str(folder)], cli_env(tmp_path / "index", corpus=[folder]), tmp_path)
    assert proc.returncode == 3, proc.stderr  # blob.bin was skipped; the Latin-1 line was not
    lines = proc.stderr.splitlines()
    assert [line for line in lines if line.startswith("skipped")] == [
        "skipped blob.bin: not a corpus file (.bin); give .txt, .jsonl, .json or .csv files"
    ]
    assert [line.split(";")[0] for line in lines if line.startswith("notice")] == [
        "notice latin1.txt:1: 1 line(s) not UTF-8, read as Windows-1252"
    ]
    assert "6 papers: 6 added" in proc.stderr and "1 problem(s)" in lines[-1]
    (folder / "blob.bin").unlink()
    proc = rag(["ingest", str(folder)], cli_env(tmp_path / "index", corpus=[folder]), tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_an_ingest_that_changed_nothing_does_not_move_the_last_change(tmp_path):
    env = cli_env(tmp_path / "index")
    assert rag(["ingest"], env, tmp_path).returncode == 0
    record = json.loads((tmp_path / "index" / "last_ingest.json").read_text())
    bad = tmp_path / "scan.txt"
    bad.write_bytes(b"%PDF-1.7\n\x00\x01\x02binary\x00" * 50)
    proc = rag(["ingest", str(bad)], env, tmp_path)
    assert proc.returncode == 3, proc.stderr
    after = json.loads((tmp_path / "index" / "last_ingest.json").read_text())
    assert after["at"] == record["at"] and after["files"] == record["files"]
    assert after["attempt"]["changed"] is False and after["attempt"]["problems"] == 1
    stats = " ".join(rag(["corpus", "stats"], env, tmp_path).stdout.split())
    assert f"Index last changed: {short_time(record['at'])}" in stats
    assert f"Last ingest: {short_time(after['attempt']['at'])}, changed nothing (1 problem(s))." in stats
