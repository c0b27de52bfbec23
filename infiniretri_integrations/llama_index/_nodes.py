"""LlamaIndex nodes to engine documents, kept sentences back to nodes: the one retrieval
sequence of every LlamaIndex class (:func:`retrieve_sentence_nodes`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.schema import MetadataMode, NodeRelationship, NodeWithScore, TextNode

from infiniretri_integrations.core.outputs import output_id, sentence_span
from infiniretri_integrations.core.types import RetrievalResult, RetrievedSentence, SourceDocument

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import InfiniRetriEngine

SENTENCE_START_KEY = "sentence_start"
SENTENCE_END_KEY = "sentence_end"
SENTENCE_INDEX_KEY = "sentence_index"
SOURCE_ID_KEY = "source_id"
PROVENANCE_KEYS = (SENTENCE_START_KEY, SENTENCE_END_KEY, SENTENCE_INDEX_KEY, SOURCE_ID_KEY)


def node_documents(nodes: Sequence[NodeWithScore]) -> list[SourceDocument]:
    """The nodes' texts (no metadata) as engine documents, keeping ids and metadata."""
    documents = []
    for index, item in enumerate(nodes):
        if not isinstance(item, NodeWithScore):
            msg = f"nodes[{index}] must be a NodeWithScore, got {type(item).__name__}: {item!r}"
            raise TypeError(msg)
        node = item.node
        documents.append(
            SourceDocument(
                text=node.get_content(metadata_mode=MetadataMode.NONE) or "",
                id=node.node_id,
                metadata=dict(node.metadata),
            )
        )
    return documents


def sentence_node(sentence: RetrievedSentence, parent: NodeWithScore) -> NodeWithScore:
    """A kept sentence as a ``TextNode`` linked to its parent node (``NodeRelationship.SOURCE``).

    The text is the sentence without surrounding whitespace; ``metadata`` is the parent's plus
    ``sentence_start``/``sentence_end`` (so ``parent_text[start:end] == node.text``) and
    ``sentence_index`` and ``source_id`` (the parent's id); those keys are hidden from the LLM and
    embedding views. The node id is ``"{parent_id}:{start}-{end}"``: deterministic and unique per
    span, the rule the LangChain Documents follow too.
    """
    text, start, end = sentence_span(sentence)
    parent_node = parent.node
    metadata = {
        **parent_node.metadata,
        SENTENCE_START_KEY: start,
        SENTENCE_END_KEY: end,
        SENTENCE_INDEX_KEY: sentence.sentence_index,
        SOURCE_ID_KEY: parent_node.node_id,
    }
    excluded_llm = [*getattr(parent_node, "excluded_llm_metadata_keys", []), *PROVENANCE_KEYS]
    excluded_embed = [*getattr(parent_node, "excluded_embed_metadata_keys", []), *PROVENANCE_KEYS]
    parent_start = getattr(parent_node, "start_char_idx", None)
    node = TextNode(
        id_=output_id(parent_node.node_id, start, end),
        text=text,
        metadata=metadata,
        excluded_llm_metadata_keys=list(dict.fromkeys(excluded_llm)),
        excluded_embed_metadata_keys=list(dict.fromkeys(excluded_embed)),
        relationships={NodeRelationship.SOURCE: parent_node.as_related_node_info()},
        start_char_idx=None if parent_start is None else parent_start + start,
        end_char_idx=None if parent_start is None else parent_start + end,
    )
    return NodeWithScore(node=node, score=sentence.score)


def retrieve_sentence_nodes(
    engine: InfiniRetriEngine, nodes: Sequence[NodeWithScore], query_str: str, options: Mapping[str, Any]
) -> tuple[list[NodeWithScore], RetrievalResult]:
    """Run the InfiniRetri chunk loop over ``nodes``; the kept sentences as nodes (document
    order) and the raw retrieval result."""
    nodes = list(nodes)
    result = engine.retrieve(node_documents(nodes), query_str, **options)
    return [sentence_node(s, nodes[s.document_index]) for s in result.sentences], result


def retrieve_sentence_nodes_many(
    engine: InfiniRetriEngine,
    nodes: Sequence[NodeWithScore],
    queries: Sequence[str],
    options: Mapping[str, Any],
) -> list[tuple[list[NodeWithScore], RetrievalResult]]:
    """:func:`retrieve_sentence_nodes` for several queries over the same ``nodes`` in ONE
    :meth:`~InfiniRetriEngine.retrieve_many` call (``options`` may hold ``share_context`` and
    ``cancel``)."""
    nodes = list(nodes)
    results = engine.retrieve_many(node_documents(nodes), list(queries), **options)
    return [([sentence_node(s, nodes[s.document_index]) for s in r.sentences], r) for r in results]
