"""Response synthesizer that runs the InfiniRetri chunk loop over all nodes, then answers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.callbacks import CallbackManager
from llama_index.core.indices.prompt_helper import ChatPromptHelper, PromptHelper
from llama_index.core.llms import LLM
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.prompts.mixin import PromptDictType, PromptMixinType
from llama_index.core.response_synthesizers import BaseSynthesizer, CompactAndRefine
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, QueryType
from llama_index.core.types import RESPONSE_TEXT_TYPE

from infiniretri_integrations.core.concurrency import closing_generator, iterate_in_thread, run_cancellable
from infiniretri_integrations.core.config import PROMPT_FIELDS
from infiniretri_integrations.core.engine_policy import coerce_engine, resolve_engine
from infiniretri_integrations.core.options import check_overrides
from infiniretri_integrations.core.types import RetrievalResult, join_sentences
from infiniretri_integrations.llama_index._nodes import retrieve_sentence_nodes, retrieve_sentence_nodes_many
from infiniretri_integrations.llama_index.llm import InfiniRetriLLM

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import InfiniRetriEngine

_RETRIEVAL_KEY = "infiniretri_retrieval"


class InfiniRetriSynthesizer(BaseSynthesizer):
    """Read every node chunk by chunk with InfiniRetri, keep the attended sentences, answer from them.

    The response's ``source_nodes`` are the kept sentences (``TextNode`` objects with a ``SOURCE``
    relationship to the node they came from, the parent's metadata and the character span in it).

    Args:
        engine: an :class:`InfiniRetriEngine`, a model it accepts, or ``None`` for the packaged
            default model (loaded lazily, once).
        llm: a LlamaIndex LLM to write the answer from the kept sentences (through
            ``CompactAndRefine``). ``None`` (default) answers with the same local model, with the
            reference prompt; never a network model.
        streaming: return a streaming response (real token streaming with the local model).
        text_qa_template, refine_template: prompts for the ``llm`` path.
        max_new_tokens, stop, generate_kwargs: answer length, extra stop strings and
            ``model.generate`` arguments (local model; ``None``: the engine's ``GenerationConfig``).
        device, dtype: where and how the model loads when no ready engine is given.
        callback_manager: LlamaIndex callback manager.
        **options: :class:`~infiniretri_integrations.RetrievalConfig` overrides (``tokens_per_pass``,
            ``token_budget``, ``chunk_size``, ...) for every call.

    Example:
        >>> synthesizer = InfiniRetriSynthesizer(tokens_per_pass=50, chunk_size=512)
        >>> synthesizer.uses_local_model
        True
        >>> response = synthesizer.synthesize("Where does Bob live?", nodes)  # doctest: +SKIP
        >>> [n.node.text for n in response.source_nodes]  # doctest: +SKIP
        ['Bob lives in Rome.']
    """

    def __init__(
        self,
        engine: Any = None,
        llm: LLM | None = None,
        *,
        streaming: bool = False,
        text_qa_template: BasePromptTemplate | None = None,
        refine_template: BasePromptTemplate | None = None,
        callback_manager: CallbackManager | None = None,
        max_new_tokens: int | None = None,
        stop: list[str] | None = None,
        generate_kwargs: dict[str, Any] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        **options: Any,
    ) -> None:
        if llm is not None and not isinstance(llm, LLM):
            msg = f"llm must be a LlamaIndex LLM or None (use the local model), got {type(llm).__name__}: {llm!r}"
            raise TypeError(msg)
        self._engine = resolve_engine(coerce_engine(engine, device, dtype), device, dtype)
        self._options = check_overrides(options, owner=type(self).__name__)
        generation = {"max_new_tokens": max_new_tokens, "stop": stop, "generate_kwargs": generate_kwargs}
        prompt = {name: value for name, value in self._options.items() if name in PROMPT_FIELDS}
        self._answer_options: dict[str, Any] = {
            **prompt,
            **{name: value for name, value in generation.items() if value is not None},
        }
        self._engine.generation.replace(**generation)  # invalid answer options fail here, not at the first query
        self._external: CompactAndRefine | None = None
        if llm is None:
            local = InfiniRetriLLM(
                self._engine,
                max_new_tokens=max_new_tokens,
                stop=stop,
                generate_kwargs=generate_kwargs or {},
            )
            # explicit prompt helpers: the base class would otherwise load the model to read its window
            super().__init__(
                llm=local,
                callback_manager=callback_manager,
                prompt_helper=PromptHelper(),
                chat_prompt_helper=ChatPromptHelper(),
                streaming=streaming,
            )
        else:
            super().__init__(llm=llm, callback_manager=callback_manager, streaming=streaming)
            self._external = CompactAndRefine(
                llm=llm,
                callback_manager=self._callback_manager,
                text_qa_template=text_qa_template,
                refine_template=refine_template,
                streaming=streaming,
            )

    @property
    def engine(self) -> InfiniRetriEngine:
        return self._engine

    @property
    def uses_local_model(self) -> bool:
        """True when answers come from the local model (no ``llm`` given)."""
        return self._external is None

    def _get_prompts(self) -> PromptDictType:
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        """Prompts of the ``llm`` path are updated through the ``synthesizer`` sub-module."""

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"synthesizer": self._external} if self._external is not None else {}

    # ------------------------------------------------------------------ entry points
    def synthesize(
        self,
        query: QueryType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        """Select sentences from ``nodes`` for ``query``, answer, report the sentences as sources."""
        if not nodes:
            return super().synthesize(query, nodes, additional_source_nodes, **response_kwargs)
        sentences, retrieval = _sentence_nodes(self._engine, nodes, _query_str(query), self._options)
        response_kwargs[_RETRIEVAL_KEY] = retrieval
        return super().synthesize(query, sentences, additional_source_nodes, **response_kwargs)

    async def asynthesize(
        self,
        query: QueryType,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
        **response_kwargs: Any,
    ) -> RESPONSE_TYPE:
        """Async :meth:`synthesize`: the chunk loop and generation run in worker threads;
        cancelling the awaiting task stops them (before the next pass, at the next token)."""
        if not nodes:
            return await super().asynthesize(query, nodes, additional_source_nodes, **response_kwargs)
        sentences, retrieval = await run_cancellable(
            _sentence_nodes, self._engine, nodes, _query_str(query), self._options
        )
        response_kwargs[_RETRIEVAL_KEY] = retrieval
        return await super().asynthesize(query, sentences, additional_source_nodes, **response_kwargs)

    def synthesize_many(
        self, queries: Sequence[QueryType], nodes: list[NodeWithScore], *, share_context: bool = False
    ) -> list[RESPONSE_TYPE]:
        """:meth:`synthesize` for several queries over the same ``nodes``: ONE read of the nodes
        for all of them (:meth:`~infiniretri_integrations.InfiniRetriEngine.retrieve_many`; the
        kept sentences equal one ``synthesize`` per query unless ``share_context``), then one
        answer per query.

        Example:
            >>> synthesizer.synthesize_many(["Where does Bob live?", "Who bakes?"], nodes)  # doctest: +SKIP
        """
        if not queries:
            return []
        if not nodes:
            return [super(InfiniRetriSynthesizer, self).synthesize(q, nodes) for q in queries]
        texts = [_query_str(q) for q in queries]
        kept = _sentence_nodes_many(self._engine, nodes, texts, {**self._options, "share_context": share_context})
        return [
            super(InfiniRetriSynthesizer, self).synthesize(query, sentences, **{_RETRIEVAL_KEY: retrieval})
            for query, (sentences, retrieval) in zip(queries, kept, strict=True)
        ]

    async def asynthesize_many(
        self, queries: Sequence[QueryType], nodes: list[NodeWithScore], *, share_context: bool = False
    ) -> list[RESPONSE_TYPE]:
        """Async :meth:`synthesize_many`; cancelling the awaiting task stops the chunk loop."""
        if not queries:
            return []
        if not nodes:
            return [await super(InfiniRetriSynthesizer, self).asynthesize(q, nodes) for q in queries]
        texts = [_query_str(q) for q in queries]
        kept = await run_cancellable(
            _sentence_nodes_many, self._engine, nodes, texts, {**self._options, "share_context": share_context}
        )
        return [
            await super(InfiniRetriSynthesizer, self).asynthesize(query, sentences, **{_RETRIEVAL_KEY: retrieval})
            for query, (sentences, retrieval) in zip(queries, kept, strict=True)
        ]

    # ------------------------------------------------------------------ answering
    def _retrieval(self, query_str: str, text_chunks: Sequence[str], kwargs: dict[str, Any]) -> RetrievalResult:
        retrieval = kwargs.pop(_RETRIEVAL_KEY, None)
        if retrieval is None:  # called directly with plain text chunks
            retrieval = self._engine.retrieve(list(text_chunks), query_str, **self._options)
        return retrieval

    def get_response(self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any) -> RESPONSE_TEXT_TYPE:
        """Answer ``query_str`` from the sentences InfiniRetri keeps in ``text_chunks``."""
        retrieval = self._retrieval(query_str, text_chunks, response_kwargs)
        if self._external is not None:
            return self._external.get_response(query_str, _grouped(retrieval), **response_kwargs)
        if self._streaming:
            return closing_generator(self._engine.stream_from(retrieval, query_str, **self._answer_options))
        return self._engine.answer_from(retrieval, query_str, **self._answer_options).text

    async def aget_response(
        self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any
    ) -> RESPONSE_TEXT_TYPE:
        """Async :meth:`get_response`; streaming yields an async generator. Cancelling the
        awaiting task (or the task consuming the stream) stops the work and frees the model."""
        if _RETRIEVAL_KEY not in response_kwargs:
            response_kwargs[_RETRIEVAL_KEY] = await run_cancellable(
                self._engine.retrieve, list(text_chunks), query_str, **self._options
            )
        retrieval = self._retrieval(query_str, text_chunks, response_kwargs)
        if self._external is not None:
            return await self._external.aget_response(query_str, _grouped(retrieval), **response_kwargs)
        if self._streaming:
            return iterate_in_thread(self._engine.stream_from(retrieval, query_str, **self._answer_options))
        answer = await run_cancellable(self._engine.answer_from, retrieval, query_str, **self._answer_options)
        return answer.text


def _sentence_nodes(
    engine: InfiniRetriEngine,
    nodes: list[NodeWithScore],
    query_str: str,
    options: dict[str, Any],
    *,
    cancel: threading.Event | None = None,
) -> tuple[list[NodeWithScore], RetrievalResult]:
    """The kept sentences as source nodes (pieces that are only whitespace left out) and the
    retrieval; ``cancel`` stops the chunk loop before its next pass."""
    sentences, retrieval = retrieve_sentence_nodes(engine, nodes, query_str, {**options, "cancel": cancel})
    return [n for n in sentences if n.node.get_content(metadata_mode=MetadataMode.NONE).strip()], retrieval


def _sentence_nodes_many(
    engine: InfiniRetriEngine,
    nodes: list[NodeWithScore],
    queries: list[str],
    options: dict[str, Any],
    *,
    cancel: threading.Event | None = None,
) -> list[tuple[list[NodeWithScore], RetrievalResult]]:
    """:func:`_sentence_nodes` for several queries in one ``retrieve_many`` call."""
    kept = retrieve_sentence_nodes_many(engine, nodes, queries, {**options, "cancel": cancel})
    return [
        ([n for n in sentences if n.node.get_content(metadata_mode=MetadataMode.NONE).strip()], retrieval)
        for sentences, retrieval in kept
    ]


def _query_str(query: QueryType) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, QueryBundle):
        return query.query_str
    msg = f"query must be a str or QueryBundle, got {type(query).__name__}: {query!r}"
    raise TypeError(msg)


def _grouped(retrieval: RetrievalResult) -> list[str]:
    """Kept sentences as one text chunk per source node (reading order; no blank chunks)."""
    chunks = [join_sentences(group) for group in retrieval.by_document().values()]
    return [chunk for chunk in chunks if chunk.strip()]
