"""LlamaIndex adapter: node postprocessor, synthesizer, local LLM (real llama-index-core objects, real model)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Settings, SummaryIndex
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import Document, NodeRelationship, NodeWithScore, TextNode

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.evaluation.niah import build_case
from infiniretri_integrations.llama_index import (
    InfiniRetriLLM,
    InfiniRetriNodePostprocessor,
    InfiniRetriQueryEngine,
    InfiniRetriSynthesizer,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPTIONS = {"chunk_size": 256, "tokens_per_pass": 12, "max_new_tokens": 24}
NEEDLE_WORDS = ("sandwich", "Dolores Park")


def needle_documents(haystack: str, tokenizer, tokens: int = 600) -> tuple[list[Document], str]:
    """Three documents (needle in the middle one, never split) and the question."""
    case = build_case(haystack, tokenizer, tokens, 50)
    start, end = case.needle_span
    cut1 = case.text.rfind("\n\n", 0, start)
    cut2 = case.text.find("\n\n", end)
    cut1 = cut1 if cut1 > 0 else start
    cut2 = cut2 if cut2 > 0 else end
    parts = [case.text[:cut1], case.text[cut1:cut2], case.text[cut2:]]
    docs = [
        Document(text=part, id_=f"doc-{i}", metadata={"part": i, "file_name": f"part{i}.txt"})
        for i, part in enumerate(parts)
    ]
    return docs, case.question


@pytest.fixture(scope="module")
def needle(real_lm, stdlib_haystack):
    return needle_documents(stdlib_haystack, real_lm.tokenizer)


@pytest.fixture(scope="module")
def engine(real_lm):
    return InfiniRetriEngine(real_lm, show_progress=False, **OPTIONS)


class _Recorder(BaseEventHandler):
    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "_Recorder"

    def handle(self, event, **kwargs) -> None:
        self.events.append(event)


def _assert_sentence_provenance(source_nodes, docs) -> None:
    by_id = {d.node_id: d for d in docs}
    for item in source_nodes:
        node = item.node
        assert isinstance(node, TextNode)
        parent_id = node.relationships[NodeRelationship.SOURCE].node_id
        parent = by_id[parent_id]
        start, end = node.metadata["sentence_start"], node.metadata["sentence_end"]
        assert node.text == parent.text[start:end]
        assert node.metadata["part"] == parent.metadata["part"]
        assert node.metadata["file_name"] == parent.metadata["file_name"]
        assert isinstance(node.metadata["sentence_index"], int)
        assert item.score is not None


def test_postprocessor_in_retriever_query_engine(engine, needle):
    docs, question = needle
    llm = InfiniRetriLLM(engine, max_new_tokens=24)
    postprocessor = InfiniRetriNodePostprocessor(engine)
    index = SummaryIndex.from_documents(docs, transformations=[SentenceSplitter(chunk_size=128, chunk_overlap=0)])
    retriever = index.as_retriever()
    parents = [n.node for n in retriever.retrieve(question)]
    assert len(parents) > len(docs)
    query_engine = RetrieverQueryEngine.from_args(retriever, llm=llm, node_postprocessors=[postprocessor])
    recorder = _Recorder()
    root = get_dispatcher()
    root.add_event_handler(recorder)
    try:
        response = query_engine.query(question)
    finally:
        root.event_handlers.remove(recorder)

    texts = [n.node.text for n in response.source_nodes]
    assert any(all(word in t for word in NEEDLE_WORDS) for t in texts), texts
    _assert_sentence_provenance(response.source_nodes, parents)
    doc_ids = {d.node_id for d in docs}
    for item in response.source_nodes:  # sentence -> node -> document
        parent = next(p for p in parents if p.node_id == item.node.ref_doc_id)
        assert parent.ref_doc_id in doc_ids
        assert item.node.start_char_idx == parent.start_char_idx + item.node.metadata["sentence_start"]
    assert response.response.strip()

    starts = [e for e in recorder.events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in recorder.events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == 1 and len(ends) == 1
    assert starts[0].query.query_str == question and len(starts[0].nodes) == len(parents)
    assert [n.node.node_id for n in ends[0].nodes] == [n.node.node_id for n in response.source_nodes]


def test_postprocessor_parents_mode_and_top_n(engine, needle):
    docs, question = needle
    nodes = [NodeWithScore(node=d, score=0.5) for d in docs]
    parents = InfiniRetriNodePostprocessor(engine, mode="parents", top_n=1, tokens_per_pass=48).postprocess_nodes(
        nodes, query_str=question
    )
    assert len(parents) == 1
    assert parents[0].node is docs[1]  # the needle's document is the best one
    sentences = asyncio.run(
        InfiniRetriNodePostprocessor(engine, top_n=2, order="score", tokens_per_pass=48).apostprocess_nodes(
            nodes, query_str=question
        )
    )
    assert len(sentences) == 2
    assert sentences[0].score >= sentences[1].score
    assert sentences[0].score == pytest.approx(parents[0].score)
    assert "sandwich" in sentences[0].node.text


def test_synthesizer_streaming_matches_blocking(engine, needle):
    docs, question = needle
    nodes = [NodeWithScore(node=d) for d in docs]
    response = InfiniRetriSynthesizer(engine).synthesize(question, nodes)
    assert "sandwich" in response.response.lower()
    assert any("Dolores Park" in n.node.text for n in response.source_nodes)
    _assert_sentence_provenance(response.source_nodes, docs)

    streamed = InfiniRetriSynthesizer(engine, streaming=True).synthesize(question, nodes)
    pieces = list(streamed.response_gen)
    assert len(pieces) > 1
    assert "".join(pieces) == response.response
    assert [n.node.node_id for n in streamed.source_nodes] == [n.node.node_id for n in response.source_nodes]


def test_synthesizer_with_external_llm_gets_only_selected_sentences(engine, needle):
    from llama_index.core.llms.mock import MockLLM

    seen: list[str] = []

    class EchoLLM(MockLLM):
        def complete(self, prompt, formatted=False, **kwargs):
            seen.append(prompt)
            return super().complete("ok", formatted=formatted, **kwargs)

    docs, question = needle
    synthesizer = InfiniRetriSynthesizer(engine, llm=EchoLLM())
    assert not synthesizer.uses_local_model
    response = synthesizer.synthesize(question, [NodeWithScore(node=d) for d in docs])
    prompt = "\n".join(seen)
    assert "Dolores Park" in prompt
    assert len(prompt) < sum(len(d.text) for d in docs)  # fed the kept sentences, not the documents
    assert response.source_nodes and all(
        n.node.relationships[NodeRelationship.SOURCE].node_id.startswith("doc-") for n in response.source_nodes
    )


def test_no_openai_fallback_and_settings_untouched(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "")
    before = Settings._llm
    synthesizer = InfiniRetriSynthesizer()
    postprocessor = InfiniRetriNodePostprocessor(tokens_per_pass=5)
    query_engine = InfiniRetriQueryEngine.from_documents([Document(text="Bob lives in Rome.")], tokens_per_pass=5)
    assert Settings._llm is before  # nothing resolved Settings.llm (which would try OpenAI)
    assert isinstance(synthesizer._llm, InfiniRetriLLM)
    assert isinstance(query_engine.synthesizer._llm, InfiniRetriLLM)
    assert not synthesizer.engine.model_loaded and not postprocessor.engine.model_loaded  # lazy


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="'chunks'"):
        InfiniRetriNodePostprocessor(mode="chunks")
    with pytest.raises(ValueError, match="-1"):
        InfiniRetriNodePostprocessor(top_n=-1)
    with pytest.raises(TypeError, match="topk"):
        InfiniRetriSynthesizer(topk=3)
    with pytest.raises(TypeError, match="str"):
        InfiniRetriSynthesizer(llm="gpt-4o")
    with pytest.raises(ValueError, match="query"):
        InfiniRetriNodePostprocessor().postprocess_nodes([NodeWithScore(node=TextNode(text="x"))])


def test_local_llm_streams_tokens(real_lm):
    llm = InfiniRetriLLM(real_lm, max_new_tokens=12)
    meta = llm.metadata
    assert meta.context_window == real_lm.context_window and meta.num_output == 12
    full = llm.complete("Name one colour.").text
    deltas = [r.delta for r in llm.stream_complete("Name one colour.")]
    assert len(deltas) > 1
    assert "".join(deltas) == full
