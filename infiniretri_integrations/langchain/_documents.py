"""LangChain ``Document`` objects to engine inputs, kept sentences back to Documents.

Output metadata (sentence Documents; grouped Documents have the same keys over their span):

- ``relevance_score``: the attention score, or its 0-1 share of the query's best when
  ``normalize_scores`` is on; ``attention_score``: always the raw score.
- ``source_id``, ``source_index``: the input Document's id and position.
- ``chunk_start_index``/``chunk_end_index``: the span in the input's ``page_content``.
- ``start_index``/``end_index``: the span in the original document: the input's own
  ``start_index`` (from ``RecursiveCharacterTextSplitter(add_start_index=True)``) plus the chunk
  offsets; the chunk offsets when the input has none.
- ``sentence_index``.

Output ids are deterministic and unique per span: ``"{source_id}:{start}-{end}"`` (chunk
offsets), the rule :func:`~infiniretri_integrations.core.outputs.output_id` shared with the
LlamaIndex nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.documents import Document

from infiniretri_integrations.core.outputs import GroupBy, best_score_per_document, output_id, sentence_span
from infiniretri_integrations.core.types import RetrievedSentence, join_sentences

Scale = Callable[[float], float]


def check_documents(value: Any, name: str = "docs") -> list[Document]:
    """``value`` as a list of LangChain Documents, or one error that says how to convert.

    Example:
        >>> check_documents(["text"])
        Traceback (most recent call last):
        ...
        TypeError: docs[0] must be a langchain_core Document, got str: 'text'; use from_texts(...) for strings
    """
    if isinstance(value, Document):
        value = [value]
    documents = list(value)
    for index, doc in enumerate(documents):
        if isinstance(doc, Document):
            continue
        kind = f"{type(doc).__module__}.{type(doc).__name__}"
        if hasattr(doc, "to_langchain_format"):
            hint = (
                "convert LlamaIndex documents with [d.to_langchain_format() for d in documents], "
                "or use infiniretri_integrations.llama_index"
            )
        elif isinstance(doc, str):
            hint, kind = "use from_texts(...) for strings", "str"
        else:
            hint = "build Document(page_content=..., metadata=...) objects"
        msg = f"{name}[{index}] must be a langchain_core Document, got {kind}: {doc!r:.80}; {hint}"
        raise TypeError(msg)
    return documents


def to_engine_documents(documents: Sequence[Document]) -> list[dict[str, Any]]:
    """LangChain documents as the engine's mapping inputs (id and metadata carried along)."""
    return [
        {"text": doc.page_content, "id": doc.id, "metadata": dict(doc.metadata)}
        for doc in check_documents(documents, "documents")
    ]


def _origin(source: Document) -> int:
    offset = source.metadata.get("start_index")
    return offset if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 else 0


def _provenance(source: Document, index: int, start: int, end: int) -> dict[str, Any]:
    origin = _origin(source)
    return {
        "source_id": source.id,
        "source_index": index,
        "start_index": origin + start,
        "end_index": origin + end,
        "chunk_start_index": start,
        "chunk_end_index": end,
    }


def sentence_document(sentence: RetrievedSentence, source: Document, scale: Scale | None = None) -> Document:
    """One kept sentence as a Document: the source's metadata plus score and provenance.

    ``source.page_content[chunk_start_index:chunk_end_index] == page_content`` holds exactly.
    """
    text, start, end = sentence_span(sentence)
    metadata = {
        **source.metadata,
        "relevance_score": scale(sentence.score) if scale is not None else sentence.score,
        "attention_score": sentence.score,
        **_provenance(source, sentence.document_index, start, end),
        "sentence_index": sentence.sentence_index,
    }
    return Document(page_content=text, id=output_id(source.id, start, end), metadata=metadata)


def grouped_document(sentences: list[RetrievedSentence], source: Document, scale: Scale | None = None) -> Document:
    """The kept sentences of one source (document order) joined into one Document.

    Adjacent sentences keep their own spacing, gaps become a blank line. The score is the best
    sentence's; ``chunk_spans`` lists every ``(start, end)`` span in the source's ``page_content``,
    ``spans`` the same in the original document; ``start_index``/``end_index`` are the first
    start and last end.
    """
    chunk_spans = [sentence_span(s)[1:] for s in sentences]
    origin = _origin(source)
    best = best_score_per_document(sentences)[sentences[0].document_index]
    metadata = {
        **source.metadata,
        "relevance_score": scale(best) if scale is not None else best,
        "attention_score": best,
        **_provenance(source, sentences[0].document_index, chunk_spans[0][0], chunk_spans[-1][1]),
        "sentence_index": sentences[0].sentence_index,
        "sentence_indices": [s.sentence_index for s in sentences],
        "spans": [(origin + start, origin + end) for start, end in chunk_spans],
        "chunk_spans": chunk_spans,
    }
    doc_id = output_id(source.id, chunk_spans[0][0], chunk_spans[-1][1])
    return Document(page_content=join_sentences(sentences), id=doc_id, metadata=metadata)


def build_documents(
    sentences: list[RetrievedSentence], sources: Sequence[Document], group_by: GroupBy, scale: Scale | None = None
) -> list[Document]:
    """Output Documents in document order (by source index, then position); kept pieces that are
    only whitespace make no Document (nor a gap in a grouped one)."""
    kept = [s for s in sentences if s.text.strip()]
    ordered = sorted(kept, key=lambda s: (s.document_index, s.sentence_index))
    if group_by == "sentence":
        return [sentence_document(s, sources[s.document_index], scale) for s in ordered]
    groups: dict[int, list[RetrievedSentence]] = {}
    for s in ordered:
        groups.setdefault(s.document_index, []).append(s)
    return [grouped_document(group, sources[index], scale) for index, group in groups.items()]


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
