"""``InfiniRetriRetriever.batch``/``abatch``: all queries in one read of the corpus (retrieve_many),
each with its own retriever run; tiny model for the contract, the packaged model for equality."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.langchain import SENTENCES_EVENT, InfiniRetriRetriever

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = ["Where does Bob live?", "What does Alice drink?", "Which city has the Colosseum?"]


class Runs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[int] = []
        self.errors: list[str] = []
        self.events: list[str] = []
        self.names: list[str] = []

    def on_retriever_start(self, serialized: Any, query: str, **kwargs: Any) -> None:
        self.started.append(query)
        self.names.append(kwargs.get("name") or "")

    def on_retriever_end(self, documents: Any, **kwargs: Any) -> None:
        self.ended.append(len(documents))

    def on_retriever_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(type(error).__name__)

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append(name)


def _docs(stdlib_haystack: str) -> list[Document]:
    return [
        Document("Alice lives in Paris. She drinks tea. " + stdlib_haystack[:3000], id="a", metadata={"who": "alice"}),
        Document("Bob lives in Rome. He bakes bread near the Colosseum. " + stdlib_haystack[3000:6000], id="b"),
    ]


def _key(documents: list[Document]) -> list[tuple[Any, ...]]:
    return [(d.id, d.page_content, d.metadata["relevance_score"]) for d in documents]


@pytest.fixture
def retriever(tiny_llama, stdlib_haystack):
    engine = InfiniRetriEngine(tiny_llama, chunk_size=256, tokens_per_pass=40, max_sentence_tokens=64)
    return InfiniRetriRetriever.from_documents(_docs(stdlib_haystack), engine=engine, k=5)


def test_batch_equals_invoke_per_query_with_one_run_each(retriever, monkeypatch):
    calls: list[int] = []
    original = retriever.get_engine().retrieve_many
    monkeypatch.setattr(
        retriever.get_engine(), "retrieve_many", lambda *a, **kw: calls.append(len(a[1])) or original(*a, **kw)
    )
    runs = Runs()
    batched = retriever.batch(QUESTIONS, {"callbacks": [runs], "run_name": "lookup"})
    assert calls == [3]  # one read of the corpus for the three queries
    assert [_key(d) for d in batched] == [_key(retriever.invoke(q)) for q in QUESTIONS]
    assert runs.started == QUESTIONS and runs.ended == [5, 5, 5] and runs.names == ["lookup"] * 3
    assert runs.events.count(SENTENCES_EVENT) == 3
    assert [len(d) for d in retriever.batch(QUESTIONS[:2], k=2)] == [2, 2]
    assert batched[0][0].metadata.get("who") == "alice" or any(d.id and d.id.startswith("b:") for d in batched[0])


def test_batch_invalid_query_fails_alone_with_return_exceptions(retriever):
    runs = Runs()
    out = retriever.batch([QUESTIONS[0], "   ", QUESTIONS[1]], {"callbacks": [runs]}, return_exceptions=True)
    assert isinstance(out[1], ValueError) and "non-empty" in str(out[1])
    assert _key(out[0]) == _key(retriever.invoke(QUESTIONS[0]))
    assert runs.errors == ["ValueError"] and len(runs.ended) == 2
    with pytest.raises(ValueError, match="non-empty string"):
        retriever.batch([QUESTIONS[0], ""])
    with pytest.raises(TypeError, match="Unknown batch option"):
        retriever.batch(QUESTIONS, topk=3)
    assert retriever.batch([]) == []


def test_abatch_equals_batch_and_share_context_keeps_provenance(retriever, stdlib_haystack):
    expected = [_key(d) for d in retriever.batch(QUESTIONS)]
    assert [_key(d) for d in asyncio.run(retriever.abatch(QUESTIONS))] == expected
    shared = retriever.model_copy(update={"share_context": True}).batch(QUESTIONS)
    sources = {d.id: d.page_content for d in _docs(stdlib_haystack)}
    for documents in shared:
        assert len(documents) == 5
        for doc in documents:
            start, end = doc.metadata["chunk_start_index"], doc.metadata["chunk_end_index"]
            assert sources[doc.metadata["source_id"]][start:end] == doc.page_content


def test_abatch_cancellation_stops_the_chunk_loop(retriever, tiny_llama, stdlib_haystack):
    long = InfiniRetriRetriever.from_texts([stdlib_haystack[:60_000]], engine=retriever.get_engine(), k=3)

    async def timed_out() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(long.abatch(QUESTIONS), 0.5)

    asyncio.run(timed_out())
    assert tiny_llama.lock.acquire(timeout=5)  # the loop stopped at its next pass
    tiny_llama.lock.release()


@pytest.mark.real_model
def test_batch_on_the_packaged_model_equals_invoke(real_lm):
    texts = [
        "Alice lives in Paris. She likes tea and reads novels every evening. Her cat is called Tom.",
        "Bob lives in Rome. He drinks coffee every morning. He works as a baker near the Colosseum.",
    ]
    retriever = InfiniRetriRetriever.from_texts(texts, engine=InfiniRetriEngine(real_lm), k=2)
    questions = ["Where does Bob work?", "What is the name of Alice's cat?"]
    batched = retriever.batch(questions)
    assert [_key(d) for d in batched] == [_key(retriever.invoke(q)) for q in questions]
    assert all(d.metadata["source_index"] == 1 for d in batched[0])  # Bob's text
    assert any("Tom" in d.page_content for d in batched[1])


def test_qa_batch_reads_each_document_set_once_and_answers_each(tiny_llama, stdlib_haystack, monkeypatch):
    from infiniretri_integrations.langchain import InfiniRetriQA

    engine = InfiniRetriEngine(tiny_llama, chunk_size=256, tokens_per_pass=40, max_sentence_tokens=64, max_new_tokens=4)
    docs = _docs(stdlib_haystack)
    qa = InfiniRetriQA(engine=engine, documents=docs, with_sources=True)
    calls: list[int] = []
    original = engine.retrieve_many
    monkeypatch.setattr(engine, "retrieve_many", lambda *a, **kw: calls.append(len(a[1])) or original(*a, **kw))
    other = {"question": "Where does Bob live?", "documents": ["Bob lives in Rome. He bakes bread."]}
    runs = Runs()
    out = qa.batch(
        [QUESTIONS[0], other, QUESTIONS[1], {"documents": docs}], {"callbacks": [runs]}, return_exceptions=True
    )
    assert sorted(calls) == [1, 2]  # the bound documents are read once for their two questions
    assert isinstance(out[3], ValueError) and "'question'" in str(out[3])
    for index, question in ((0, QUESTIONS[0]), (2, QUESTIONS[1])):
        single = qa.invoke(question)
        assert [d.page_content for d in out[index]["sentences"]] == [d.page_content for d in single["sentences"]]
        assert out[index]["answer"] == single["answer"]
    assert out[1]["sentences"][0].page_content.startswith("Bob lives in Rome")
    assert runs.events.count(SENTENCES_EVENT) == 3
    assert asyncio.run(qa.abatch([QUESTIONS[0]]))[0]["answer"] == out[0]["answer"]
    with pytest.raises(ValueError, match="'question'"):
        qa.batch([QUESTIONS[0], {"documents": docs}])
