"""Retrieve and report: the one retrieval sequence of every LangChain class.

Run the engine with per-chunk progress events and dispatch the kept sentences as a custom event
(visible in ``astream_events``), synchronously or from a worker thread for async callers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    BaseCallbackManager,
    CallbackManagerForRetrieverRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.documents import Document

from infiniretri_integrations.core.concurrency import run_cancellable
from infiniretri_integrations.core.types import ChunkProgress, RetrievalResult, RetrievedSentence
from infiniretri_integrations.langchain._documents import to_engine_documents

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import InfiniRetriEngine, ProgressCallback

PROGRESS_EVENT = "infiniretri_progress"
"""Custom event dispatched after each chunk is read (payload: :func:`progress_payload`)."""
SENTENCES_EVENT = "infiniretri_sentences"
"""Custom event dispatched once retrieval is done (payload: :func:`sentences_payload`)."""


def progress_payload(progress: ChunkProgress, cache: list[RetrievedSentence]) -> dict[str, Any]:
    return {**dataclasses.asdict(progress), "kept_sentences": len(cache)}


def sentences_payload(result: RetrievalResult) -> dict[str, Any]:
    """The question, the kept sentences (document order) as :meth:`RetrievedSentence.to_dict`
    (the shape of the CLI's JSON and the Ray rows) and the run's statistics."""
    return {
        "question": result.question,
        "sentences": [s.to_dict() for s in result.sentences],
        "stats": dataclasses.asdict(result.stats),
    }


def _has_parent_run(config: dict[str, Any]) -> bool:
    callbacks = config.get("callbacks")
    return isinstance(callbacks, BaseCallbackManager) and callbacks.parent_run_id is not None


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


def retrieve_and_report(
    engine: InfiniRetriEngine,
    documents: Sequence[Document],
    question: str,
    options: dict[str, Any],
    config: dict[str, Any] | None,
) -> RetrievalResult:
    """Run the engine over ``documents`` with progress events, then dispatch the kept sentences
    (events only when ``config`` belongs to a run)."""
    result = engine.retrieve(to_engine_documents(documents), question, on_progress=sync_progress(config), **options)
    if config is not None:
        dispatch_custom_event(SENTENCES_EVENT, sentences_payload(result), config=config)  # type: ignore[arg-type]
    return result


async def aretrieve_and_report(
    engine: InfiniRetriEngine,
    documents: Sequence[Document],
    question: str,
    options: dict[str, Any],
    config: dict[str, Any] | None,
) -> RetrievalResult:
    """Async :func:`retrieve_and_report`: the engine runs in a worker thread, events are
    dispatched on the running loop. Cancelling the awaiting task (``asyncio.wait_for``,
    ``task.cancel()``) stops the chunk loop before its next pass (:func:`run_cancellable`)."""
    progress = async_progress(config, asyncio.get_running_loop())
    result = await run_cancellable(
        engine.retrieve, to_engine_documents(documents), question, on_progress=progress, **options
    )
    if config is not None:
        await adispatch_custom_event(SENTENCES_EVENT, sentences_payload(result), config=config)  # type: ignore[arg-type]
    return result
