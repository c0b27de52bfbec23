"""Shared helpers: engine resolution, nodes to documents, kept sentences to nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping, Sequence
from typing import Any

from llama_index.core.schema import MetadataMode, NodeRelationship, NodeWithScore, TextNode

from infiniretri_integrations.core.config import RetrievalConfig
from infiniretri_integrations.core.engine import InfiniRetriEngine
from infiniretri_integrations.core.models import LocalModel
from infiniretri_integrations.core.types import RetrievalResult, RetrievedSentence, SourceDocument

SENTENCE_START_KEY = "sentence_start"
SENTENCE_END_KEY = "sentence_end"
SENTENCE_INDEX_KEY = "sentence_index"
PROVENANCE_KEYS = (SENTENCE_START_KEY, SENTENCE_END_KEY, SENTENCE_INDEX_KEY)

EngineLike = InfiniRetriEngine | LocalModel | Any | None


def as_engine(engine: EngineLike = None) -> InfiniRetriEngine:
    """An :class:`InfiniRetriEngine` from an engine, a model (anything the engine accepts) or ``None``.

    ``None`` builds an engine on the packaged default model, loaded lazily on first use.

    Example:
        >>> as_engine(None).model_loaded
        False
    """
    if isinstance(engine, InfiniRetriEngine):
        return engine
    if engine is None:
        return InfiniRetriEngine()
    return InfiniRetriEngine(engine)


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check per-call :class:`RetrievalConfig` overrides early (unknown or invalid ones raise).

    Example:
        >>> validate_options({"top_k": 20})
        {'top_k': 20}
        >>> validate_options({"topk": 20})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: Unknown retrieval option(s) ['topk']; ...
    """
    options = dict(options)
    RetrievalConfig().replace(**options)
    return options


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
    ``sentence_index``; those three keys are hidden from the LLM and embedding views.
    """
    raw = sentence.text
    text = raw.strip()
    start = sentence.start + (len(raw) - len(raw.lstrip()))
    end = start + len(text)
    parent_node = parent.node
    metadata = {
        **parent_node.metadata,
        SENTENCE_START_KEY: start,
        SENTENCE_END_KEY: end,
        SENTENCE_INDEX_KEY: sentence.sentence_index,
    }
    excluded_llm = [*getattr(parent_node, "excluded_llm_metadata_keys", []), *PROVENANCE_KEYS]
    excluded_embed = [*getattr(parent_node, "excluded_embed_metadata_keys", []), *PROVENANCE_KEYS]
    parent_start = getattr(parent_node, "start_char_idx", None)
    node = TextNode(
        id_=f"{parent_node.node_id}:{start}-{end}",
        text=text,
        metadata=metadata,
        excluded_llm_metadata_keys=list(dict.fromkeys(excluded_llm)),
        excluded_embed_metadata_keys=list(dict.fromkeys(excluded_embed)),
        relationships={NodeRelationship.SOURCE: parent_node.as_related_node_info()},
        start_char_idx=None if parent_start is None else parent_start + start,
        end_char_idx=None if parent_start is None else parent_start + end,
    )
    return NodeWithScore(node=node, score=sentence.score)


def select(
    engine: InfiniRetriEngine, nodes: Sequence[NodeWithScore], query_str: str, options: Mapping[str, Any]
) -> tuple[list[NodeWithScore], RetrievalResult]:
    """Run the InfiniRetri chunk loop over ``nodes`` and return the kept sentences as nodes
    (document order) with the raw retrieval result."""
    nodes = list(nodes)
    result = engine.retrieve(node_documents(nodes), query_str, **options)
    return [sentence_node(s, nodes[s.document_index]) for s in result.sentences], result


def iterate(pieces: Iterator[str]) -> Generator[str, None, None]:
    """A blocking iterator as a generator (what LlamaIndex streaming responses expect)."""
    try:
        yield from pieces
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


async def aiterate(pieces: Iterator[str]) -> AsyncGenerator[str, None]:
    """Drive a blocking iterator from a worker thread, one item at a time."""
    done = object()
    try:
        while True:
            piece = await asyncio.to_thread(next, pieces, done)
            if piece is done:
                break
            yield piece  # type: ignore[misc]  # narrowed from object
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
