"""``InfiniRetriRetriever``: attention-selected sentences of a held corpus as a LangChain retriever."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManager,
    CallbackManagerForRetrieverRun,
    dispatch_custom_event,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list
from pydantic import ConfigDict, Field, field_validator, model_validator

from infiniretri_integrations.core.concurrency import run_cancellable
from infiniretri_integrations.core.outputs import GroupBy, select_outputs
from infiniretri_integrations.core.types import RetrievalResult
from infiniretri_integrations.langchain._documents import (
    build_documents,
    check_documents,
    check_group_by,
    check_k,
    to_engine_documents,
)
from infiniretri_integrations.langchain._options import InfiniRetriOptions, OutputOptions
from infiniretri_integrations.langchain._reporting import (
    SENTENCES_EVENT,
    aretrieve_and_report,
    retrieve_and_report,
    retriever_config,
    sentences_payload,
)


class InfiniRetriRetriever(InfiniRetriOptions, OutputOptions, BaseRetriever):
    """Retrieve the sentences of ``docs`` that a local LM's attention from the query selects.

    The corpus is read chunk by chunk on every query (InfiniRetri, arXiv 2502.12962); there is no
    index and no embedding model. Output Documents keep the source Document's metadata and add
    ``relevance_score``, ``attention_score``, ``source_id``, ``source_index`` (position in
    ``docs``), ``chunk_start_index``/``chunk_end_index`` (character span:
    ``docs[source_index].page_content[start:end]`` equals the sentence), ``start_index``/
    ``end_index`` (the span in the original document when the source carries a ``start_index``
    from a text splitter) and ``sentence_index``. Each output has its own deterministic id,
    ``"{source_id}:{start}-{end}"`` (``None`` when the source has no id), so a vector store keeps
    every one of them.

    ``group_by="sentence"`` (default) returns one Document per kept sentence; ``"document"``
    returns one Document per source document joining its kept sentences (in order), with the
    maximum score and every span in ``metadata["spans"]``.

    ``k`` (constructor or ``invoke(query, k=...)``, default 4 as ``BM25Retriever``) is how many
    Documents come back: the ``k`` best-scoring ones, returned in document order (source index,
    then position) because the kept sentences read best as the text they came from. ``k=None``
    returns every sentence the engine kept (how many depends on ``tokens_per_pass``, the context
    tokens kept per forward pass). ``normalize_scores=True`` reports scores on 0-1 per query,
    ``score_threshold`` drops weaker outputs.

    Weights are not loaded at construction: ``engine=None`` uses a shared engine on the packaged
    default model, loaded on the first query. Pass one :class:`InfiniRetriEngine` to many
    retrievers to share a model.

    Args:
        docs: the corpus.
        k: Documents returned (default 4; ``None``: all kept).
        engine: the engine (or a ``LocalModel`` or model path); ``None``: the shared default engine.
        device, dtype: where and how the model loads when no ready engine is given.
        tokens_per_pass: context tokens kept per forward pass (the top-k rule of ``RetrievalConfig``).
        normalize_scores, score_threshold: 0-1 scores per query; minimum score kept.
        group_by: ``"sentence"`` or ``"document"``.
        retrieval_config: a full :class:`RetrievalConfig` overriding the engine's; every config
            field (``tokens_per_pass``, ``chunk_size``, ``phrase_window``, ...) is also an option of its own.

    Example:
        >>> from infiniretri_integrations.langchain import InfiniRetriRetriever
        >>> retriever = InfiniRetriRetriever.from_texts(
        ...     ["Alice lives in Paris. She likes tea.", "Bob lives in Rome. He likes coffee."],
        ...     metadatas=[{"who": "alice"}, {"who": "bob"}], k=2, tokens_per_pass=8, chunk_size=256)
        >>> retriever.k
        2
        >>> docs = retriever.invoke("Where does Bob live?")  # doctest: +SKIP
        >>> docs[0].metadata["who"], docs[0].metadata["start_index"]  # doctest: +SKIP
        ('bob', 0)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    docs: list[Document] = Field(default_factory=list)
    """The corpus read on every query."""
    k: int | None = 4
    """Number of Documents returned (best scores, document order); ``None``: all kept."""
    group_by: GroupBy = "sentence"
    """``"sentence"``: one Document per kept sentence; ``"document"``: one per source document."""
    share_context: bool = False
    """In ``batch``/``abatch``: encode each pass's context once for all the queries
    (``retrieve_many(share_context=True)``: faster, a different selection than ``invoke``)."""

    @field_validator("docs", mode="before")
    @classmethod
    def _check_docs(cls, value: Any) -> list[Document]:
        return check_documents(value, "docs")

    @model_validator(mode="after")
    def _validate(self) -> InfiniRetriRetriever:
        check_k(self.k)
        check_group_by(self.group_by)
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

        A single string is one text (not one text per character), with ``metadatas`` a dict and
        ``ids`` a string or lists of one.

        Example:
            >>> InfiniRetriRetriever.from_texts(["a.", "b."], ids=["x", "y"]).docs[1].id
            'y'
            >>> len(InfiniRetriRetriever.from_texts("One text. Two sentences.").docs)
            1
        """
        if isinstance(texts, str):
            texts = [texts]
            metadatas = [metadatas] if isinstance(metadatas, dict) else metadatas
            ids = [ids] if isinstance(ids, str) else ids
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
    def _select(self, result: RetrievalResult, k: int | None) -> list[Document]:
        limit = check_k(k if k is not None else self.k)
        sentences, scale = select_outputs(
            result.sentences,
            limit,
            self.group_by,
            normalize_scores=self.normalize_scores,
            score_threshold=self.score_threshold,
        )
        return build_documents(sentences, self.docs, self.group_by, scale)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        if not self.docs:
            return []
        config = retriever_config(run_manager)
        result = retrieve_and_report(self.get_engine(), self.docs, query, self.retrieval_options(), config)
        return self._select(result, k)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        if not self.docs:
            return []
        config = retriever_config(run_manager)
        result = await aretrieve_and_report(self.get_engine(), self.docs, query, self.retrieval_options(), config)
        return self._select(result, k)

    # ------------------------------------------------------------------ many queries
    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Answer all ``inputs`` in ONE read of the corpus
        (:meth:`~infiniretri_integrations.InfiniRetriEngine.retrieve_many`): each query keeps its
        own working set and the queries' passes run as batched forwards, so the Documents equal
        those of one ``invoke`` per query (with ``share_context=True`` the passes also share their
        context encoding: faster, a different selection). Every query gets its own retriever run
        (callbacks, tags, ``run_name`` from its config); an invalid query fails alone with
        ``return_exceptions=True``.

        Example:
            >>> retriever.batch(["Where does Bob live?", "What does Alice like?"])  # doctest: +SKIP
        """
        return self._batch(inputs, config, return_exceptions, kwargs)

    async def abatch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Async :meth:`batch`: runs in a worker thread; cancelling the awaiting task stops the
        chunk loop before its next pass."""
        return await run_cancellable(self._batch, inputs, config, return_exceptions, kwargs)

    def _batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None,
        return_exceptions: bool,
        kwargs: dict[str, Any],
        cancel: threading.Event | None = None,
    ) -> list[Any]:
        if not inputs:
            return []
        unknown = set(kwargs) - {"k"}
        if unknown:
            msg = f"Unknown batch option(s) {sorted(unknown)}; expected only 'k'"
            raise TypeError(msg)
        from infiniretri_integrations.core.inputs import validate_question

        configs = get_config_list(config, len(inputs))
        managers = [self._start_run(query, run_config) for query, run_config in zip(inputs, configs, strict=True)]
        outputs: list[Any] = [None] * len(inputs)
        valid: list[int] = []
        for index, query in enumerate(inputs):
            try:
                validate_question(query)
                valid.append(index)
            except (TypeError, ValueError) as error:
                managers[index].on_retriever_error(error)
                if not return_exceptions:
                    raise
                outputs[index] = error
        if valid and self.docs:
            try:
                results = self.get_engine().retrieve_many(
                    to_engine_documents(self.docs),
                    [inputs[i] for i in valid],
                    share_context=self.share_context,
                    cancel=cancel,
                    **self.retrieval_options(),
                )
            except Exception as error:
                for index in valid:
                    managers[index].on_retriever_error(error)
                if not return_exceptions:
                    raise
                for index in valid:
                    outputs[index] = error
                return outputs
            for index, result in zip(valid, results, strict=True):
                child = retriever_config(managers[index])
                dispatch_custom_event(SENTENCES_EVENT, sentences_payload(result), config=child)  # type: ignore[arg-type]
                outputs[index] = self._select(result, kwargs.get("k"))
        for index in valid:
            if outputs[index] is None:
                outputs[index] = []
            managers[index].on_retriever_end(outputs[index])
        return outputs

    def _start_run(self, query: str, config: RunnableConfig) -> CallbackManagerForRetrieverRun:
        """A retriever run for one query of a batch, configured as ``invoke`` configures it."""
        manager = CallbackManager.configure(
            config.get("callbacks"),
            None,
            inheritable_tags=config.get("tags"),
            local_tags=self.tags,
            inheritable_metadata={**(config.get("metadata") or {}), **self._get_ls_params()},
            local_metadata=self.metadata,
        )
        return manager.on_retriever_start(None, query, name=config.get("run_name") or self.get_name())
