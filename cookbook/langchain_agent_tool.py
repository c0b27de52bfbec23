"""Give InfiniRetri to an agent as a tool.

The retriever holds a long document (default: the standard library's docstrings with the
needle-in-a-haystack sentence inserted); ``create_infiniretri_tool`` turns it into a LangChain
tool. A scripted tool-calling chat model (``GenericFakeChatModel``) plays the agent's planner so
the example runs offline: it decides to call the tool, the tool's output goes back as a
``ToolMessage``, and the local model writes the final answer from it.

Usage:
    python cookbook/langchain_agent_tool.py [TEXT_FILE] [--question Q] [--context-tokens 3000]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from infiniretri_integrations import InfiniRetriEngine, default_model
from infiniretri_integrations.evaluation.niah import STANDARD_QUESTION, build_case, stdlib_docstrings
from infiniretri_integrations.langchain import InfiniRetriRetriever, create_infiniretri_tool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text_file", nargs="?", help="a UTF-8 text file (default: stdlib docstrings + needle)")
    parser.add_argument("--question", default=None)
    parser.add_argument("--context-tokens", type=int, default=3000)
    args = parser.parse_args()

    lm = default_model()
    engine = InfiniRetriEngine(lm, chunk_size=512, tokens_per_pass=48, max_new_tokens=48)
    if args.text_file:
        text = Path(args.text_file).read_text(encoding="utf-8", errors="replace")
        question = args.question or STANDARD_QUESTION
    else:
        case = build_case(stdlib_docstrings(), lm.tokenizer, args.context_tokens, 35)
        text, question = case.text, args.question or case.question

    retriever = InfiniRetriRetriever.from_texts(
        [text], metadatas=[{"source": args.text_file or "stdlib"}], engine=engine, k=4
    )
    tool = create_infiniretri_tool(
        retriever,
        name="search_document",
        description="Finds the sentences of the loaded document that answer a question.",
    )
    print(f"Tool: {tool.name}: {tool.description}\nArguments: {tool.args}\n")

    # The planner: a scripted chat model that calls the tool once, then hands over.
    planner = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[{"name": tool.name, "args": {"query": question}, "id": "call_1", "type": "tool_call"}],
                ),
                AIMessage(content="I have the relevant sentences."),
            ]
        )
    )  # a real chat model would be bound with .bind_tools([tool])

    messages: list[BaseMessage] = [HumanMessage(question)]
    while True:
        reply = planner.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            print(f"Agent calls {call['name']}({call['args']})")
            result = tool.invoke(call)  # a ToolCall in, a ToolMessage out
            assert isinstance(result, ToolMessage)
            print(f"Tool output:\n{result.content}\n")
            messages.append(result)

    evidence = "\n\n".join(str(m.content) for m in messages if isinstance(m, ToolMessage))
    print(f"Question: {question}")
    print(f"Answer (local model from the tool output): {engine.answer_from(evidence, question).text}")


if __name__ == "__main__":
    main()
