"""``InfiniRetriCompressor``: cut retrieved documents down to the sentences the question attends to."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks, adispatch_custom_event, dispatch_custom_event
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, InstanceOf, field_validator, model_validator

from infiniretri_integrations.core.config import LayerSpec, RetrievalConfig
from infiniretri_integrations.core.engine import InfiniRetriEngine
from infiniretri_integrations.core.types import RetrievalResult, RetrievedSentence
from infiniretri_integrations.langchain._common import (
    SENTENCES_EVENT,
    GroupBy,
    async_progress,
    build_documents,
    callbacks_config,
    check_group_by,
    check_k,
    coerce_engine,
    count_tokens,
    default_engine,
    option_values,
    retrieval_overrides,
    select_sentences,
    sentences_payload,
    sync_progress,
    tiktoken_encoding,
    to_engine_documents,
)


class InfiniRetriCompressor(BaseDocumentCompressor):
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
        config, top_k, chunk_size, phrase_window, max_cache_tokens, max_sentence_tokens,
            scoring_layer: retrieval options, as for :class:`InfiniRetriRetriever`.

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

    engine: InstanceOf[InfiniRetriEngine] | None = None
    group_by: GroupBy = "document"
    k: int | None = None
    token_budget: int | None = None
    budget_model: str = "gpt-4o"
    config: InstanceOf[RetrievalConfig] | None = None
    top_k: int | None = None
    chunk_size: int | None = None
    phrase_window: int | None = None
    max_cache_tokens: int | None = None
    max_sentence_tokens: int | None = None
    scoring_layer: LayerSpec = None

    @field_validator("engine", mode="before")
    @classmethod
    def _coerce_engine(cls, value: Any) -> InfiniRetriEngine | None:
        return coerce_engine(value)

    @model_validator(mode="after")
    def _validate(self) -> InfiniRetriCompressor:
        check_k(self.k)
        check_group_by(self.group_by)
        check_k(self.token_budget, "token_budget")
        if not isinstance(self.budget_model, str) or not self.budget_model:
            msg = f"budget_model must be a non-empty model name, got {self.budget_model!r}"
            raise ValueError(msg)
        self.retrieval_options()
        return self

    def get_engine(self) -> InfiniRetriEngine:
        """The engine used (the shared default engine when none was given)."""
        return self.engine if self.engine is not None else default_engine()

    def retrieval_options(self) -> dict[str, Any]:
        """The per-call engine overrides this compressor applies."""
        return retrieval_overrides(self.config, option_values(self))

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Keep the attention-selected sentences of ``documents`` (see the class docstring)."""
        documents = list(documents)
        if not documents:
            return []
        config = callbacks_config(callbacks)
        result = self.get_engine().retrieve(
            to_engine_documents(documents), query, on_progress=sync_progress(config), **self.retrieval_options()
        )
        if config is not None:
            dispatch_custom_event(SENTENCES_EVENT, sentences_payload(result), config=config)  # type: ignore[arg-type]
        return self._finish(result, documents)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`: the engine runs in a worker thread."""
        documents = list(documents)
        if not documents:
            return []
        config = callbacks_config(callbacks)
        progress = async_progress(config, asyncio.get_running_loop())
        result = await asyncio.to_thread(
            self.get_engine().retrieve,
            to_engine_documents(documents),
            query,
            on_progress=progress,
            **self.retrieval_options(),
        )
        if config is not None:
            await adispatch_custom_event(SENTENCES_EVENT, sentences_payload(result), config=config)  # type: ignore[arg-type]
        return await asyncio.to_thread(self._finish, result, documents)

    def _finish(self, result: RetrievalResult, documents: list[Document]) -> list[Document]:
        sentences = select_sentences(result.sentences, self.k, self.group_by)
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
