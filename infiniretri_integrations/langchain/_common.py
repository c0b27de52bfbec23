"""Pieces shared by the LangChain retriever, compressor and QA runnable.

Conversion between LangChain ``Document`` objects and the engine's inputs/outputs, the shared
default engine, retrieval options, custom-event payloads, thread bridging for async callers and
the offline tiktoken token counter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    BaseCallbackManager,
    CallbackManagerForRetrieverRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.documents import Document

from infiniretri_integrations.core.config import RetrievalConfig
from infiniretri_integrations.core.engine import InfiniRetriEngine
from infiniretri_integrations.core.models import LocalModel
from infiniretri_integrations.core.types import ChunkProgress, RetrievalResult, RetrievedSentence, join_sentences

GroupBy = Literal["sentence", "document"]

PROGRESS_EVENT = "infiniretri_progress"
"""Custom event dispatched after each chunk is read (payload: :func:`progress_payload`)."""
SENTENCES_EVENT = "infiniretri_sentences"
"""Custom event dispatched once retrieval is done (payload: the kept sentences as dicts)."""

_OPTION_NAMES = ("top_k", "chunk_size", "phrase_window", "max_cache_tokens", "max_sentence_tokens", "scoring_layer")

_default_engine_lock = threading.Lock()
_default_engine: InfiniRetriEngine | None = None


def default_engine() -> InfiniRetriEngine:
    """The process-wide engine on the packaged default model (weights load on first retrieval).

    Example:
        >>> default_engine() is default_engine()
        True
    """
    global _default_engine
    with _default_engine_lock:
        if _default_engine is None:
            _default_engine = InfiniRetriEngine()
        return _default_engine


def coerce_engine(value: Any) -> InfiniRetriEngine | None:
    """Accept an engine, ``None`` (shared default engine later), or a model (wrapped in an engine).

    Example:
        >>> coerce_engine(None) is None
        True
        >>> coerce_engine(42)
        Traceback (most recent call last):
        ...
        TypeError: engine must be an InfiniRetriEngine, a LocalModel or None, got int: 42
    """
    if value is None or isinstance(value, InfiniRetriEngine):
        return value
    if isinstance(value, LocalModel):
        return InfiniRetriEngine(value)
    msg = f"engine must be an InfiniRetriEngine, a LocalModel or None, got {type(value).__name__}: {value!r}"
    raise TypeError(msg)


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


def retrieval_overrides(config: RetrievalConfig | None, options: dict[str, Any]) -> dict[str, Any]:
    """Per-call engine overrides from an optional full config plus single options (``None`` = unset).

    The result is validated by building a :class:`RetrievalConfig` from it.

    Example:
        >>> retrieval_overrides(None, {"top_k": 20, "chunk_size": None})
        {'top_k': 20}
        >>> retrieval_overrides(None, {"top_k": 0})
        Traceback (most recent call last):
        ...
        ValueError: top_k must be a positive integer, got 0
    """
    overrides: dict[str, Any] = {}
    if config is not None:
        if not isinstance(config, RetrievalConfig):
            msg = f"config must be a RetrievalConfig, got {type(config).__name__}: {config!r}"
            raise TypeError(msg)
        overrides = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    overrides.update({name: value for name, value in options.items() if value is not None})
    RetrievalConfig().replace(**overrides)  # validates
    return overrides


def option_values(model: Any) -> dict[str, Any]:
    return {name: getattr(model, name) for name in _OPTION_NAMES}


def to_engine_documents(documents: Sequence[Document]) -> list[dict[str, Any]]:
    """LangChain documents as the engine's mapping inputs (id and metadata carried along)."""
    converted: list[dict[str, Any]] = []
    for index, doc in enumerate(documents):
        if not isinstance(doc, Document):
            msg = f"document {index} must be a langchain_core Document, got {type(doc).__name__}: {doc!r}"
            raise TypeError(msg)
        converted.append({"text": doc.page_content, "id": doc.id, "metadata": dict(doc.metadata)})
    return converted


def _stripped_span(sentence: RetrievedSentence) -> tuple[str, int, int]:
    """The sentence text without surrounding whitespace and its exact span in the source text."""
    text = sentence.text
    lead = len(text) - len(text.lstrip())
    body = text.strip()
    start = sentence.start + lead
    return body, start, start + len(body)


def sentence_document(sentence: RetrievedSentence, source: Document) -> Document:
    """One kept sentence as a Document: the source's id and metadata plus score and provenance.

    ``source.page_content[start_index:end_index] == page_content`` holds exactly.
    """
    text, start, end = _stripped_span(sentence)
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
    spans = [_stripped_span(s)[1:] for s in sentences]
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


