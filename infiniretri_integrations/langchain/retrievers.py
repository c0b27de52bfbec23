"""``InfiniRetriRetriever``: attention-selected sentences of a held corpus as a LangChain retriever."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, InstanceOf, field_validator, model_validator

from infiniretri_integrations.core.config import LayerSpec, RetrievalConfig
from infiniretri_integrations.core.engine import InfiniRetriEngine
from infiniretri_integrations.core.types import RetrievalResult
from infiniretri_integrations.langchain._common import (
    SENTENCES_EVENT,
    GroupBy,
    async_progress,
    build_documents,
    check_group_by,
    check_k,
    coerce_engine,
    default_engine,
    option_values,
    retrieval_overrides,
    retriever_config,
    select_sentences,
    sentences_payload,
    sync_progress,
    to_engine_documents,
)


class InfiniRetriRetriever(BaseRetriever):
    """Retrieve the sentences of ``docs`` that a local LM's attention from the query selects.

    The corpus is read chunk by chunk on every query (InfiniRetri, arXiv 2502.12962); there is no
    index and no embedding model. Output Documents keep the source Document's ``id`` and metadata
    and add ``relevance_score`` (attention score), ``source_index`` (position in ``docs``),
    ``start_index``/``end_index`` (character span: ``docs[source_index].page_content[start:end]``
    equals the sentence) and ``sentence_index``.

    ``group_by="sentence"`` (default) returns one Document per kept sentence; ``"document"``
    returns one Document per source document joining its kept sentences (in order), with the
    maximum score and every span in ``metadata["spans"]``.

    ``k`` (constructor or ``invoke(query, k=...)``) caps how many Documents come back: the ``k``
    best-scoring ones, returned in document order (source index, then position) because the kept
    sentences read best as the text they came from. ``None`` returns everything the engine kept.

    Weights are not loaded at construction: ``engine=None`` uses a shared engine on the packaged
    default model, loaded on the first query. Pass one :class:`InfiniRetriEngine` to many
    retrievers to share a model.

    Args:
        docs: the corpus.
        k: maximum Documents returned (``None``: all kept).
        engine: the engine (or a ``LocalModel``) to use; ``None``: the shared default engine.
        group_by: ``"sentence"`` or ``"document"``.
        config: a full :class:`RetrievalConfig` overriding the engine's; the single options
            ``top_k``, ``chunk_size``, ``phrase_window``, ``max_cache_tokens``,
            ``max_sentence_tokens`` and ``scoring_layer`` override single fields.

    Example:
        >>> from infiniretri_integrations.langchain import InfiniRetriRetriever
        >>> retriever = InfiniRetriRetriever.from_texts(
        ...     ["Alice lives in Paris. She likes tea.", "Bob lives in Rome. He likes coffee."],
        ...     metadatas=[{"who": "alice"}, {"who": "bob"}], k=2, top_k=8, chunk_size=256)
        >>> retriever.k
        2
        >>> docs = retriever.invoke("Where does Bob live?")  # doctest: +SKIP
        >>> docs[0].metadata["who"], docs[0].metadata["start_index"]  # doctest: +SKIP
        ('bob', 0)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    docs: list[Document] = Field(default_factory=list)
    """The corpus read on every query."""
    k: int | None = None
    """Maximum number of Documents returned (best scores, document order); ``None``: all kept."""
    engine: InstanceOf[InfiniRetriEngine] | None = None
    """The shared engine; ``None`` uses :func:`default_engine` (lazy default model)."""
    group_by: GroupBy = "sentence"
    """``"sentence"``: one Document per kept sentence; ``"document"``: one per source document."""
    config: InstanceOf[RetrievalConfig] | None = None
    """A full retrieval config overriding the engine's (single options below override it)."""
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
    def _validate(self) -> InfiniRetriRetriever:
        check_k(self.k)
        check_group_by(self.group_by)
        self.retrieval_options()
        return self

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        metadatas: Iterable[dict[str, Any]] | None = None,
        ids: Iterable[str | None] | None = None,
        **kwargs: Any,
    ) -> InfiniRetriRetriever:
        """Build from texts, with optional per-text metadata and ids (as ``BM25Retriever``).

        Example:
            >>> InfiniRetriRetriever.from_texts(["a.", "b."], ids=["x", "y"]).docs[1].id
            'y'
        """
        texts = list(texts)
        metadata_list = list(metadatas) if metadatas is not None else [{} for _ in texts]
        id_list = list(ids) if ids is not None else [None for _ in texts]
        if len(metadata_list) != len(texts) or len(id_list) != len(texts):
            msg = (
                f"texts, metadatas and ids must have the same length, got {len(texts)}, "
                f"{len(metadata_list)} and {len(id_list)}"
            )
            raise ValueError(msg)
        docs = [
            Document(page_content=text, metadata=dict(meta or {}), id=doc_id)
            for text, meta, doc_id in zip(texts, metadata_list, id_list, strict=True)
        ]
        return cls(docs=docs, **kwargs)

    @classmethod
    def from_documents(cls, documents: Iterable[Document], **kwargs: Any) -> InfiniRetriRetriever:
        """Build from Documents (ids and metadata are kept on every result).

        Example:
            >>> from langchain_core.documents import Document
            >>> InfiniRetriRetriever.from_documents([Document("Some text.", id="d1")], k=1).k
            1
        """
        return cls(docs=list(documents), **kwargs)

    # ------------------------------------------------------------------ retrieval
    def get_engine(self) -> InfiniRetriEngine:
        """The engine used (the shared default engine when none was given)."""
        return self.engine if self.engine is not None else default_engine()

    def retrieval_options(self) -> dict[str, Any]:
        """The per-call engine overrides this retriever applies."""
        return retrieval_overrides(self.config, option_values(self))

    def _select(self, result: RetrievalResult, k: int | None) -> list[Document]:
        limit = check_k(k if k is not None else self.k)
        return build_documents(select_sentences(result.sentences, limit, self.group_by), self.docs, self.group_by)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        if not self.docs:
            return []
        config = retriever_config(run_manager)
        result = self.get_engine().retrieve(
            to_engine_documents(self.docs), query, on_progress=sync_progress(config), **self.retrieval_options()
        )
        dispatch_custom_event(SENTENCES_EVENT, sentences_payload(result), config=config)  # type: ignore[arg-type]
        return self._select(result, k)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        if not self.docs:
            return []
        config = retriever_config(run_manager)
        progress = async_progress(config, asyncio.get_running_loop())
        result = await asyncio.to_thread(
            self.get_engine().retrieve,
            to_engine_documents(self.docs),
            query,
            on_progress=progress,
            **self.retrieval_options(),
        )
        await adispatch_custom_event(SENTENCES_EVENT, sentences_payload(result), config=config)  # type: ignore[arg-type]
        return self._select(result, k)
