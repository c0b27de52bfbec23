"""Blocking work for async and streaming callers.

:func:`run_cancellable` runs blocking work in a worker thread and, when the awaiting task is
cancelled (``asyncio.wait_for`` timeout, ``task.cancel()``), sets the work's ``cancel`` event and
waits for it to stop, so that nothing keeps running (or holding the model lock) after the caller
gave up. :func:`closing_generator` and :func:`iterate_in_thread` bridge a blocking iterator to
sync and async consumers.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from typing import Any, TypeVar

__all__ = ["closing_generator", "iterate_in_thread", "run_cancellable"]

T = TypeVar("T")


async def run_cancellable(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``func(*args, cancel=event, **kwargs)`` in a worker thread (as ``asyncio.to_thread``,
    context variables included), stopped when the awaiting task is cancelled.

    On cancellation (``task.cancel()``, an ``asyncio.wait_for`` timeout) the ``threading.Event``
    is set, the thread is waited for (the engine checks the event between passes, generation
    after every token, so this is short and the model lock is free afterwards) and
    ``CancelledError`` is re-raised; whatever the thread ended with (``RetrievalCancelled``, a
    result) is dropped. The wait does not block the event loop.

    Example:
        >>> def work(x, *, cancel):
        ...     return x * 2
        >>> asyncio.run(run_cancellable(work, 21))
        42
    """
    cancel = threading.Event()
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, cancel=cancel, **kwargs)
    future = loop.run_in_executor(None, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        await _wait_through_cancellation(future)
        if not future.cancelled():
            future.exception()  # retrieved: no "exception was never retrieved" warning
        raise


def closing_generator(pieces: Iterator[str]) -> Generator[str, None, None]:
    """A blocking iterator as a generator that closes it when the consumer stops early
    (what streaming responses expect)."""
    try:
        yield from pieces
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


async def iterate_in_thread(pieces: Iterator[str]) -> AsyncGenerator[str, None]:
    """Drive a blocking iterator from a worker thread, one item at a time, so that the event loop
    stays free; closes it when the consumer stops early or is cancelled.

    ``pieces.close()`` must be safe while another thread waits in ``next(pieces)`` (a
    :class:`~infiniretri_integrations.core.generation.TokenStream` is): on cancellation it is
    called at once and waited for, so the generation has stopped, and the model lock is free,
    when ``CancelledError`` reaches the canceller.
    """
    done = object()
    close = getattr(pieces, "close", None)
    try:
        while True:
            piece = await asyncio.to_thread(next, pieces, done)
            if piece is done:
                break
            yield piece  # type: ignore[misc]  # narrowed from object
    finally:
        if close is not None:
            closing = asyncio.ensure_future(asyncio.to_thread(close))
            if await _wait_through_cancellation(closing):
                raise asyncio.CancelledError
            closing.result()


async def _wait_through_cancellation(future: asyncio.Future[Any]) -> bool:
    """Wait until ``future`` is done even if the awaiting task is cancelled meanwhile; whether
    it was (the caller re-raises ``CancelledError`` once the work has stopped)."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            cancelled = True
    return cancelled
