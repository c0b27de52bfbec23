"""LangChain standard test suites (langchain-tests) for the retriever, the compressor inside
``ContextualCompressionRetriever`` and the agent tool, on the real packaged model."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.langchain import (
    InfiniRetriCompressor,
    InfiniRetriRetriever,
    create_infiniretri_tool,
)

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_torch_thread")]

QUERY = "What is the best thing to do in San Francisco?"
TEXTS = [
    "Alice lives in Paris. She likes tea and reads novels every evening. Her cat is called Tom.",
    "Bob lives in Rome. He drinks coffee every morning. He works as a baker near the Colosseum.",
    "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
    "Carol lives in Berlin. She plays the violin. Her brother studies physics in Munich.",
    "Dave lives in Madrid. He runs a small bookshop. On Sundays he walks in the Retiro park.",
]
DOCS = [Document(page_content=text, id=f"doc-{i}", metadata={"n": i}) for i, text in enumerate(TEXTS)]


_ENGINE: dict[str, InfiniRetriEngine] = {}


@pytest.fixture(autouse=True)
def _shared_engine(real_lm: Any) -> None:
    """The standard suites build retrievers from properties: give them one engine on the real model."""
    if "engine" not in _ENGINE:
        _ENGINE["engine"] = InfiniRetriEngine(real_lm, chunk_size=256, tokens_per_pass=48)


def _engine() -> InfiniRetriEngine:
    return _ENGINE["engine"]


class TestInfiniRetriRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[InfiniRetriRetriever]:
        return InfiniRetriRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"docs": DOCS, "engine": _engine(), "k": 3}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


def compression_retriever(k: int | None = None, **kwargs: Any) -> BaseRetriever:
    """A typical RAG retriever (vector store with a deterministic fake embedding) whose results
    InfiniRetri compresses. ``k`` is the number of documents: the base retriever fetches ``k``
    documents (also when ``invoke(query, k=...)`` is used: ContextualCompressionRetriever passes
    it on) and the compressor, grouping by document, returns at most ``k`` (one per document that
    kept a sentence)."""
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    store.add_documents(DOCS)
    base = store.as_retriever(search_kwargs={"k": k if k is not None else 4})
    compressor = InfiniRetriCompressor(engine=_engine(), k=k, group_by="document", **kwargs)
    return ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)


class TestCompressionRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> Any:
        return compression_retriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        # tokens_per_pass large enough that each of the few short documents keeps a sentence
        return {"k": 3, "tokens_per_pass": 48}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


class TestInfiniRetriToolStandard(ToolsUnitTests):
    @property
    def tool_constructor(self) -> BaseTool:
        retriever = InfiniRetriRetriever(docs=DOCS, engine=InfiniRetriEngine(chunk_size=256), k=2)
        return create_infiniretri_tool(retriever, name="infiniretri_search", description="Search the notes.")

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"query": QUERY}
