"""Behaviour of the LangChain adapter on the real packaged model: provenance, grouping, k,
compression budgets, streaming QA with custom events, async concurrency, LCEL chains, laziness."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnablePassthrough

from infiniretri_integrations import InfiniRetriEngine, RetrievalConfig, RetrievalStats
from infiniretri_integrations.langchain import (
    PROGRESS_EVENT,
    SENTENCES_EVENT,
    InfiniRetriCompressor,
    InfiniRetriQA,
    InfiniRetriRetriever,
    create_infiniretri_tool,
)

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_torch_thread")]

NEEDLE = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day."
QUESTION = "What is the best thing to do in San Francisco?"
TEXTS = [
    "Alice lives in Paris. She likes tea and reads novels every evening. Her cat is called Tom.",
    "Bob lives in Rome.  He drinks coffee every morning.\nHe works as a baker near the Colosseum.",
    f"Tourists ask many things.\n\n{NEEDLE} The weather there changes quickly.",
    "Carol lives in Berlin. She plays the violin. Her brother studies physics in Munich.",
]
DOCS = [
    Document(page_content=t, id=f"doc-{i}", metadata={"n": i, "source": f"notes/{i}.txt"}) for i, t in enumerate(TEXTS)
]


@pytest.fixture(scope="module")
def engine(real_lm: Any) -> InfiniRetriEngine:
    return InfiniRetriEngine(real_lm, chunk_size=256, tokens_per_pass=24, max_new_tokens=12)


def count_tokens(text: str) -> int:
    """A stand-in for any token counter (the compressor takes a callable or an LLM)."""
    return len(text.split())


def _check_provenance(docs: list[Document], sources: list[Document]) -> None:
    for doc in docs:
        source = sources[doc.metadata["source_index"]]
        assert doc.metadata["source_id"] == source.id
        assert doc.id == f"{source.id}:{doc.metadata['chunk_start_index']}-{doc.metadata['chunk_end_index']}"
        for key, value in source.metadata.items():
            assert doc.metadata[key] == value
        spans = doc.metadata.get("spans", [(doc.metadata["start_index"], doc.metadata["end_index"])])
        for start, end in spans:
            assert source.page_content[start:end].strip() == source.page_content[start:end]
            assert source.page_content[start:end] in doc.page_content


# ---------------------------------------------------------------------------------- retriever
def test_retriever_sentences_keep_ids_metadata_and_exact_spans(engine: InfiniRetriEngine) -> None:
    retriever = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=None)
    docs = retriever.invoke(QUESTION)
    assert docs, "the engine kept nothing"
    _check_provenance(docs, DOCS)
    for doc in docs:
        source = DOCS[doc.metadata["source_index"]].page_content
        assert source[doc.metadata["start_index"] : doc.metadata["end_index"]] == doc.page_content
        assert isinstance(doc.metadata["relevance_score"], float)
        assert isinstance(doc.metadata["sentence_index"], int)
    assert NEEDLE in [d.page_content for d in docs]
    order = [(d.metadata["source_index"], d.metadata["start_index"]) for d in docs]
    assert order == sorted(order), "results come back in document order"


def test_retriever_k_keeps_best_scores_in_document_order(engine: InfiniRetriEngine) -> None:
    retriever = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=None)
    everything = retriever.invoke(QUESTION)
    best = sorted(everything, key=lambda d: -d.metadata["relevance_score"])[:2]
    limited = retriever.invoke(QUESTION, k=2)
    assert len(limited) == 2
    assert {(d.metadata["source_index"], d.metadata["start_index"]) for d in limited} == {
        (d.metadata["source_index"], d.metadata["start_index"]) for d in best
    }
    assert [d.metadata["source_index"] for d in limited] == sorted(d.metadata["source_index"] for d in limited)
    assert retriever.invoke(QUESTION, k=0) == []


def test_retriever_groups_by_document(engine: InfiniRetriEngine) -> None:
    sentences = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=None).invoke(QUESTION)
    grouped = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=None, group_by="document").invoke(QUESTION)
    _check_provenance(grouped, DOCS)
    assert [d.metadata["source_index"] for d in grouped] == sorted({d.metadata["source_index"] for d in sentences})
    for doc in grouped:
        members = [s for s in sentences if s.metadata["source_index"] == doc.metadata["source_index"]]
        assert doc.metadata["relevance_score"] == max(s.metadata["relevance_score"] for s in members)
        assert doc.metadata["spans"] == [(s.metadata["start_index"], s.metadata["end_index"]) for s in members]
        assert doc.metadata["sentence_indices"] == [s.metadata["sentence_index"] for s in members]
        position = 0
        for member in members:  # kept sentences appear in order in the joined text
            position = doc.page_content.index(member.page_content, position) + len(member.page_content)


async def test_retriever_async_matches_sync_and_reports_progress(engine: InfiniRetriEngine) -> None:
    retriever = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=3)
    sync_docs = retriever.invoke(QUESTION)
    events = [e async for e in retriever.astream_events(QUESTION, version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert {e["name"] for e in custom} == {PROGRESS_EVENT, SENTENCES_EVENT}
    progress = [e["data"] for e in custom if e["name"] == PROGRESS_EVENT]
    assert progress[-1]["chunk_index"] == progress[-1]["chunk_count"] - 1
    end = next(e for e in events if e["event"] == "on_retriever_end")
    assert end["data"]["output"] == sync_docs
    assert await retriever.ainvoke(QUESTION) == sync_docs


def test_retriever_empty_corpus_and_bad_options(engine: InfiniRetriEngine) -> None:
    assert InfiniRetriRetriever(engine=engine).invoke(QUESTION) == []
    with pytest.raises(ValueError, match="'paragraph'"):
        InfiniRetriRetriever(group_by="paragraph")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="-1"):
        InfiniRetriRetriever(k=-1)
    with pytest.raises(ValueError, match="tokens_per_pass must be a positive integer, got 0"):
        InfiniRetriRetriever(tokens_per_pass=0)
    with pytest.raises(ValueError, match="max_new_tokens is an answer option and InfiniRetriRetriever does not answer"):
        InfiniRetriRetriever(max_new_tokens=5)
    with pytest.raises(ValueError, match="tokens_per_pass=8 does nothing with token_budget=64"):
        InfiniRetriCompressor(tokens_per_pass=8, token_budget=64)
    with pytest.raises(ValueError, match="same length"):
        InfiniRetriRetriever.from_texts(["a", "b"], metadatas=[{}])
    with pytest.raises(ValueError, match="non-empty"):
        InfiniRetriRetriever(docs=DOCS, engine=engine).invoke("   ")


def test_construction_does_not_load_weights() -> None:
    engine = InfiniRetriEngine(chunk_size=256)  # default model, not loaded
    retriever = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=2)
    compressor = InfiniRetriCompressor(engine=engine, token_budget=50)
    qa = InfiniRetriQA(engine=engine, documents=DOCS)
    tool = create_infiniretri_tool(retriever)
    InfiniRetriRetriever.from_texts(TEXTS, retrieval_config=RetrievalConfig(tokens_per_pass=10, chunk_size=256))
    assert (retriever.engine, compressor.engine, qa.engine) == (engine, engine, engine)
    assert tool.name == "infiniretri_search"
    assert engine.model_loaded is False


# ---------------------------------------------------------------------------------- compressor
def test_compressor_in_contextual_compression_retriever(engine: InfiniRetriEngine) -> None:
    class AllDocs(InfiniRetriRetriever):  # any base retriever; this one just returns the corpus
        def _get_relevant_documents(self, query: str, *, run_manager: Any, k: int | None = None) -> list[Document]:
            return list(self.docs)

    base = AllDocs(docs=DOCS, engine=engine)
    compressor = InfiniRetriCompressor(engine=engine, group_by="sentence")
    docs = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base).invoke(QUESTION)
    assert NEEDLE in [d.page_content for d in docs]
    _check_provenance(docs, DOCS)
    assert compressor.compress_documents([], QUESTION) == []


def test_compressor_token_budget_is_exact(engine: InfiniRetriEngine) -> None:
    unlimited = InfiniRetriCompressor(engine=engine, group_by="sentence", tokens_per_pass=64)
    everything = unlimited.compress_documents(DOCS, QUESTION)
    total = sum(count_tokens(d.page_content) for d in everything)
    budget = total // 2
    limited = InfiniRetriCompressor(engine=engine, group_by="sentence", token_budget=budget, token_counter=count_tokens)
    kept = limited.compress_documents(DOCS, QUESTION)
    kept_tokens = sum(count_tokens(d.page_content) for d in kept)
    assert total > budget >= kept_tokens > 0
    kept_keys = {(d.metadata["source_index"], d.metadata["sentence_index"]) for d in kept}
    dropped = [d for d in everything if (d.metadata["source_index"], d.metadata["sentence_index"]) not in kept_keys]
    assert dropped
    assert min(d.metadata["relevance_score"] for d in kept) >= max(d.metadata["relevance_score"] for d in dropped)
    # grouped documents are counted the same way, here by an LLM's own get_num_tokens
    grouped = InfiniRetriCompressor(
        engine=engine, token_budget=budget, token_counter=_WordCountingLLM(responses=["unused"])
    )
    docs = grouped.compress_documents(DOCS, QUESTION)
    assert 0 < sum(count_tokens(d.page_content) for d in docs) <= budget
    _check_provenance(docs, DOCS)


class _WordCountingLLM(FakeListLLM):
    """A LangChain LLM whose ``get_num_tokens`` counts words (the compressor asks the LLM)."""

    def get_num_tokens(self, text: str) -> int:
        return count_tokens(text)


async def test_compressor_async_matches_sync(engine: InfiniRetriEngine) -> None:
    compressor = InfiniRetriCompressor(engine=engine, k=2)
    sync_docs = compressor.compress_documents(DOCS, QUESTION)
    assert len(sync_docs) == 2
    assert await compressor.acompress_documents(DOCS, QUESTION) == sync_docs


# ---------------------------------------------------------------------------------- QA runnable
def test_qa_streams_tokens_equal_to_invoke(engine: InfiniRetriEngine) -> None:
    qa = InfiniRetriQA(engine=engine, documents=DOCS)
    answer = qa.invoke(QUESTION)
    chunks = list(qa.stream(QUESTION))
    assert isinstance(answer, str) and answer
    assert len(chunks) > 1
    assert "".join(chunks) == answer
    assert qa.invoke({"question": QUESTION, "documents": TEXTS}) == answer


def test_qa_with_sources(engine: InfiniRetriEngine) -> None:
    qa = InfiniRetriQA(engine=engine, with_sources=True)
    result = qa.invoke({"question": QUESTION, "documents": DOCS})
    assert set(result) == {"answer", "sentences", "stats"}
    assert isinstance(result["stats"], RetrievalStats) and result["stats"].documents == len(DOCS)
    assert NEEDLE in [d.page_content for d in result["sentences"]]
    _check_provenance(result["sentences"], DOCS)
    final = None
    for chunk in qa.stream({"question": QUESTION, "documents": DOCS}):
        final = chunk if final is None else final + chunk
    assert final is not None and final["answer"] == result["answer"]
    assert final["sentences"] == result["sentences"]
    with pytest.raises(ValueError, match="no documents"):
        qa.invoke(QUESTION)


async def test_qa_astream_events_show_progress_and_sentences(engine: InfiniRetriEngine) -> None:
    qa = InfiniRetriQA(engine=engine, documents=DOCS)
    answer = await qa.ainvoke(QUESTION)
    events = [e async for e in qa.astream_events(QUESTION, version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    names = [e["name"] for e in custom]
    assert PROGRESS_EVENT in names and names[-1] == SENTENCES_EVENT
    kept = custom[-1]["data"]["sentences"]
    assert NEEDLE in [s["text"] for s in kept]
    assert all(s["token_count"] > 0 and isinstance(s["metadata"], dict) for s in kept)  # RetrievedSentence.to_dict
    pieces = [e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream"]
    assert len(pieces) > 1 and "".join(pieces) == answer
    end = next(e for e in events if e["event"] == "on_chain_end")
    assert end["data"]["output"] == answer


async def test_qa_concurrent_async_calls_match_sequential(engine: InfiniRetriEngine) -> None:
    qa = InfiniRetriQA(engine=engine, documents=DOCS)
    questions = [QUESTION, "Where does Bob live?"]
    sequential = [qa.invoke(q) for q in questions]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        batched = await qa.abatch(questions)
        streamed = await asyncio.gather(*(_collect(qa, q) for q in questions))
    finally:
        task.cancel()
    assert batched == sequential
    assert streamed == sequential
    assert ticks > 20, "the event loop was blocked while the model ran"


async def _collect(qa: InfiniRetriQA, question: str) -> str:
    return "".join([piece async for piece in qa.astream(question)])


# ---------------------------------------------------------------------------------- LCEL and tools
class _Prompts(BaseCallbackHandler):
    def __init__(self) -> None:
        self.prompts: list[str] = []

    def on_llm_start(self, serialized: Any, prompts: list[str], **kwargs: Any) -> None:
        self.prompts.extend(prompts)


def test_lcel_rag_chain_with_fake_llm(engine: InfiniRetriEngine) -> None:
    retriever = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=3)

    def format_docs(docs: list[Document]) -> str:
        return "\n\n".join(d.page_content for d in docs)

    prompt = PromptTemplate.from_template("Answer from the context.\n\nContext:\n{context}\n\nQuestion: {question}")
    llm = FakeListLLM(responses=["Eat a sandwich in Dolores Park."])
    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()
    seen = _Prompts()
    assert chain.invoke(QUESTION, config={"callbacks": [seen]}) == "Eat a sandwich in Dolores Park."
    assert len(seen.prompts) == 1
    assert NEEDLE in seen.prompts[0] and QUESTION in seen.prompts[0]


def test_tool_returns_retrieved_text(engine: InfiniRetriEngine) -> None:
    retriever = InfiniRetriRetriever.from_documents(DOCS, engine=engine, k=2)
    tool = create_infiniretri_tool(retriever, name="notes_search", description="Search personal notes.")
    output = tool.invoke({"query": QUESTION})
    assert isinstance(output, str) and NEEDLE in output
    with pytest.raises(TypeError, match="BaseRetriever"):
        create_infiniretri_tool("not a retriever")  # type: ignore[arg-type]


def test_importable_without_llama_index() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['llama_index'] = None; sys.modules['llama_index.core'] = None\n"
        "import infiniretri_integrations.langchain as m\n"
        "assert 'llama_index.core.utils' not in sys.modules\n"
        "print(m.InfiniRetriCompressor.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "InfiniRetriCompressor"


async def test_qa_astream_with_sources_and_early_stop(engine: InfiniRetriEngine) -> None:
    qa = InfiniRetriQA(engine=engine, documents=DOCS, with_sources=True)
    final = None
    async for chunk in qa.astream(QUESTION):
        final = chunk if final is None else final + chunk
    assert final is not None and final["answer"] == qa.invoke(QUESTION)["answer"]
    assert NEEDLE in [d.page_content for d in final["sentences"]]
    plain = InfiniRetriQA(engine=engine, documents=DOCS)
    stream = plain.stream(QUESTION)
    first = next(stream)
    stream.close()  # stops the generation worker instead of hanging
    assert first and final["answer"].startswith(first)
