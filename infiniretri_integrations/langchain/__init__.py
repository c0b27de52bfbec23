"""LangChain adapter for InfiniRetri: attention-driven sentence retrieval with a local LM.

- :class:`InfiniRetriRetriever`: a retriever over a held corpus (``from_texts``/``from_documents``).
- :class:`InfiniRetriCompressor`: a document compressor to swap into
  ``langchain_classic.retrievers.ContextualCompressionRetriever`` (optional token budget).
- :class:`InfiniRetriQA`: a runnable that retrieves and answers with the same model, streaming.
- :func:`create_infiniretri_tool`: the retriever as an agent tool.

All share one engine/model; nothing loads weights until the first query. Needs
``pip install "infiniretri-integrations[langchain]"``.

Example:
    >>> from infiniretri_integrations import InfiniRetriEngine
    >>> from infiniretri_integrations.langchain import InfiniRetriCompressor, InfiniRetriRetriever
    >>> engine = InfiniRetriEngine(tokens_per_pass=50, chunk_size=512)  # no weights loaded yet
    >>> retriever = InfiniRetriRetriever.from_texts(["Bob lives in Rome."], engine=engine, k=3)
    >>> compressor = InfiniRetriCompressor(engine=engine, token_budget=500)
    >>> engine.model_loaded
    False
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    msg = (
        "infiniretri_integrations.langchain needs langchain-core; install it with "
        '`pip install "infiniretri-integrations[langchain]"`'
    )
    raise ImportError(msg) from error

from infiniretri_integrations.core.engine_policy import default_engine
from infiniretri_integrations.langchain._reporting import PROGRESS_EVENT, SENTENCES_EVENT
from infiniretri_integrations.langchain.compressors import InfiniRetriCompressor, as_token_counter, fit_token_budget
from infiniretri_integrations.langchain.qa import InfiniRetriQA
from infiniretri_integrations.langchain.retrievers import InfiniRetriRetriever
from infiniretri_integrations.langchain.tools import create_infiniretri_tool

__all__ = [
    "PROGRESS_EVENT",
    "SENTENCES_EVENT",
    "InfiniRetriCompressor",
    "InfiniRetriQA",
    "InfiniRetriRetriever",
    "as_token_counter",
    "create_infiniretri_tool",
    "default_engine",
    "fit_token_budget",
]
