"""`rag chat`: scripted input lines through the REPL over the small fixture index (extractive engine)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import SMALL

from rag.answer import Engine
from rag.chat import ChatState, parse_filters, run_chat
from rag.errors import LLMError, QuestionError
from rag.types import Filters

SPEECH_Q = "How can speech recognition work for low-resource languages with little transcribed audio?"
FOLLOW_UP = "By how much did it reduce the word error rate?"
FP8_Q = "How much did FP8 training improve throughput on Hopper GPUs?"


class Script:
    """Input lines for the REPL, then end of input; an exception in the list is raised when its turn comes."""

    def __init__(self, *lines: str | BaseException) -> None:
        self.lines = list(lines)

    def __call__(self, prompt: str) -> str:
        if not self.lines:
            raise EOFError
        line = self.lines.pop(0)
        if isinstance(line, BaseException):
            raise line
        return line


@pytest.fixture(scope="module")
def engine(shared_index, retriever) -> Engine:
    return Engine(shared_index.settings, retriever, None)


def chat(
    engine: Engine, capsys, *lines: str | BaseException, state: ChatState | None = None
) -> tuple[ChatState, str, str, Script]:
    """Run the REPL over `lines`; returns the state, stdout and stderr (whitespace collapsed: rich wraps lines) and the script."""
    state = state or ChatState()
    script = Script(*lines)
    run_chat(engine, state, read=script)
    captured = capsys.readouterr()
    return state, " ".join(captured.out.split()), captured.err, script


def test_question_then_follow_up_streams_answers_with_the_cli_citation_footer(engine, capsys, pid_of):
    state, out, _, _ = chat(engine, capsys, SPEECH_Q, FOLLOW_UP)
    assert [t.question for t in state.history.turns] == [SPEECH_Q, FOLLOW_UP]
    assert [t.answer for t in state.history.turns][1] == state.last.text
    assert SPEECH_Q in state.last.standalone_question  # the follow-up was read in the light of the first question
    assert state.last.citations[0].paper_id == pid_of("Self-Supervised Speech") and "35%" in state.last.text
    assert out.count("[1] Self-Supervised Speech Representations") == 2  # the footer, once per answer
    assert f'"{state.last.citations[0].quote}"' in out  # the quote line `rag ask` prints
    assert "Extractive answer" in out


def test_sources_lists_the_last_answers_papers_and_reset_forgets_them(engine, capsys):
    state, out, _, _ = chat(engine, capsys, "/sources", FP8_Q, "/sources", "/reset", "/sources")
    assert out.count("No answer yet") == 2
    sources = engine.ask(FP8_Q).sources
    assert out.count("; id ") == len(sources) > 1  # one line per source, from the one /sources after the answer
    for n, hit in enumerate(sources, 1):
        assert f"[{n}] {hit.paper.display_title} (" in out and f"; id {hit.paper.paper_id})" in out
    assert state.history.turns == [] and state.last is None


def test_filters_are_shown_set_and_used_by_the_next_question(engine, capsys):
    state, out, _, _ = chat(
        engine,
        capsys,
        "/filters",
        "/filters year_from=2021 source=science_and_robotics.jsonl",
        "Which papers use neural networks?",
        "/reset",
    )
    assert "Filters: year_from=any year_to=any source=any" in out
    assert "Filters: year_from=2021 year_to=any source=science_and_robotics.jsonl" in out
    assert "filters kept: year_from=2021" in out
    assert state.filters == Filters(2021, None, ("science_and_robotics.jsonl",))


def test_answers_follow_the_filters(engine, capsys):
    state, _, _, _ = chat(
        engine,
        capsys,
        "Which papers use neural networks?",
        state=ChatState(Filters(2021, None, ("science_and_robotics.jsonl",))),
    )
    assert state.last.sources and all(
        h.paper.year >= 2021 and h.paper.sources == ["science_and_robotics.jsonl"] for h in state.last.sources
    )


def test_mistakes_print_one_line_each_and_the_chat_goes_on(engine, capsys):
    state, _, err, _ = chat(
        engine,
        capsys,
        "/filters year_from=abc",
        "/filters year_from=2024 year_to=2020",
        "/filters yr=2020",
        "/bogus",
        "/filters year_to=2019",
    )
    lines = err.strip().splitlines()
    assert lines == [
        "error: /filters: year_from must be a year such as 2020, not 'abc'",
        "error: /filters: year_from 2024 is after year_to 2020; swap them",
        "error: /filters: 'yr=2020' is not year_from=YEAR, year_to=YEAR or source=FILE",
        "error: unknown command /bogus; Commands: /sources, /filters [year_from=Y] [year_to=Y] [source=FILE ...] (KEY= clears), /reset, /quit.",
    ]
    assert state.filters == Filters(None, 2019)


@pytest.mark.parametrize("end", [[], [KeyboardInterrupt()], ["/quit", "never read"], ["/exit"]])
def test_eof_ctrl_c_and_quit_end_the_chat_cleanly(engine, capsys, end):
    state, _, err, script = chat(engine, capsys, "/filters year_to=2020", *end)
    assert err == "" and state.filters == Filters(None, 2020)
    assert script.lines == end[1:]  # nothing is read after /quit


def test_an_engine_error_is_one_line_and_the_next_question_is_read(shared_index, retriever, capsys, fake_llm):
    fake_llm.enqueue(["FP8 training ", LLMError("the answer stopped before it finished; try again")])
    engine = Engine(shared_index.settings, retriever, fake_llm)
    state, _, err, script = chat(engine, capsys, FP8_Q, "/filters year_to=2020")
    assert err.strip().splitlines()[-1] == "error: the answer stopped before it finished; try again"
    assert state.history.turns == [] and state.filters == Filters(None, 2020)
    assert len(fake_llm.calls) == 1


def test_parse_filters_keeps_clears_and_repeats():
    current = Filters(2019, 2022, ("a.txt",))
    assert parse_filters(["year_to=2023"], current) == Filters(2019, 2023, ("a.txt",))
    assert parse_filters(["year_from=", "source="], current) == Filters(None, 2022, ())
    assert parse_filters(["source=b.txt", "source=c.txt"], current) == Filters(2019, 2022, ("b.txt", "c.txt"))
    with pytest.raises(QuestionError, match="year_to must be a year"):
        parse_filters(["year_to=20x"], current)


@pytest.mark.slow
def test_rag_chat_command_reads_stdin_until_eof(tmp_path, make_settings):
    from rag.embed import HashingEmbedding
    from rag.ingest import ingest
    from rag.store import open_store

    settings = make_settings(data_dir=tmp_path / "index", corpus_paths=[SMALL], embed_backend="hashing")
    ingest([SMALL], settings, HashingEmbedding(), store=open_store(settings))
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("RAG_")}
    env.update(RAG_DATA_DIR=str(settings.data_dir), RAG_EMBED_BACKEND="hashing", ANONYMIZED_TELEMETRY="False")
    proc = subprocess.run(
        [sys.executable, "-m", "rag.cli", "chat", "--year-from", "2022", "--year-to", "2022"],
        input=f"{SPEECH_Q}\n/filters\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    out = " ".join(proc.stdout.split())
    assert (
        "[1] Self-Supervised Speech Representations" in out and "Filters: year_from=2022 year_to=2022 source=any" in out
    )


def test_the_llm_how_to_is_said_once_per_chat_and_never_under_a_refusal(engine, capsys):
    refused = "What is the boiling point of tungsten in Antarctica?"
    _, out, _, _ = chat(engine, capsys, refused, FP8_Q, SPEECH_Q)
    assert "No paper mentions Antarctica" in out
    assert out.count("RAG_LLM_BASE_URL") == 1 and out.index("RAG_LLM_BASE_URL") > out.index("[1] FP8 Formats")
    assert "(extractive, extractive" not in out
