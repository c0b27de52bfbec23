"""One call from loaded documents to a working InfiniRetri query engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.callbacks import CallbackManager
from llama_index.core.indices.list import SummaryIndex
from llama_index.core.llms import LLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import BaseNode, Document, NodeWithScore, QueryBundle, QueryType

from infiniretri_integrations.llama_index.synthesizer import InfiniRetriSynthesizer


class InfiniRetriQueryEngine(RetrieverQueryEngine):
    """A ``RetrieverQueryEngine`` whose synthesizer runs InfiniRetri over every retrieved node.

    Build it with :meth:`from_documents` (or :meth:`from_nodes`): all text goes into a
    ``SummaryIndex`` (no embeddings), whose retriever hands every node to
    :class:`InfiniRetriSynthesizer`; the local model reads them chunk by chunk, keeps the sentences
    the question attends to and answers from them (or ``llm`` does). ``query``, ``aquery`` and
    streaming work as for any query engine; ``response.source_nodes`` are the kept sentences.

    Example:
        >>> from llama_index.core import Document
        >>> from llama_index.core.tools import QueryEngineTool
        >>> docs = [Document(text="Alice lives in Paris. Bob lives in Rome.", id_="people")]
        >>> query_engine = InfiniRetriQueryEngine.from_documents(docs, tokens_per_pass=20)
        >>> tool = QueryEngineTool.from_defaults(query_engine, name="people", description="Who lives where.")
        >>> str(query_engine.query("Where does Bob live?"))  # doctest: +SKIP
        'Bob lives in Rome.'
    """

    @classmethod
    def from_documents(
        cls,
        documents: Sequence[Document],
        *args: Any,
        node_chunk_size: int | None = None,
        **options: Any,
    ) -> InfiniRetriQueryEngine:
        """Query engine over loaded ``documents``.

        ``from_documents(documents, engine=None, llm=None, streaming=False, *, node_chunk_size=None,
        node_postprocessors=None, callback_manager=None, **options)``: every argument but
        ``documents`` and ``node_chunk_size`` goes unchanged to :meth:`from_nodes`, then
        :meth:`from_retriever`.

        Args:
            documents: LlamaIndex ``Document`` objects (e.g. from ``SimpleDirectoryReader``).
            engine: an :class:`InfiniRetriEngine`, a model it accepts, or ``None`` (packaged model).
            llm: LlamaIndex LLM that writes the answer from the kept sentences; ``None``: the local model.
            streaming: return ``StreamingResponse`` objects.
            node_chunk_size: split documents into nodes of about this many tokens (no overlap) with
                ``SentenceSplitter``; ``None`` (default) keeps each document as one node, so the
                sentences' spans and ``SOURCE`` links refer to the documents themselves.
            node_postprocessors: applied to the nodes before synthesis.
            callback_manager: LlamaIndex callback manager.
            **options: :class:`~infiniretri_integrations.RetrievalConfig` overrides (``tokens_per_pass``,
                ``token_budget``, ...) and the answer options of :class:`InfiniRetriSynthesizer`
                (``max_new_tokens``, ``stop``, ``generate_kwargs``, ``text_qa_template``, ...).
        """
        documents = list(documents)
        if not documents:
            msg = f"documents is empty; expected at least one Document, got {documents!r}"
            raise ValueError(msg)
        for index, doc in enumerate(documents):
            if not isinstance(doc, BaseNode):
                msg = f"documents[{index}] must be a llama_index Document, got {type(doc).__name__}: {doc!r:.80}"
                raise TypeError(msg)
        nodes: list[BaseNode]
        if node_chunk_size is None:
            nodes = list(documents)
        else:
            splitter = SentenceSplitter(chunk_size=node_chunk_size, chunk_overlap=0)
            nodes = list(splitter.get_nodes_from_documents(documents))
        return cls.from_nodes(nodes, *args, **options)

    @classmethod
    def from_nodes(
        cls,
        nodes: Sequence[BaseNode],
        *args: Any,
        callback_manager: CallbackManager | None = None,
        **options: Any,
    ) -> InfiniRetriQueryEngine:
        """Query engine over ready-made nodes (all of them are read for every query).

        ``from_nodes(nodes, engine=None, llm=None, streaming=False, *, node_postprocessors=None,
        callback_manager=None, **options)``: the arguments of :meth:`from_retriever` (relayed
        unchanged; ``callback_manager`` also goes to the ``SummaryIndex``).
        """
        index = SummaryIndex(nodes=list(nodes), callback_manager=callback_manager)
        return cls.from_retriever(index.as_retriever(), *args, callback_manager=callback_manager, **options)

    @classmethod
    def from_retriever(
        cls,
        retriever: BaseRetriever,
        engine: Any = None,
        llm: LLM | None = None,
        streaming: bool = False,
        *,
        node_postprocessors: list[BaseNodePostprocessor] | None = None,
        callback_manager: CallbackManager | None = None,
        **options: Any,
    ) -> InfiniRetriQueryEngine:
        """Query engine reading whatever ``retriever`` returns (e.g. a vector index's top-k).

        ``engine``, ``llm``, ``streaming``, ``callback_manager`` and ``**options`` (retrieval and
        answer options) build the :class:`InfiniRetriSynthesizer`; ``node_postprocessors`` run on
        the retrieved nodes before it (arguments as in :meth:`from_documents`).
        """
        synthesizer = InfiniRetriSynthesizer(
            engine, llm=llm, streaming=streaming, callback_manager=callback_manager, **options
        )
        return cls(
            retriever=retriever,
            response_synthesizer=synthesizer,
            node_postprocessors=node_postprocessors,
            callback_manager=callback_manager,
        )

    @property
    def synthesizer(self) -> InfiniRetriSynthesizer:
        return self._response_synthesizer  # type: ignore[return-value]

    # ------------------------------------------------------------------ many questions
    def query_many(self, queries: Sequence[QueryType], *, share_context: bool = False) -> list[RESPONSE_TYPE]:
        """Answer several queries; those whose retriever returns the same nodes (all of them with
        :meth:`from_documents`) are read in ONE pass over the nodes
        (:meth:`InfiniRetriSynthesizer.synthesize_many`), each then answered on its own. The
        responses equal one :meth:`query` per query (``share_context=True``: faster, a
        different selection).

        Example:
            >>> responses = query_engine.query_many(["Where does Bob live?", "Who bakes?"])  # doctest: +SKIP
        """
        bundles = [_bundle(q) for q in queries]
        groups = _group_by_nodes([self.retrieve(b) for b in bundles])
        responses: list[RESPONSE_TYPE | None] = [None] * len(bundles)
        for indices, nodes in groups:
            answered = self.synthesizer.synthesize_many(
                [bundles[i] for i in indices], nodes, share_context=share_context
            )
            for index, response in zip(indices, answered, strict=True):
                responses[index] = response
        return responses  # type: ignore[return-value]

    async def aquery_many(self, queries: Sequence[QueryType], *, share_context: bool = False) -> list[RESPONSE_TYPE]:
        """Async :meth:`query_many`; cancelling the awaiting task stops the chunk loop."""
        bundles = [_bundle(q) for q in queries]
        groups = _group_by_nodes([await self.aretrieve(b) for b in bundles])
        responses: list[RESPONSE_TYPE | None] = [None] * len(bundles)
        for indices, nodes in groups:
            answered = await self.synthesizer.asynthesize_many(
                [bundles[i] for i in indices], nodes, share_context=share_context
            )
            for index, response in zip(indices, answered, strict=True):
                responses[index] = response
        return responses  # type: ignore[return-value]


def _bundle(query: QueryType) -> QueryBundle:
    if isinstance(query, QueryBundle):
        return query
    if isinstance(query, str):
        return QueryBundle(query)
    msg = f"each query must be a str or QueryBundle, got {type(query).__name__}: {query!r:.80}"
    raise TypeError(msg)


def _group_by_nodes(retrieved: Sequence[list[NodeWithScore]]) -> list[tuple[list[int], list[NodeWithScore]]]:
    """Query indices grouped by the nodes retrieved for them (same ids and texts, same order)."""
    groups: dict[tuple[tuple[str, str], ...], tuple[list[int], list[NodeWithScore]]] = {}
    for index, nodes in enumerate(retrieved):
        key = tuple((n.node.node_id, n.node.get_content()) for n in nodes)
        groups.setdefault(key, ([], nodes))[0].append(index)
    return list(groups.values())
