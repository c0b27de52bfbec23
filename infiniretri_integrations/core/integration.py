"""What every framework adapter needs, framework-free, in one place.

- Engine policy: ``engine=None`` means the process-wide shared default engine (one per
  ``(device, dtype)``), created on first use and loading its model on the first query, never at
  construction. An engine, a ``LocalModel`` or a model path may be given instead
  (:func:`coerce_engine`, :func:`resolve_engine`).
- Option handling: per-call :class:`RetrievalConfig` overrides, validated by the config itself
  (:func:`check_overrides`, :func:`retrieval_overrides`); ``tokens_per_pass`` is the adapters'
  name for the config's ``top_k`` (context tokens kept per forward pass), so that nobody confuses
  it with the frameworks' ``k``/``top_k``/``top_n`` (how many documents come back).
- Output rules shared by the LangChain Documents and the LlamaIndex nodes: the stripped sentence
  span (:func:`sentence_span`), the deterministic output id (:func:`output_id`), which sentences
  make the ``k`` best outputs (:func:`keep_best`), normalised scores and thresholds
  (:func:`score_scale`).
- Async callers of blocking work: :func:`run_cancellable` runs it in a worker thread and, when the
  awaiting task is cancelled (``asyncio.wait_for`` timeout, ``task.cancel()``), sets the work's
  ``cancel`` event and waits for it to stop, so that nothing keeps running (or holding the model
  lock) after the caller gave up.
- Bridging a blocking iterator to callers: :func:`closing_generator`, :func:`iterate_in_thread`.

Nothing here imports torch, transformers or a framework at import time.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import os
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from infiniretri_integrations.core.config import RetrievalConfig
from infiniretri_integrations.core.types import RetrievedSentence

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import InfiniRetriEngine, ProgressCallback

__all__ = [
    "OPTION_ALIASES",
    "GroupBy",
    "ProgressCallback",
    "check_device_dtype",
    "check_overrides",
    "check_threshold",
    "closing_generator",
    "coerce_engine",
    "default_engine",
    "iterate_in_thread",
    "keep_best",
    "output_id",
    "resolve_aliases",
    "resolve_engine",
    "retrieval_option_names",
    "retrieval_overrides",
    "run_cancellable",
    "score_scale",
    "select_outputs",
    "sentence_span",
]

GroupBy = Literal["sentence", "document"]
T = TypeVar("T")

OPTION_ALIASES: dict[str, str] = {"tokens_per_pass": "top_k"}
"""Adapter names for :class:`RetrievalConfig` fields whose own name collides with a framework's."""


def retrieval_option_names() -> tuple[str, ...]:
    """Every :class:`RetrievalConfig` field, in declaration order (new fields appear here).

    Example:
        >>> "chunk_size" in retrieval_option_names()
        True
    """
    return tuple(f.name for f in dataclasses.fields(RetrievalConfig))


