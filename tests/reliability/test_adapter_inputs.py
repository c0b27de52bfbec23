"""Issue #14 item 9 (adapter part): bad and odd inputs to the LangChain and LlamaIndex classes.

- ``postprocess_nodes(None, ...)`` raises a TypeError naming the value (LlamaIndex's own
  postprocessors fail on None too, with a bare "'NoneType' object is not iterable").
- ``InfiniRetriRetriever.from_texts("one string")`` is one Document, not one per character.
- Kept pieces that are only whitespace (a long run of blanks is cut into token-sized pieces) never
  become empty Documents or nodes; the other outputs keep their ids and order.
"""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.core.outputs import output_id, sentence_span
from infiniretri_integrations.langchain import InfiniRetriCompressor, InfiniRetriQA, InfiniRetriRetriever
from infiniretri_integrations.llama_index import InfiniRetriNodePostprocessor, InfiniRetriSynthesizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTION = "What is the vault code?"
BLANKS = "The vault code is 4812. " + "\n \t" * 2000 + " Trains leave at noon. The garden has roses."
"""A long run of blanks: cut by tokens into pieces that are only whitespace, which the engine keeps."""


@pytest.fixture
def engine(tiny_llama) -> InfiniRetriEngine:
    return InfiniRetriEngine(tiny_llama, tokens_per_pass=2000, chunk_size=256, max_new_tokens=4, show_progress=False)


@pytest.fixture
def expected_ids(engine) -> list[str | None]:
    """Ids of the non-blank kept sentences of BLANKS (source id "doc"), in document order."""
    result = engine.retrieve([{"text": BLANKS, "id": "doc"}], QUESTION)
    assert any(not s.text.strip() for s in result.sentences), "the input no longer makes blank pieces"
    return [output_id("doc", *sentence_span(s)[1:]) for s in result.sentences if s.text.strip()]


# ------------------------------------------------------------------ postprocess_nodes(None)
@pytest.mark.parametrize("nodes", [None, "some text", 42])
def test_postprocess_nodes_names_a_value_that_is_no_list(engine, nodes):
    postprocessor = InfiniRetriNodePostprocessor(engine)
    with pytest.raises(TypeError, match=r"postprocess_nodes needs a list of NodeWithScore, got \w+: "):
        postprocessor.postprocess_nodes(nodes, query_str=QUESTION)


async def test_apostprocess_nodes_names_none(engine):
    postprocessor = InfiniRetriNodePostprocessor(engine)
    with pytest.raises(TypeError, match=r"got NoneType: None; pass \[\] when there is nothing to read"):
        await postprocessor.apostprocess_nodes(None, query_str=QUESTION)  # type: ignore[arg-type]
    assert await postprocessor.apostprocess_nodes([], query_str=QUESTION) == []


# ------------------------------------------------------------------ from_texts("one string")
def test_from_texts_takes_a_string_as_one_text(engine):
    retriever = InfiniRetriRetriever.from_texts(
        "Alice lives in Paris. Bob lives in Rome.", metadatas={"who": "both"}, ids="people", engine=engine
    )
    assert [(d.page_content, d.id, d.metadata) for d in retriever.docs] == [
        ("Alice lives in Paris. Bob lives in Rome.", "people", {"who": "both"})
    ]
    docs = retriever.invoke("Where does Bob live?")
    assert docs and all(d.metadata["source_id"] == "people" for d in docs)


# ------------------------------------------------------------------ whitespace-only kept pieces
def test_retriever_makes_no_blank_documents(engine, expected_ids):
    retriever = InfiniRetriRetriever.from_documents([Document(BLANKS, id="doc")], engine=engine, k=None)
    docs = retriever.invoke(QUESTION)
    assert all(d.page_content.strip() for d in docs)
    assert [d.id for d in docs] == expected_ids
    scored = InfiniRetriRetriever.from_documents(
        [Document(BLANKS, id="doc")], engine=engine, k=3, normalize_scores=True
    ).invoke(QUESTION)
    assert len(scored) == 3  # k counts real sentences, blank pieces take no place
    assert all(d.page_content.strip() for d in scored)


@pytest.mark.parametrize("group_by", ["sentence", "document"])
async def test_compressor_makes_no_blank_documents(engine, expected_ids, group_by):
    compressor = InfiniRetriCompressor(engine=engine, group_by=group_by)
    docs = await compressor.acompress_documents([Document(BLANKS, id="doc")], QUESTION)
    assert docs
    assert all(d.page_content.strip() for d in docs)
    if group_by == "sentence":
        assert [d.id for d in docs] == expected_ids
    else:
        (doc,) = docs
        spans = [tuple(span) for span in doc.metadata["chunk_spans"]]
        assert all(BLANKS[start:end].strip() for start, end in spans)
        assert [output_id("doc", *span) for span in spans] == expected_ids


def test_qa_sources_have_no_blank_documents(engine, expected_ids):
    qa = InfiniRetriQA(engine=engine, documents=[Document(BLANKS, id="doc")], with_sources=True)
    out = qa.invoke(QUESTION)
    assert [d.id for d in out["sentences"]] == expected_ids


def test_postprocessor_makes_no_blank_nodes(engine, expected_ids):
    nodes = [NodeWithScore(node=TextNode(text=BLANKS, id_="doc"), score=1.0)]
    kept = InfiniRetriNodePostprocessor(engine).postprocess_nodes(nodes, query_str=QUESTION)
    assert all(n.node.get_content().strip() for n in kept)
    assert [n.node.node_id for n in kept] == expected_ids
    parents = InfiniRetriNodePostprocessor(engine, mode="parents").postprocess_nodes(nodes, query_str=QUESTION)
    assert [n.node.node_id for n in parents] == ["doc"]


async def test_synthesizer_sources_have_no_blank_nodes(engine, expected_ids):
    nodes = [NodeWithScore(node=TextNode(text=BLANKS, id_="doc"), score=1.0)]
    synthesizer = InfiniRetriSynthesizer(engine)
    for response in (synthesizer.synthesize(QUESTION, nodes), await synthesizer.asynthesize(QUESTION, nodes)):
        assert [n.node.node_id for n in response.source_nodes] == expected_ids
        assert all(n.node.get_content().strip() for n in response.source_nodes)
