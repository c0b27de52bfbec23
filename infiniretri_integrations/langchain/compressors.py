"""``InfiniRetriCompressor``: cut retrieved documents down to the sentences the question attends to."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, field_validator, model_validator

from infiniretri_integrations.core.outputs import GroupBy, select_outputs
from infiniretri_integrations.core.types import RetrievalResult, RetrievedSentence
from infiniretri_integrations.langchain._documents import build_documents, check_group_by, check_k
from infiniretri_integrations.langchain._options import InfiniRetriOptions, OutputOptions
from infiniretri_integrations.langchain._reporting import aretrieve_and_report, callbacks_config, retrieve_and_report

TokenCounter = Callable[[str], int]


def as_token_counter(counter: Any) -> TokenCounter:
    """A ``str -> int`` token counter from a callable or anything with ``get_num_tokens`` (a
    LangChain LLM or chat model: the budget is then counted the way that model counts).

    Example:
        >>> as_token_counter(lambda text: len(text.split()))("two words")
        2
        >>> as_token_counter("gpt-4o")
        Traceback (most recent call last):
        ...
        TypeError: token_counter must be a callable str -> int or an object with get_num_tokens (e.g. your LangChain LLM), got str: 'gpt-4o'
    """
    method = getattr(counter, "get_num_tokens", None)
    if callable(method):
        return method  # type: ignore[no-any-return]
    if callable(counter) and not isinstance(counter, str):
        return counter  # type: ignore[no-any-return]
    msg = (
        "token_counter must be a callable str -> int or an object with get_num_tokens "
        f"(e.g. your LangChain LLM), got {type(counter).__name__}: {counter!r}"
    )
    raise TypeError(msg)


class InfiniRetriCompressor(InfiniRetriOptions, OutputOptions, BaseDocumentCompressor):
    """Document compressor: the engine reads the given documents and keeps the sentences that
    the question's attention selects (InfiniRetri, arXiv 2502.12962).

    Swap it into an existing chain with ``langchain_classic.retrievers.ContextualCompressionRetriever``.
    Output Documents have the same shape as :class:`InfiniRetriRetriever`'s (metadata, scores,
    spans, deterministic ids); with ``group_by="document"`` (default) one Document per input
    document that kept anything, joining its kept sentences in order, with the maximum score and
    all spans in ``metadata["spans"]``.

    Args:
        engine: the engine (or a ``LocalModel`` or model path); ``None``: the shared default
            engine (the model loads on first use, never at construction).
        group_by: ``"document"`` (default) or ``"sentence"``.
        k: at most this many Documents (best scores, returned in input order); ``None``: all.
        token_budget: the kept sentences together are at most this many tokens: of the engine's
            (answering) model, or of ``token_counter`` when one is given (then counted over the
            returned ``page_content``); the lowest-scoring sentences are dropped first. With a
            budget, passes keep sentences by score, so ``tokens_per_pass`` is not set with it.
        token_counter: a callable ``str -> int`` (e.g. a tiktoken encoding's
            ``lambda t: len(enc.encode(t))``) or your LangChain LLM / chat model
            (its ``get_num_tokens`` counts).
        normalize_scores, score_threshold: 0-1 scores per query; minimum score kept.
        retrieval_config and every RetrievalConfig field: retrieval options, as for
            :class:`InfiniRetriRetriever`.

    Example:
        >>> from langchain_core.documents import Document
        >>> from infiniretri_integrations.langchain import InfiniRetriCompressor
        >>> compressor = InfiniRetriCompressor(chunk_size=256, token_budget=200)
        >>> compressor.compress_documents([], "anything")
        []
        >>> docs = [Document("Bob lives in Rome. He bakes bread.", id="bob", metadata={"page": 3})]
        >>> compressor.compress_documents(docs, "Where does Bob live?")  # doctest: +SKIP
        [Document(id='bob:0-18', metadata={'page': 3, 'relevance_score': ..., 'start_index': 0, ...}, page_content='Bob lives in Rome.')]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    group_by: GroupBy = "document"
    k: int | None = None
    token_counter: Any = None

    @field_validator("token_counter")
    @classmethod
    def _check_counter(cls, value: Any) -> Any:
        if value is not None:
            as_token_counter(value)
        return value

    @model_validator(mode="after")
    def _validate(self) -> InfiniRetriCompressor:
        check_k(self.k)
        check_group_by(self.group_by)
        if self.token_counter is not None and self.retrieval_options().get("token_budget") is None:
            msg = f"token_counter={self.token_counter!r} needs token_budget=<tokens>; got token_budget=None"
            raise ValueError(msg)
        return self

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
        sentences, scale = select_outputs(
            result.sentences,
            self.k,
            self.group_by,
            normalize_scores=self.normalize_scores,
            score_threshold=self.score_threshold,
        )
        budget = self.retrieval_options().get("token_budget")
        if self.token_counter is not None and budget is not None:
            counter = as_token_counter(self.token_counter)
            sentences = fit_token_budget(sentences, documents, self.group_by, budget, counter)
        return build_documents(sentences, documents, self.group_by, scale)


def fit_token_budget(
    sentences: list[RetrievedSentence],
    sources: Sequence[Document],
    group_by: GroupBy,
    budget: int,
    counter: TokenCounter,
) -> list[RetrievedSentence]:
    """Drop the lowest-scoring sentences until the output Documents' ``page_content`` together
    counts at most ``budget`` tokens of ``counter``.

    Example:
        >>> fit_token_budget([], [], "document", 10, len)
        []
    """
    kept = list(sentences)

    def doc_tokens(group: list[RetrievedSentence]) -> int:
        return sum(counter(d.page_content) for d in build_documents(group, sources, group_by))

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