# ------------------------------------------------------------------ options
def resolve_aliases(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with adapter aliases (:data:`OPTION_ALIASES`) under the config's names.

    Example:
        >>> resolve_aliases({"tokens_per_pass": 20, "chunk_size": 512})
        {'chunk_size': 512, 'top_k': 20}
    """
    resolved = dict(options)
    for alias, name in OPTION_ALIASES.items():
        if alias in resolved:
            if name in resolved and resolved[name] != resolved[alias]:
                msg = (
                    f"{alias} and {name} are the same option (context tokens kept per forward pass); "
                    f"got {alias}={resolved[alias]!r} and {name}={resolved[name]!r}: pass one"
                )
                raise ValueError(msg)
            resolved[name] = resolved.pop(alias)
    return resolved


def check_overrides(options: Mapping[str, Any]) -> dict[str, Any]:
    """Per-call :class:`RetrievalConfig` overrides, aliases resolved, checked now rather than at
    the first query: unknown names and invalid values raise, naming the value and what is valid.

    Example:
        >>> check_overrides({"tokens_per_pass": 20})
        {'top_k': 20}
        >>> check_overrides({"topk": 20})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: Unknown retrieval option(s) ['topk']; expected some of [...]
    """
    resolved = resolve_aliases(options)
    unknown = sorted(set(resolved) - set(retrieval_option_names()))
    if unknown:
        valid = [*retrieval_option_names(), *OPTION_ALIASES]
        msg = f"Unknown retrieval option(s) {unknown}; expected some of {valid}"
        raise TypeError(msg)
    RetrievalConfig().replace(**resolved)
    return resolved


def retrieval_overrides(config: RetrievalConfig | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides from an optional full ``config`` plus single ``options`` (``None`` = not set).

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
            msg = f"retrieval_config must be a RetrievalConfig, got {type(config).__name__}: {config!r}"
            raise TypeError(msg)
        overrides = {name: getattr(config, name) for name in retrieval_option_names()}
    overrides.update(resolve_aliases({name: value for name, value in options.items() if value is not None}))
    return check_overrides(overrides)


# ------------------------------------------------------------------ engine policy
_default_engines: dict[tuple[str, str], InfiniRetriEngine] = {}
_default_lock = threading.Lock()


def default_engine(device: Any = None, dtype: Any = None) -> InfiniRetriEngine:
    """The process-wide engine on the packaged default model for ``(device, dtype)`` (``None``:
    automatic); created once, its weights load on the first retrieval.

    Example:
        >>> default_engine() is default_engine()
        True
    """
    from infiniretri_integrations.core.engine import InfiniRetriEngine

    key = (str(device), str(dtype))
    with _default_lock:
        engine = _default_engines.get(key)
        if engine is None:
            engine = _default_engines[key] = InfiniRetriEngine(device=device, dtype=dtype)
        return engine


def coerce_engine(value: Any, device: Any = None, dtype: Any = None) -> InfiniRetriEngine | None:
    """An engine for an adapter: ``None`` stays ``None`` (the default engine, resolved at use), an
    engine is used as is, a ``LocalModel`` or a model path / ``.gguf`` file gets its own engine
    (loaded lazily). ``device``/``dtype`` apply only where the engine loads the model itself.

    Example:
        >>> coerce_engine(None) is None
        True
        >>> coerce_engine(42)
        Traceback (most recent call last):
        ...
        TypeError: engine must be an InfiniRetriEngine, a LocalModel, a model path or None, got int: 42; wrap a transformers model and its tokenizer as LocalModel(model=..., tokenizer=...)
    """
    if device is not None or dtype is not None:
        check_device_dtype(device, dtype)
    if value is None:
        return None
    from infiniretri_integrations.core.engine import InfiniRetriEngine
    from infiniretri_integrations.core.models import LocalModel

    if isinstance(value, InfiniRetriEngine | LocalModel) and (device is not None or dtype is not None):
        msg = (
            f"device={device!r}/dtype={dtype!r} apply only when the model is loaded here; "
            f"got a ready {type(value).__name__}: set them where it is built, or pass a model path"
        )
        raise ValueError(msg)
    if isinstance(value, InfiniRetriEngine):
        return value
    if isinstance(value, LocalModel):
        return InfiniRetriEngine(value)
    if isinstance(value, str | os.PathLike):
        return InfiniRetriEngine(value, device=device, dtype=dtype)
    msg = (
        f"engine must be an InfiniRetriEngine, a LocalModel, a model path or None, got {type(value).__name__}: "
        f"{value!r}; wrap a transformers model and its tokenizer as LocalModel(model=..., tokenizer=...)"
    )
    raise TypeError(msg)


def check_device_dtype(device: Any = None, dtype: Any = None) -> None:
    """Raise now, naming the value and the fix, if ``device``/``dtype`` cannot be used here
    (e.g. ``device="cuda"`` on a CPU build of torch), rather than at the first query."""
    from infiniretri_integrations.core.models import resolve_device, resolve_dtype

    resolved = resolve_device(device)
    if dtype is not None:
        resolve_dtype(resolved, dtype)


def resolve_engine(engine: InfiniRetriEngine | None, device: Any = None, dtype: Any = None) -> InfiniRetriEngine:
    """``engine``, or the shared :func:`default_engine` for ``(device, dtype)``."""
    return engine if engine is not None else default_engine(device, dtype)


# ------------------------------------------------------------------ outputs
def sentence_span(sentence: RetrievedSentence) -> tuple[str, int, int]:
    """The sentence without surrounding whitespace and its exact ``(start, end)`` in the source.

    Example:
        >>> s = RetrievedSentence(" Bob lives in Rome. ", 1.0, 0, "d", 1, 10, 30, 5)
        >>> sentence_span(s)
        ('Bob lives in Rome.', 11, 29)
    """
    text = sentence.text
    lead = len(text) - len(text.lstrip())
    body = text.strip()
    start = sentence.start + lead
    return body, start, start + len(body)


def output_id(source_id: str | None, start: int, end: int) -> str | None:
    """The id of an output made from ``source[start:end]``: unique per span and deterministic
    (the same input gives the same id), ``None`` when the source has no id.

    Example:
        >>> output_id("report", 10, 42), output_id(None, 0, 5)
        ('report:10-42', None)
    """
    return None if source_id is None else f"{source_id}:{start}-{end}"


def keep_best(sentences: Sequence[RetrievedSentence], k: int | None, group_by: GroupBy) -> list[RetrievedSentence]:
    """The sentences that make up the ``k`` best outputs, in document order (``None``: all).

    With ``group_by="sentence"`` the ``k`` best-scoring sentences; with ``"document"`` every kept
    sentence of the ``k`` documents with the best maximum sentence score.

    Example:
        >>> s = [RetrievedSentence("a", 1.0, 0, None, 0, 0, 1, 1), RetrievedSentence("b", 3.0, 1, None, 0, 0, 1, 1),
        ...      RetrievedSentence("c", 2.0, 1, None, 1, 1, 2, 1)]
        >>> [x.text for x in keep_best(s, 2, "sentence")], [x.text for x in keep_best(s, 1, "document")]
        (['b', 'c'], ['b', 'c'])
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


def score_scale(sentences: Sequence[RetrievedSentence]) -> Callable[[float], float]:
    """Map the raw scores of one query's kept sentences to 0-1 (min-max): the best scores 1, the
    weakest 0. Raw scores are attention sums, fused reciprocal ranks or content-free differences
    (which can be negative), so only their order within one query means anything.

    Example:
        >>> s = [RetrievedSentence("a", 2.0, 0, None, 0, 0, 1, 1), RetrievedSentence("b", 8.0, 0, None, 1, 1, 2, 1),
        ...      RetrievedSentence("c", 5.0, 0, None, 2, 2, 3, 1)]
        >>> scale = score_scale(s)
        >>> scale(2.0), scale(5.0), scale(8.0)
        (0.0, 0.5, 1.0)
    """
    scores = [s.score for s in sentences]
    top, bottom = max(scores, default=0.0), min(scores, default=0.0)
    if top <= bottom:
        return lambda score: 1.0
    return lambda score: max(0.0, min(1.0, (score - bottom) / (top - bottom)))


def select_outputs(
    sentences: Sequence[RetrievedSentence],
    k: int | None,
    group_by: GroupBy,
    *,
    normalize_scores: bool = False,
    score_threshold: float | None = None,
) -> tuple[list[RetrievedSentence], Callable[[float], float] | None]:
    """The sentences behind the ``k`` best outputs scoring at least ``score_threshold`` (on the
    reported scale), and the scale reported (``None``: raw attention scores). Kept pieces that
    are only whitespace (a long run of blanks cut by tokens) are left out before anything else:
    they would make empty outputs.

    Example:
        >>> s = [RetrievedSentence("a", 2.0, 0, None, 0, 0, 1, 1), RetrievedSentence("b", 8.0, 0, None, 1, 1, 2, 1)]
        >>> kept, scale = select_outputs(s, None, "sentence", normalize_scores=True, score_threshold=0.5)
        >>> [x.text for x in kept], scale(8.0)
        (['b'], 1.0)
    """
    sentences = [s for s in sentences if s.text.strip()]  # whitespace-only pieces make no output
    scale = score_scale(sentences) if normalize_scores else None
    kept = list(sentences)
    if score_threshold is not None:
        kept = [s for s in kept if (scale(s.score) if scale is not None else s.score) >= score_threshold]
    return keep_best(kept, k, group_by), scale


def check_threshold(value: object, normalized: bool) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        msg = f"score_threshold must be None or a number >= 0, got {value!r}"
        raise ValueError(msg)
    if normalized and value > 1:
        msg = f"score_threshold must be in [0, 1] with normalize_scores=True, got {value!r}"
        raise ValueError(msg)


# ------------------------------------------------------------------ async callers
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


# ------------------------------------------------------------------ iterators
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
