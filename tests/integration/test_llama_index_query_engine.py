"""LlamaIndex adapter end to end: query engine (sync, async, streaming) and a ReAct agent tool."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.base.response.schema import AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.schema import Document, NodeRelationship, QueryBundle
from llama_index.core.tools import QueryEngineTool

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.evaluation.niah import answer_has_facts, build_case
from infiniretri_integrations.llama_index import InfiniRetriQueryEngine

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPTIONS = {"chunk_size": 256, "tokens_per_pass": 12, "max_new_tokens": 24}


@pytest.fixture(scope="module")
def needle(real_lm, stdlib_haystack):
    case = build_case(stdlib_haystack, real_lm.tokenizer, 500, 40)
    cut = case.text.find("\n\n", case.needle_span[1])
    cut = cut if cut > 0 else case.needle_span[1]
    docs = [
        Document(text=case.text[:cut], id_="first", metadata={"source": "first.txt"}),
        Document(text=case.text[cut:], id_="second", metadata={"source": "second.txt"}),
    ]
    return docs, case.question


@pytest.fixture(scope="module")
def engine(real_lm):
    return InfiniRetriEngine(real_lm, show_progress=False, **OPTIONS)


def _check_sources(response, docs) -> None:
    by_id = {d.node_id: d for d in docs}
    assert any("Dolores Park" in n.node.text for n in response.source_nodes)
    for item in response.source_nodes:
        parent = by_id[item.node.relationships[NodeRelationship.SOURCE].node_id]
        meta = item.node.metadata
        assert parent.text[meta["sentence_start"] : meta["sentence_end"]] == item.node.text
        assert meta["source"] == parent.metadata["source"]


def test_query_engine_sync_async_streaming(engine, needle):
    docs, question = needle
    query_engine = InfiniRetriQueryEngine.from_documents(docs, engine=engine)
    response = query_engine.query(question)
    assert isinstance(response, Response)
    assert answer_has_facts(response.response), response.response
    _check_sources(response, docs)

    async_response = asyncio.run(query_engine.aquery(question))
    assert async_response.response == response.response
    _check_sources(async_response, docs)

    streaming = InfiniRetriQueryEngine.from_documents(docs, engine=engine, streaming=True)
    streamed = streaming.query(question)
    assert isinstance(streamed, StreamingResponse)
    pieces = list(streamed.response_gen)
    assert len(pieces) > 1 and "".join(pieces) == response.response
    _check_sources(streamed, docs)

    async def consume() -> tuple[list[str], AsyncStreamingResponse]:
        result = await streaming.aquery(question)
        assert isinstance(result, AsyncStreamingResponse)
        return [piece async for piece in result.async_response_gen()], result

    async_pieces, async_streamed = asyncio.run(consume())
    assert "".join(async_pieces) == response.response
    _check_sources(async_streamed, docs)


def test_query_engine_split_nodes_keep_chain_to_documents(engine, needle):
    docs, question = needle
    query_engine = InfiniRetriQueryEngine.from_documents(docs, engine=engine, node_chunk_size=128)
    nodes = query_engine.retrieve(QueryBundle(question))
    assert len(nodes) > len(docs)
    response = query_engine.synthesize(QueryBundle(question), nodes)
    parents = {n.node.node_id: n.node for n in nodes}
    for item in response.source_nodes:
        parent = parents[item.node.ref_doc_id]
        assert parent.ref_doc_id in {"first", "second"}
        assert parent.text[item.node.metadata["sentence_start"] : item.node.metadata["sentence_end"]] == item.node.text


def test_from_documents_relays_retrieval_and_answer_options(engine, needle, real_lm, monkeypatch):
    docs, question = needle
    calls: dict[str, list[dict]] = {"retrieve": [], "answer_from": []}
    for name, seen in calls.items():
        original = getattr(engine, name)

        def spy(*args, _original=original, _seen=seen, **kwargs):
            _seen.append(kwargs)
            return _original(*args, **kwargs)

        monkeypatch.setattr(engine, name, spy)
    # engine positionally (relayed through from_nodes to from_retriever), one retrieval and one answer option
    query_engine = InfiniRetriQueryEngine.from_documents(docs, engine, tokens_per_pass=6, max_new_tokens=2)
    response = query_engine.query(question)
    assert query_engine.synthesizer.engine is engine
    assert [c.get("tokens_per_pass") for c in calls["retrieve"]] == [6]  # the retrieval option: retrieve only
    assert "max_new_tokens" not in calls["retrieve"][0]
    assert [c.get("max_new_tokens") for c in calls["answer_from"]] == [2]  # the answer option: answer_from only
    assert "tokens_per_pass" not in calls["answer_from"][0]
    assert len(real_lm.tokenizer(response.response, add_special_tokens=False)["input_ids"]) <= 3
    assert response.source_nodes


def test_from_nodes_relays_arguments_to_from_retriever(engine, needle):
    from llama_index.core.callbacks import CallbackManager

    docs, _ = needle
    manager = CallbackManager([])
    query_engine = InfiniRetriQueryEngine.from_nodes(docs, engine, None, True, callback_manager=manager, chunk_size=128)
    assert query_engine.synthesizer.engine is engine and query_engine.synthesizer._streaming
    assert query_engine.callback_manager is manager and query_engine.synthesizer.callback_manager is manager
    assert query_engine.synthesizer._options == {"chunk_size": 128}
    with pytest.raises(TypeError, match="positional"):
        InfiniRetriQueryEngine.from_documents(docs, engine, None, False, "extra")


class ScriptedReActLLM(CustomLLM):
    """Plays a fixed ReAct script: call the tool once, then answer with what it returned."""

    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="scripted-react", is_chat_model=False)

    def _next(self, prompt: str) -> str:
        self.calls += 1
        if self.calls == 1:
            return (
                "Thought: The documents can answer this; I need to use a tool.\n"
                "Action: sf_docs\n"
                'Action Input: {"input": "What is the best thing to do in San Francisco?"}'
            )
        observation = prompt.rsplit("Observation:", 1)[-1].strip().splitlines()[0]
        return f"Thought: I can answer without using any more tools.\nAnswer: {observation}"

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs) -> CompletionResponse:
        return CompletionResponse(text=self._next(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs):
        text = self._next(prompt)

        def gen():
            yield CompletionResponse(text=text, delta=text)

        return gen()


def test_query_engine_tool_in_react_agent(engine, needle):
    from llama_index.core.agent.workflow import ReActAgent, ToolCallResult

    docs, _ = needle
    tool = QueryEngineTool.from_defaults(
        InfiniRetriQueryEngine.from_documents(docs, engine=engine),
        name="sf_docs",
        description="Answers questions about the loaded documents.",
    )
    llm = ScriptedReActLLM()
    agent = ReActAgent(tools=[tool], llm=llm)

    async def run():
        handler = agent.run(user_msg="What should I do in San Francisco?")
        results = [event async for event in handler.stream_events() if isinstance(event, ToolCallResult)]
        return results, await handler

    results, final = asyncio.run(run())
    assert len(results) == 1 and results[0].tool_name == "sf_docs"
    output = results[0].tool_output
    assert answer_has_facts(output.content), output.content
    assert any("Dolores Park" in n.node.text for n in output.raw_output.source_nodes)
    assert answer_has_facts(str(final.response)), final
    assert llm.calls == 2
