"""LangChain ``Document`` objects to engine inputs, kept sentences back to Documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document

from infiniretri_integrations.core.integration import GroupBy, sentence_span
from infiniretri_integrations.core.types import RetrievedSentence, join_sentences


def to_engine_documents(documents: Sequence[Document]) -> list[dict[str, Any]]:
    """LangChain documents as the engine's mapping inputs (id and metadata carried along)."""
    converted: list[dict[str, Any]] = []
    for index, doc in enumerate(documents):
        if not isinstance(doc, Document):
            msg = f"document {index} must be a langchain_core Document, got {type(doc).__name__}: {doc!r}"
            raise TypeError(msg)
        converted.append({"text": doc.page_content, "id": doc.id, "metadata": dict(doc.metadata)})
    return converted


def sentence_document(sentence: RetrievedSentence, source: Document) -> Document:
    """One kept sentence as a Document: the source's id and metadata plus score and provenance.

    ``source.page_content[start_index:end_index] == page_content`` holds exactly.
    """
    text, start, end = sentence_span(sentence)
    metadata = {
        **source.metadata,
        "relevance_score": sentence.score,
        "source_index": sentence.document_index,
        "start_index": start,
        "end_index": end,
        "sentence_index": sentence.sentence_index,
    }
    return Document(page_content=text, id=source.id, metadata=metadata)


def grouped_document(sentences: list[RetrievedSentence], source: Document) -> Document:
    """The kept sentences of one source (document order) joined into one Document.

    Adjacent sentences keep their own spacing, gaps become a blank line. ``relevance_score`` is
    the best sentence score, ``spans`` lists every ``(start, end)`` span (each indexes the source
    exactly), ``start_index``/``end_index`` are the first start and last end.
    """
    spans = [sentence_span(s)[1:] for s in sentences]
    metadata = {
        **source.metadata,
        "relevance_score": max(s.score for s in sentences),
        "source_index": sentences[0].document_index,
        "start_index": spans[0][0],
        "end_index": spans[-1][1],
        "sentence_index": sentences[0].sentence_index,
        "sentence_indices": [s.sentence_index for s in sentences],
        "spans": spans,
    }
    return Document(page_content=join_sentences(sentences), id=source.id, metadata=metadata)


def build_documents(
    sentences: list[RetrievedSentence], sources: Sequence[Document], group_by: GroupBy
) -> list[Document]:
    """Output Documents in document order (by source index, then position)."""
    ordered = sorted(sentences, key=lambda s: (s.document_index, s.sentence_index))
    if group_by == "sentence":
        return [sentence_document(s, sources[s.document_index]) for s in ordered]
    groups: dict[int, list[RetrievedSentence]] = {}
    for s in ordered:
        groups.setdefault(s.document_index, []).append(s)
    return [grouped_document(group, sources[index]) for index, group in groups.items()]


def check_group_by(value: object) -> None:
    if value not in ("sentence", "document"):
        msg = f"group_by must be 'sentence' or 'document', got {value!r}"
        raise ValueError(msg)


def check_k(value: object, name: str = "k") -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        msg = f"{name} must be None or a non-negative integer, got {value!r}"
        raise ValueError(msg)
    return value
