"""`rag chat`: a conversation in the terminal. Answers stream as in `rag ask`, follow-up questions see the
earlier turns, and a few slash commands show the sources and change the filters between questions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rich.markup import escape

from rag.answer import Engine, Streamed
from rag.console import err, out, print_answer_footer
from rag.errors import QuestionError, UserError
from rag.types import Answer, Conversation, Filters, Turn

HELP = "Commands: /sources, /filters [year_from=Y] [year_to=Y] [source=FILE ...] (KEY= clears), /reset, /quit."


@dataclass
class ChatState:
    """What persists between questions: the filters, k, the conversation and the last answer."""

    filters: Filters = Filters()
    k: int | None = None
    history: Conversation = field(default_factory=Conversation)
    last: Answer | None = None
    told_model: bool = False  # the answering model and how to configure one, said after the first answer


def run_chat(engine: Engine, state: ChatState, read: Callable[[str], str] = input) -> None:
    """Read questions and commands until /quit, end of input or Ctrl-C; a UserError is shown in one line and the chat goes on."""
    out.print(f"Ask a question ({engine.model}). {HELP}", markup=False, highlight=False)
    while True:
        try:
            line = read("> ").strip()
            if not line:
                continue
            if line.startswith("/"):
                if not command(line, state):
                    return
            else:
                engine = engine.current()  # an ingest during the chat is seen by the next question
                ask(engine, line, state)
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        except UserError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)


def ask(engine: Engine, question: str, state: ChatState) -> None:
    """Stream one answer, print its checked citations, and remember the turn for follow-ups."""
    streamed = Streamed(engine.ask_stream(question, state.filters, state.k, state.history))
    for piece in streamed:
        out.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
    out.print()
    assert streamed.answer is not None
    print_answer_footer(streamed.answer, how_to=not state.told_model)
    state.told_model = state.told_model or not streamed.answer.refused
    state.history.turns.append(Turn.of(question, streamed.answer))
    state.last = streamed.answer


def command(line: str, state: ChatState) -> bool:
    """Run a slash command; False means leave the chat."""
    name, *args = line.split()
    if name in ("/quit", "/exit"):
        return False
    if name == "/sources":
        show_sources(state.last)
    elif name == "/filters":
        if args:
            state.filters = parse_filters(args, state.filters)
        out.print(f"Filters: {describe(state.filters)}", markup=False, highlight=False)
    elif name == "/reset":
        state.history, state.last = Conversation(), None
        out.print(f"New conversation (filters kept: {describe(state.filters)}).", markup=False, highlight=False)
    else:
        raise QuestionError(f"unknown command {name}; {HELP}")
    return True


def show_sources(answer: Answer | None) -> None:
    if answer is None:
        out.print("No answer yet: ask a question first.")
        return
    for n, hit in enumerate(answer.sources, 1):
        p = hit.paper
        link = f" {p.link}" if p.link else ""
        out.print(
            f"[{n}] {p.display_title} ({p.date or p.date_raw or 'undated'}; {p.source}; id {p.paper_id}){link}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def parse_filters(args: list[str], current: Filters) -> Filters:
    """`year_from=2020 year_to=2024 source=a.txt source=b.txt` over the current filters; `KEY=` clears one."""
    years = {"year_from": current.year_from, "year_to": current.year_to}
    sources: list[str] | None = None  # None: keep the current ones
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in ("year_from", "year_to", "source"):
            raise QuestionError(f"/filters: {arg!r} is not year_from=YEAR, year_to=YEAR or source=FILE")
        if key == "source":
            sources = (sources or []) + ([value] if value else [])
        elif value and not value.isdigit():
            raise QuestionError(f"/filters: {key} must be a year such as 2020, not {value!r}")
        else:
            years[key] = int(value) if value else None
    if years["year_from"] is not None and years["year_to"] is not None and years["year_from"] > years["year_to"]:
        raise QuestionError(f"/filters: year_from {years['year_from']} is after year_to {years['year_to']}; swap them")
    return Filters(years["year_from"], years["year_to"], current.sources if sources is None else tuple(sources))


def describe(filters: Filters) -> str:
    def shown(year: int | None) -> str:
        return "any" if year is None else str(year)

    return f"year_from={shown(filters.year_from)} year_to={shown(filters.year_to)} source={', '.join(filters.sources) or 'any'}"
