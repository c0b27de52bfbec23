"""Give an InfiniRetri query engine to a LlamaIndex ReAct agent as a tool, fully offline.

The query engine holds a long document (default: the standard library's docstrings with the
needle-in-a-haystack sentence inserted) and becomes a ``QueryEngineTool``. A scripted LLM plays the
agent's reasoning (call the tool once, then answer with its observation) so the example runs
without any hosted model; the tool itself runs the real InfiniRetri engine on the local model.
Swap ``ScriptedReActLLM`` for any real LlamaIndex LLM to get a real agent.

Usage:
    python cookbook/llama_index_agent.py [TEXT_FILE] [--question Q] [--context-tokens 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from llama_index.core import Document
from llama_index.core.agent.workflow import ReActAgent, ToolCall, ToolCallResult
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.tools import QueryEngineTool

from infiniretri_integrations import InfiniRetriEngine, default_model
from infiniretri_integrations.evaluation.niah import STANDARD_QUESTION, build_case, stdlib_docstrings
from infiniretri_integrations.llama_index import InfiniRetriQueryEngine


class ScriptedReActLLM(CustomLLM):
    """A stand-in planner: first turn calls ``tool_name`` with ``question``, second turn answers
    with the tool's observation."""

    tool_name: str
    question: str
    turns: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="scripted-react")

    def _reply(self, prompt: str) -> str:
        self.turns += 1
        if self.turns == 1:
            return (
                "Thought: The loaded document should answer this. I need to use a tool.\n"
                f"Action: {self.tool_name}\nAction Input: {json.dumps({'input': self.question})}"
            )
        # the last observation, without the chat roles that the default messages_to_prompt appends
        observation = prompt.rsplit("Observation:", 1)[-1].split("\nassistant:", 1)[0].strip()
        return f"Thought: I can answer without using any more tools.\nAnswer: {observation}"

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._reply(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self._reply(prompt)

        def gen() -> CompletionResponseGen:  # llm_completion_callback needs a generator, not an iterator
            yield CompletionResponse(text=text, delta=text)

        return gen()


async def run(agent: ReActAgent, user_msg: str) -> None:
    handler = agent.run(user_msg=user_msg)
    async for event in handler.stream_events():
        if isinstance(event, ToolCall) and not isinstance(event, ToolCallResult):
            print(f"Tool call: {event.tool_name}({event.tool_kwargs})")
        elif isinstance(event, ToolCallResult):
            output = event.tool_output
            print(f"Tool result: {output.content}")
            for item in output.raw_output.source_nodes:
                meta = item.node.metadata
                print(
                    f"  used [{item.score:5.2f}] {item.node.ref_doc_id} {meta['sentence_start']}-{meta['sentence_end']}:"
                    f" {' '.join(item.node.text.split())[:100]}"
                )
    final = await handler
    print(f"\nAgent answer: {final.response.content}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text_file", nargs="?", help="a UTF-8 text file (default: stdlib docstrings + needle)")
    parser.add_argument("--question", default=None)
    parser.add_argument("--context-tokens", type=int, default=2000)
    args = parser.parse_args()

    lm = default_model()
    engine = InfiniRetriEngine(lm, chunk_size=512, tokens_per_pass=48, max_new_tokens=48)
    if args.text_file:
        text = Path(args.text_file).read_text(encoding="utf-8", errors="replace")
        question = args.question or STANDARD_QUESTION
        source = args.text_file
    else:
        case = build_case(stdlib_docstrings(), lm.tokenizer, args.context_tokens, 35)
        text, question, source = case.text, args.question or case.question, "stdlib-haystack"

    query_engine = InfiniRetriQueryEngine.from_documents([Document(text=text, id_=source)], engine=engine)
    tool = QueryEngineTool.from_defaults(
        query_engine,
        name="search_document",
        description="Answers questions from the loaded document, citing the sentences it used.",
    )
    agent = ReActAgent(tools=[tool], llm=ScriptedReActLLM(tool_name=tool.metadata.name, question=question))
    print(f"User: {question}")
    asyncio.run(run(agent, question))


if __name__ == "__main__":
    main()