def select_sentences(sentences: list[RetrievedSentence], k: int | None, group_by: GroupBy) -> list[RetrievedSentence]:
    """Keep the sentences that make up the ``k`` best output Documents (document order kept).

    With ``group_by="sentence"`` the ``k`` best-scoring sentences; with ``"document"`` every kept
    sentence of the ``k`` documents with the best maximum sentence score.
    """
    if k is None:
        return list(sentences)
    if group_by == "sentence":
        best = sorted(range(len(sentences)), key=lambda i: (-sentences[i].score, i))[:k]
        return [sentences[i] for i in sorted(best)]
    top: dict[int, float] = {}
    for s in sentences:
        top[s.document_index] = max(top.get(s.document_index, float("-inf")), s.score)
    chosen = set(sorted(top, key=lambda d: (-top[d], d))[:k])
    return [s for s in sentences if s.document_index in chosen]


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


# ---------------------------------------------------------------------------------- events
def sentence_payload(sentence: RetrievedSentence) -> dict[str, Any]:
    return {
        "text": sentence.text.strip(),
        "score": sentence.score,
        "document_index": sentence.document_index,
        "document_id": sentence.document_id,
        "sentence_index": sentence.sentence_index,
        "start": sentence.start,
        "end": sentence.end,
    }


def progress_payload(progress: ChunkProgress, cache: list[RetrievedSentence]) -> dict[str, Any]:
    return {**dataclasses.asdict(progress), "kept_sentences": len(cache)}


def sentences_payload(result: RetrievalResult) -> dict[str, Any]:
    return {
        "question": result.question,
        "sentences": [sentence_payload(s) for s in result.sentences],
        "stats": dataclasses.asdict(result.stats),
    }


ProgressCallback = Callable[[ChunkProgress, list[RetrievedSentence]], None]


def sync_progress(config: dict[str, Any] | None) -> ProgressCallback | None:
    """A progress callback dispatching :data:`PROGRESS_EVENT` into the run of ``config``
    (``None`` when the config has no parent run to attach events to)."""
    if config is None or not _has_parent_run(config):
        return None

    def report(progress: ChunkProgress, cache: list[RetrievedSentence]) -> None:
        dispatch_custom_event(PROGRESS_EVENT, progress_payload(progress, cache), config=config)  # type: ignore[arg-type]

    return report


def async_progress(config: dict[str, Any] | None, loop: asyncio.AbstractEventLoop) -> ProgressCallback | None:
    """Like :func:`sync_progress` for a retrieval running in a worker thread: the event is
    dispatched on ``loop`` (async handlers such as ``astream_events`` live there)."""
    if config is None or not _has_parent_run(config):
        return None

    def report(progress: ChunkProgress, cache: list[RetrievedSentence]) -> None:
        coro = adispatch_custom_event(PROGRESS_EVENT, progress_payload(progress, cache), config=config)  # type: ignore[arg-type]
        asyncio.run_coroutine_threadsafe(coro, loop).result()

    return report


def _has_parent_run(config: dict[str, Any]) -> bool:
    callbacks = config.get("callbacks")
    return isinstance(callbacks, BaseCallbackManager) and callbacks.parent_run_id is not None


def retriever_config(
    run_manager: CallbackManagerForRetrieverRun | AsyncCallbackManagerForRetrieverRun,
) -> dict[str, Any]:
    """A config whose callbacks are the retriever run's children (custom events attach to it)."""
    return {"callbacks": run_manager.get_child()}


def callbacks_config(callbacks: Any) -> dict[str, Any] | None:
    """A config for a compressor's ``callbacks`` argument, if they belong to a run."""
    if isinstance(callbacks, BaseCallbackManager) and callbacks.parent_run_id is not None:
        return {"callbacks": callbacks}
    return None


# ---------------------------------------------------------------------------------- tiktoken
_tiktoken_lock = threading.Lock()


def _llama_index_tiktoken_cache() -> str | None:
    """``llama_index/core/_static/tiktoken_cache`` when llama-index-core is installed (not imported)."""
    try:
        spec = importlib.util.find_spec("llama_index.core")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "_static" / "tiktoken_cache"
        if folder.is_dir():
            return str(folder)
    return None


@functools.lru_cache(maxsize=8)
def tiktoken_encoding(model: str) -> Any:
    """The tiktoken encoding for ``model`` (``cl100k_base`` for unknown names), loaded offline.

    As ``llama_index.core.utils.get_tokenizer`` does: when ``TIKTOKEN_CACHE_DIR`` is unset and
    llama-index-core is installed, its bundled encoding files are used (the variable is set only
    while loading); otherwise tiktoken's own cache (or download) applies.

    Example:
        >>> len(tiktoken_encoding("gpt-4o").encode("hello world"))  # doctest: +SKIP
        2
    """
    import tiktoken

    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = "cl100k_base"
    with _tiktoken_lock:
        bundled = None if "TIKTOKEN_CACHE_DIR" in os.environ else _llama_index_tiktoken_cache()
        if bundled is None:
            return tiktoken.get_encoding(name)
        os.environ["TIKTOKEN_CACHE_DIR"] = bundled
        try:
            return tiktoken.get_encoding(name)
        finally:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)


def count_tokens(text: str, model: str = "gpt-4o") -> int:
    """Tokens of ``text`` in the tiktoken encoding of ``model`` (special tokens counted as text)."""
    return len(tiktoken_encoding(model).encode(text, disallowed_special=()))
