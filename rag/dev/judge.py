"""Optional LLM-judged metrics (llama-index Faithfulness and Relevancy), only when an LLM is configured.

They are reported beside the deterministic metrics, never instead of them, and CI never needs them.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import PrivateAttr

from rag.llm import ChatModel
from rag.types import Answer


class JudgeLLM(CustomLLM):
    """Our ChatModel (same endpoint, timeouts and one-line errors) seen as a llama-index LLM."""

    _chat: Any = PrivateAttr()

    def __init__(self, chat: ChatModel) -> None:
        super().__init__()
        self._chat = chat

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self._chat.name, is_chat_model=False)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="".join(self._chat.stream([{"role": "user", "content": prompt}])))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = ""
        for piece in self._chat.stream([{"role": "user", "content": prompt}]):
            text += piece
            yield CompletionResponse(text=text, delta=piece)


def judge(answer: Answer, chat: ChatModel) -> dict[str, float | None]:
    """Faithfulness (is the answer backed by its sources?) and relevancy (does it answer the question?)."""
    from llama_index.core.evaluation import FaithfulnessEvaluator, RelevancyEvaluator

    if answer.refused or not answer.text.strip():
        return {"faithfulness": None, "relevancy": None}
    llm = JudgeLLM(chat)
    contexts = [h.paper.abstract for h in answer.sources]
    faithful = FaithfulnessEvaluator(llm=llm).evaluate(response=answer.text, contexts=contexts)
    relevant = RelevancyEvaluator(llm=llm).evaluate(query=answer.question, response=answer.text, contexts=contexts)
    return {"faithfulness": faithful.score, "relevancy": relevant.score}
