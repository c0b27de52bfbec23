"""``InfiniRetriCompressor``: cut retrieved documents down to the sentences the question attends to."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, model_validator

from infiniretri_integrations.core.integration import GroupBy, keep_best
from infiniretri_integrations.core.types import RetrievalResult, RetrievedSentence
from infiniretri_integrations.langchain._documents import build_documents, check_group_by, check_k
from infiniretri_integrations.langchain._options import InfiniRetriOptions
from infiniretri_integrations.langchain._reporting import aretrieve_and_report, callbacks_config, retrieve_and_report
from infiniretri_integrations.langchain._tokens import count_tokens, tiktoken_encoding


class InfiniRetriCompressor(InfiniRetriOptions, BaseDocumentCompressor):
    """Document compressor: the engine reads the given documents and keeps the sentences that
    the question's attention selects (InfiniRetri, arXiv 2502.12962).

    Swap it into an existing chain with ``langchain_classic.retrievers.ContextualCompressionRetriever``.
    Output Documents have the same shape as :class:`InfiniRetriRetriever`'s: the input's ``id``
    and metadata plus ``relevance_score``, ``source_index`` (position in the input list),
    ``start_index``/``end_index`` and ``sentence_index``; with ``group_by="document"`` (default)
    one Document per input document that kept anything, joining its kept sentences in order,
    with the maximum score and all spans in ``metadata["spans"]``.

    Args:
        engine: the engine (or a ``LocalModel``); ``None``: the shared default engine (the model
            loads on first use, never at construction).
        group_by: ``"document"`` (default) or ``"sentence"``.
        k: at most this many Documents (best scores, returned in input order); ``None``: all.
        token_budget: the returned ``page_content`` together is at most this many tokens of the
            tiktoken encoding of ``budget_model``; the lowest-scoring sentences are dropped first.
        budget_model: model name mapped to its tiktoken encoding (unknown: ``cl100k_base``).
        retrieval_config and every RetrievalConfig field: retrieval options, as for
            :class:`InfiniRetriRetriever`.

    Example:
        >>> from langchain_core.documents import Document
        >>> from infiniretri_integrations.langchain import InfiniRetriCompressor
        >>> compressor = InfiniRetriCompressor(top_k=16, chunk_size=256, token_budget=200)
        >>> compressor.compress_documents([], "anything")
        []
        >>> docs = [Document("Bob lives in Rome. He bakes bread.", id="bob", metadata={"page": 3})]
        >>> compressor.compress_documents(docs, "Where does Bob live?")  # doctest: +SKIP
        [Document(id='bob', metadata={'page': 3, 'relevance_score': ..., 'start_index': 0, ...}, page_content='Bob lives in Rome.')]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    group_by: GroupBy = "document"
    k: int | None = None
    token_budget: int | None = None
    budget_model: str = "gpt-4o"

    @model_validator(mode="after")
    def _validate(self) -> InfiniRetriCompressor:
        check_k(self.k)
        check_group_by(self.group_by)
        check_k(self.token_budget, "token_budget")
        if not isinstance(self.budget_model, str) or not self.budget_model:
            msg = f"budget_model must be a non-empty model name, got {self.budget_model!r}"
            raise ValueError(msg)
        return self

    def retrieval_options(self) -> dict[str, Any]:
        """The per-call engine overrides (the output ``token_budget`` is this class's own)."""
        options = super().retrieval_options()
        options.pop("token_budget", None)
        return options

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Keep the attention-selected sentences of ``documents`` (see the class docstring)."""
        documents = list(documents)
        if not documents:
            return []
        config = callbacks_config(callbacks)
        result = retrieve_and_report(self.get_engine(), documents, query, self.retrieval_options(), config)
        return self._finish(result, documents)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`: the engine runs in a worker thread."""
        documents = list(documents)
        if not documents:
            return []
        config = callbacks_config(callbacks)
        result = await aretrieve_and_report(self.get_engine(), documents, query, self.retrieval_options(), config)
        return await asyncio.to_thread(self._finish, result, documents)

    def _finish(self, result: RetrievalResult, documents: list[Document]) -> list[Document]:
        sentences = keep_best(result.sentences, self.k, self.group_by)
        if self.token_budget is not None:
            sentences = fit_token_budget(sentences, documents, self.group_by, self.token_budget, self.budget_model)
        return build_documents(sentences, documents, self.group_by)


def fit_token_budget(
    sentences: list[RetrievedSentence],
    sources: Sequence[Document],
    group_by: GroupBy,
    budget: int,
    model: str = "gpt-4o",
) -> list[RetrievedSentence]:
    """Drop the lowest-scoring sentences until the output Documents' ``page_content`` together
    counts at most ``budget`` tiktoken tokens (encoding of ``model``).

    Example:
        >>> fit_token_budget([], [], "document", 10)
        []
    """
    tiktoken_encoding(model)  # fail early (e.g. offline without cached files)
    kept = list(sentences)

    def doc_tokens(group: list[RetrievedSentence]) -> int:
        return sum(count_tokens(d.page_content, model) for d in build_documents(group, sources, group_by))

    groups: dict[Any, list[RetrievedSentence]] = {}
    for s in kept:
        key = (s.document_index, s.sentence_index) if group_by == "sentence" else s.document_index
        groups.setdefault(key, []).append(s)
    tokens = {key: doc_tokens(group) for key, group in groups.items()}
    total = sum(tokens.values())
    for victim in sorted(kept, key=lambda s: (s.score, -s.document_index, -s.sentence_index)):
        if total <= budget:
            break
        key = (victim.document_index, victim.sentence_index) if group_by == "sentence" else victim.document_index
        groups[key] = [s for s in groups[key] if s is not victim]
        total -= tokens[key]
        tokens[key] = doc_tokens(groups[key]) if groups[key] else 0
        total += tokens[key]
        kept = [s for s in kept if s is not victim]
    return kept
