"""What the engine accepts: documents and questions, validated and normalised before any work."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from infiniretri_integrations.core.segmentation import clean_for_tokenizer
from infiniretri_integrations.core.types import SourceDocument

DocumentLike = str | SourceDocument | Mapping[str, Any]
"""A document as callers give it: a text, a :class:`SourceDocument`, or a mapping with ``text``
(or ``page_content``) and optional ``id`` and ``metadata``."""


def validate_question(question: object) -> str:
    """The question, stripped and cleaned for the tokenizer; a clear error for anything else.

    Example:
        >>> validate_question("  Where does Bob live? ")
        'Where does Bob live?'
        >>> validate_question("   ")
        Traceback (most recent call last):
        ...
        ValueError: question must be a non-empty string, got '   '
    """
    if not isinstance(question, str):
        msg = f"question must be a str, got {type(question).__name__}: {question!r}"
        raise TypeError(msg)
    if not question.strip():
        msg = f"question must be a non-empty string, got {question!r}"
        raise ValueError(msg)
    return clean_for_tokenizer(question.strip())


def validate_questions(questions: object) -> list[str]:
    """A sequence of questions (each validated by :func:`validate_question`).

    Example:
        >>> validate_questions(["Who?", " When? "])
        ['Who?', 'When?']
        >>> validate_questions("Who?")
        Traceback (most recent call last):
        ...
        TypeError: questions must be a sequence of strings (a list), got str: 'Who?'; use retrieve() for one question
    """
    if isinstance(questions, str) or not isinstance(questions, Sequence):
        msg = (
            f"questions must be a sequence of strings (a list), got {type(questions).__name__}: "
            f"{questions!r:.80}; use retrieve() for one question"
        )
        raise TypeError(msg)
    return [validate_question(q) for q in questions]


def check_batch_size(batch_size: object) -> int | None:
    """``batch_size`` when it is ``None`` or a positive integer.

    Example:
        >>> check_batch_size(0)
        Traceback (most recent call last):
        ...
        ValueError: batch_size must be a positive integer or None, got 0
    """
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0):
        msg = f"batch_size must be a positive integer or None, got {batch_size!r}"
        raise ValueError(msg)
    return batch_size


def normalize_documents(documents: Iterable[DocumentLike] | DocumentLike) -> list[SourceDocument]:
    """Accept texts, :class:`SourceDocument` or mappings; a single text is one document.

    Ids, metadata and order are kept as given.

    Raises:
        ValueError: no documents at all.
        TypeError: an element that is not text (e.g. ``bytes``: decode it first).

    Example:
        >>> [d.id for d in normalize_documents([{"text": "A.", "id": 7}, "B."])]
        ['7', None]
    """
    if isinstance(documents, (str, SourceDocument, Mapping)):
        documents = [documents]
    if documents is None or not isinstance(documents, Iterable):
        msg = f"documents must be a text, a SourceDocument, a mapping or an iterable of them, got {documents!r:.80}"
        raise TypeError(msg)
    if isinstance(documents, (bytes, bytearray)):
        msg = "documents must be text, got bytes; decode them first (e.g. data.decode('utf-8', errors='replace'))"
        raise TypeError(msg)
    result = [_document(index, item) for index, item in enumerate(documents)]
    if not result:
        msg = "documents is empty; expected at least one document"
        raise ValueError(msg)
    return result


def _document(index: int, item: object) -> SourceDocument:
    if isinstance(item, SourceDocument):
        doc = item
    elif isinstance(item, str):
        doc = SourceDocument(text=item)
    elif isinstance(item, Mapping):
        text = item.get("text", item.get("page_content"))
        if not isinstance(text, str):
            msg = f"document {index} must have a str 'text' (or 'page_content'), got {type(text).__name__}"
            raise TypeError(msg)
        raw_id = item.get("id")
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            msg = f"document {index} 'metadata' must be a mapping (e.g. a dict), got {type(metadata).__name__}: {metadata!r:.80}"
            raise TypeError(msg)
        doc = SourceDocument(text=text, id=None if raw_id is None else str(raw_id), metadata=dict(metadata))
    else:
        hint = "; decode bytes first" if isinstance(item, (bytes, bytearray)) else ""
        msg = f"document {index} must be a str, SourceDocument or mapping, got {type(item).__name__}{hint}"
        raise TypeError(msg)
    if not isinstance(doc.text, str):
        msg = f"document {index} text must be a str, got {type(doc.text).__name__}"
        raise TypeError(msg)
    return doc
