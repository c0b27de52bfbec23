"""Node postprocessor: keep only the sentences of the retrieved nodes that the question attends to."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from infiniretri_integrations.core.concurrency import run_cancellable
from infiniretri_integrations.core.engine_policy import coerce_engine, resolve_engine
from infiniretri_integrations.core.options import check_overrides
from infiniretri_integrations.core.outputs import best_score_per_document, check_threshold, select_outputs
from infiniretri_integrations.core.types import RetrievedSentence
from infiniretri_integrations.llama_index._nodes import node_documents, sentence_node

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import InfiniRetriEngine

dispatcher = get_dispatcher(__name__)

_MODES = ("sentences", "parents")
_ORDERS = ("document", "score")


class InfiniRetriNodePostprocessor(BaseNodePostprocessor):
    """Keep the sentences of the incoming nodes that the local model's attention selects (InfiniRetri).

    The nodes (e.g. every node of a ``SummaryIndex`` or a vector retriever's top-k) are read chunk
    by chunk in the order given; the question's attention picks the sentences to keep.

    Args:
        engine: an :class:`InfiniRetriEngine`, a model it accepts (``LocalModel``, path, ...) or
            ``None`` for the packaged default model (loaded lazily, once).
        mode: ``"sentences"`` returns each kept sentence as a new ``TextNode`` (parent metadata plus
            ``sentence_start``/``sentence_end``/``sentence_index``, a ``SOURCE`` relationship to the
            parent, score = sentence score); ``"parents"`` returns the incoming nodes that hold kept
            sentences, scored by their best sentence and sorted by score.
        top_n: keep at most this many results (highest scores); ``None`` keeps all.
        order: for ``mode="sentences"``: ``"document"`` (reading order, best as LLM context) or
            ``"score"`` (best first, like rerankers).
        normalize_scores: report scores on 0-1 per query (the best kept sentence scores 1).
        score_threshold: drop results whose (reported) score is below this.
        device, dtype: where and how the model loads when no ready engine is given.
        tokens_per_pass: context tokens kept per forward pass (``RetrievalConfig.tokens_per_pass``;
            not the number of nodes returned, which is ``top_n``).
        **options: :class:`~infiniretri_integrations.RetrievalConfig` overrides for every call
            (``token_budget``, ``chunk_size``, ...); answer options are refused.

    ``postprocess_nodes(None, ...)`` (or any non-list) raises a ``TypeError`` naming the value, as
    LlamaIndex's own postprocessors fail on ``None`` too (with a bare "'NoneType' object is not
    iterable"); ``[]`` returns ``[]``. Kept pieces that are only whitespace never become nodes.

    Serialization: ``InfiniRetriNodePostprocessor.from_json(pp.to_json())`` rebuilds the settings
    (not the engine: pass ``engine=`` again to share one).

    Example:
        >>> from llama_index.core import Document, SummaryIndex  # doctest: +SKIP
        >>> index = SummaryIndex.from_documents([Document(text=long_text)])  # doctest: +SKIP
        >>> engine = RetrieverQueryEngine.from_args(  # doctest: +SKIP
        ...     index.as_retriever(), llm=InfiniRetriLLM(),
        ...     node_postprocessors=[InfiniRetriNodePostprocessor(tokens_per_pass=50)])
        >>> InfiniRetriNodePostprocessor(mode="parents", top_n=3).class_name()
        'InfiniRetriNodePostprocessor'
    """

    mode: Literal["sentences", "parents"] = Field(default="sentences", description="'sentences' or 'parents'.")
    top_n: int | None = Field(default=None, description="Return at most this many nodes (None: all).")
    order: Literal["document", "score"] = Field(default="document", description="Order of sentence nodes.")
    normalize_scores: bool = Field(default=False, description="Scores on 0-1 per query (best kept sentence = 1).")
    score_threshold: float | None = Field(default=None, description="Drop results scoring below this.")
    device: str | None = Field(default=None, description="Device to load the model on (None: automatic).")
    dtype: str | None = Field(default=None, description="Model dtype (None: automatic).")
    retrieval_options: dict[str, Any] = Field(default_factory=dict, description="RetrievalConfig overrides.")

    _engine: InfiniRetriEngine | None = PrivateAttr(default=None)

    def __init__(
        self,
        engine: Any = None,
        *,
        mode: Literal["sentences", "parents"] = "sentences",
        top_n: int | None = None,
        order: Literal["document", "score"] = "document",
        normalize_scores: bool = False,
        score_threshold: float | None = None,
        device: str | None = None,
        dtype: str | None = None,
        **options: Any,
    ) -> None:
        if mode not in _MODES:
            msg = f"mode must be one of {_MODES}, got {mode!r}"
            raise ValueError(msg)
        if order not in _ORDERS:
            msg = f"order must be one of {_ORDERS}, got {order!r}"
            raise ValueError(msg)
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n <= 0):
            msg = f"top_n must be None or a positive integer, got {top_n!r}"
            raise ValueError(msg)
        callback_manager = options.pop("callback_manager", None)
        extra = {"callback_manager": callback_manager} if callback_manager is not None else {}
        options = {**(options.pop("retrieval_options", None) or {}), **options}
        check_threshold(score_threshold, normalize_scores)
        super().__init__(  # type: ignore[call-arg]  # pydantic fields
            mode=mode,
            top_n=top_n,
            order=order,
            normalize_scores=normalize_scores,
            score_threshold=score_threshold,
            device=device,
            dtype=dtype,
            retrieval_options=check_overrides(options, owner=type(self).__name__),
            **extra,
        )
        self._engine = coerce_engine(engine, device, dtype)

    @classmethod
    def class_name(cls) -> str:
        return "InfiniRetriNodePostprocessor"

    @property
    def engine(self) -> InfiniRetriEngine:
        """The engine doing the retrieval (the shared default engine when none was given)."""
        return resolve_engine(self._engine, self.device, self.dtype)

    def _model_name(self) -> str:
        return self.engine.local_model.name if self.engine.model_loaded else "infiniretri"

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        return self._run(nodes, query_bundle)

    def _run(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> list[NodeWithScore]:
        if nodes is None or isinstance(nodes, str | bytes | NodeWithScore) or not isinstance(nodes, Iterable):
            msg = (
                f"{self.class_name()}.postprocess_nodes needs a list of NodeWithScore, got "
                f"{type(nodes).__name__}: {nodes!r:.80}; pass [] when there is nothing to read"
            )
            raise TypeError(msg)
        nodes = list(nodes)
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes), model_name=self._model_name()
            )
        )
        if query_bundle is None:
            msg = f"{self.class_name()} needs the query: pass query_bundle or query_str, got {query_bundle!r}"
            raise ValueError(msg)
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self._model_name(),
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            retrieval = self.engine.retrieve(
                node_documents(nodes), query_bundle.query_str, cancel=cancel, **self.retrieval_options
            )
            kept, scale = select_outputs(
                retrieval.sentences,
                self.top_n,
                "document" if self.mode == "parents" else "sentence",
                normalize_scores=self.normalize_scores,
                score_threshold=self.score_threshold,
            )
            result = self._parents(nodes, kept) if self.mode == "parents" else self._sentences(nodes, kept)
            if scale is not None:
                result = [NodeWithScore(node=n.node, score=scale(n.score or 0.0)) for n in result]
            event.on_end(payload={EventPayload.NODES: result})
        dispatcher.event(ReRankEndEvent(nodes=result))
        return result

    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        """Async: the chunk loop runs in a worker thread (the model lock serialises model use);
        cancelling the awaiting task stops it before the next pass."""
        return await run_cancellable(self._run, nodes, query_bundle)

    def _sentences(self, nodes: list[NodeWithScore], kept: list[RetrievedSentence]) -> list[NodeWithScore]:
        sentences = [sentence_node(s, nodes[s.document_index]) for s in kept]
        if self.order == "score":
            sentences = sorted(sentences, key=lambda n: -(n.score or 0.0))
        return sentences

    def _parents(self, nodes: list[NodeWithScore], kept: list[RetrievedSentence]) -> list[NodeWithScore]:
        best = best_score_per_document(kept)
        parents = [NodeWithScore(node=nodes[index].node, score=score) for index, score in sorted(best.items())]
        parents.sort(key=lambda n: -(n.score or 0.0))
        return parents
