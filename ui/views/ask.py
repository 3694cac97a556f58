"""The Ask page: chat with the corpus, a thin layer over rag.answer.Engine (no retrieval or prompting here)."""

from __future__ import annotations

import streamlit as st
from common import get_engine, linked, md_escape, sidebar, source_card

from rag.answer import Streamed
from rag.errors import UserError
from rag.types import Answer, Conversation, Filters, Turn

EXAMPLES = [
    "which papers report FP8 training speedups?",
    "How much does MegaScale improve model FLOPs utilization?",
    "Which papers from 2019 are about vision-and-language pre-training?",
    "What is the capital of Australia?",
]


def show_answer(answer: Answer, index: int) -> None:
    """The checked answer with clickable [n] markers, a card per cited paper (every sentence it quotes
    highlighted), the relevant papers it left out collapsed; a refusal names its closest papers, a line each."""
    prefix = f"src-{index}"
    if answer.refused:
        st.info(md_escape(answer.text))
        if answer.sources:
            st.caption("Closest papers (none is about the question):")
            st.markdown("\n".join(f"- {md_escape(h.paper.display_title)}" for h in answer.sources))
    else:
        st.markdown(linked(answer.text, prefix))
        if answer.unsupported:
            st.error("Unsupported: no claim in this answer kept a citation that its source backs.")
        if answer.removed:
            st.warning(f"Removed citations to sources that were not given: {answer.removed}")
    if answer.notice:
        st.caption(md_escape(answer.notice))
    if answer.refused:
        return
    cited: dict[int, list] = {}
    for c in answer.citations:
        cited.setdefault(c.n, []).append(c)
    for n, hit in enumerate(answer.sources, 1):
        if found := cited.get(n):
            quotes = [(c.quote_start, c.quote_end) for c in found]
            source_card(n, hit, f"{prefix}-{n}", quotes, all(c.supported for c in found))
    left_out = [(n, h) for n, h in enumerate(answer.sources, 1) if h.paper.paper_id in set(answer.uncited)]
    if left_out:
        with st.expander(f"Also relevant, not quoted ({len(left_out)})"):
            for n, hit in left_out:
                source_card(n, hit, f"{prefix}-{n}")


def ask(question: str, filters: Filters, k: int | None) -> None:
    engine = get_engine()
    history = Conversation([Turn.of(m["question"], m["answer"]) for m in st.session_state.messages])
    with st.chat_message("user"):
        st.markdown(md_escape(question))
    with st.chat_message("assistant"):
        placeholder = st.empty()
        text = ""

        def reading(done: int, total: int, title: str) -> None:
            if title:  # only an LLM judge reports each paper it has read; the offline judge is instant
                placeholder.caption(f"Reading the papers: {done} of {total} ({md_escape(title)})")

        streamed = Streamed(engine.ask_stream(question, filters, k, history, on_progress=reading))
        try:
            for piece in streamed:
                text += piece
                placeholder.markdown(md_escape(text) + " ▌")
        except UserError as e:
            placeholder.error(f"{e}")
            return
        placeholder.empty()
        answer = streamed.answer
        index = len(st.session_state.messages)
        show_answer(answer, index)
    st.session_state.messages.append({"question": question, "answer": answer})


def main() -> None:
    st.session_state.setdefault("messages", [])
    st.title(
        "Ask the abstracts"
    )  # the frame first: the first run then loads the embedder and the index, with a spinner
    if st.sidebar.button("Start over", type="primary"):  # first in the sidebar, so no window is too short for it
        st.session_state.messages = []
        st.rerun()
    try:
        engine = get_engine()
    except UserError as e:
        st.error(f"{e}")
        st.stop()
    filters, k = sidebar(engine)
    for index, message in enumerate(st.session_state.messages):
        with st.chat_message("user"):
            st.markdown(md_escape(message["question"]))
        with st.chat_message("assistant"):
            show_answer(message["answer"], index)
    question = st.chat_input("Ask about the papers")
    if not st.session_state.messages:
        examples = st.empty()  # cleared once a question is asked, so no stale button is left to click
        with examples.container():
            st.markdown(
                "Every claim in an answer cites a paper of the corpus, with the sentence that supports it. Try:"
            )
            for example in EXAMPLES:
                if st.button(example, key=f"example-{example}"):
                    question = example
        if question:
            examples.empty()
    if question:
        ask(question, filters, k)


main()
