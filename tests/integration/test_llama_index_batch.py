"""LlamaIndex batch path: ``InfiniRetriQueryEngine.query_many``/``aquery_many`` and
``InfiniRetriSynthesizer.synthesize_many`` read the nodes once for all queries (retrieve_many)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.schema import Document, NodeRelationship, NodeWithScore, QueryBundle, TextNode

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.llama_index import InfiniRetriQueryEngine, InfiniRetriSynthesizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = ["Where does Bob live?", "What does Alice drink?", "Which city has the Colosseum?"]


def _documents(stdlib_haystack: str) -> list[Document]:
    return [
        Document(text="Alice lives in Paris. She drinks tea. " + stdlib_haystack[:3000], id_="a", metadata={"k": 1}),
        Document(text="Bob lives in Rome. He bakes bread near the Colosseum. " + stdlib_haystack[3000:6000], id_="b"),
    ]


def _summary(response) -> tuple[str, list[tuple[str, str]]]:
    return str(response), [
        (n.node.relationships[NodeRelationship.SOURCE].node_id, n.node.text) for n in response.source_nodes
    ]


@pytest.fixture
def engine(tiny_llama):
    return InfiniRetriEngine(tiny_llama, chunk_size=256, tokens_per_pass=40, max_sentence_tokens=64, max_new_tokens=4)


def test_query_many_reads_once_and_equals_query(engine, stdlib_haystack, monkeypatch):
    documents = _documents(stdlib_haystack)
    query_engine = InfiniRetriQueryEngine.from_documents(documents, engine=engine)
    calls: list[int] = []
    original = engine.retrieve_many
    monkeypatch.setattr(engine, "retrieve_many", lambda *a, **kw: calls.append(len(a[1])) or original(*a, **kw))
    responses = query_engine.query_many([QUESTIONS[0], QueryBundle(QUESTIONS[1]), QUESTIONS[2]])
    assert calls == [3]  # every query got all the nodes: one read for the three
    assert [_summary(r) for r in responses] == [_summary(query_engine.query(q)) for q in QUESTIONS]
    texts = {d.doc_id: d.text for d in documents}
    for response in responses:
        for item in response.source_nodes:
            meta = item.node.metadata
            parent = item.node.relationships[NodeRelationship.SOURCE].node_id
            assert texts[parent][meta["sentence_start"] : meta["sentence_end"]] == item.node.text
    async_responses = asyncio.run(query_engine.aquery_many(QUESTIONS))
    assert [_summary(r) for r in async_responses] == [_summary(r) for r in responses]
    shared = query_engine.query_many(QUESTIONS, share_context=True)
    assert len(shared) == 3 and all(r.source_nodes for r in shared)
    with pytest.raises(TypeError, match="each query must be a str or QueryBundle, got int"):
        query_engine.query_many([QUESTIONS[0], 3])


def test_synthesize_many_groups_nothing_and_handles_empty(engine):
    synthesizer = InfiniRetriSynthesizer(engine)
    nodes = [NodeWithScore(node=TextNode(text="Bob lives in Rome. He bakes bread.", id_="n1"), score=1.0)]
    many = synthesizer.synthesize_many(QUESTIONS[:2], nodes)
    assert [_summary(r) for r in many] == [_summary(synthesizer.synthesize(q, nodes)) for q in QUESTIONS[:2]]
    assert synthesizer.synthesize_many([], nodes) == []
    assert [str(r) for r in synthesizer.synthesize_many(QUESTIONS[:1], [])] == ["Empty Response"]


@pytest.mark.real_model
def test_query_many_on_the_packaged_model(real_lm):
    documents = [
        Document(text="Bob lives in Rome. He works as a baker. Alice lives in Paris. Her cat is Tom.", id_="p")
    ]
    query_engine = InfiniRetriQueryEngine.from_documents(
        documents, engine=InfiniRetriEngine(real_lm, max_new_tokens=12)
    )
    questions = ["What is the name of Alice's cat?", "Where does Bob live?"]
    responses = query_engine.query_many(questions)
    assert [_summary(r) for r in responses] == [_summary(query_engine.query(q)) for q in questions]
    assert "Tom" in " ".join(n.node.text for n in responses[0].source_nodes)
