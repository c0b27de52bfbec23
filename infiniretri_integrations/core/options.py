"""Per-call options of the framework adapters, framework-free.

Retrieval options are the :class:`RetrievalConfig` fields, validated by the config itself
(:func:`check_overrides`, :func:`retrieval_overrides`); renamed options (``top_k``,
``max_cache_tokens``) still work with a ``DeprecationWarning``. Answer options
(:class:`GenerationConfig` fields) belong only to what answers: an adapter that only retrieves
refuses them with an error that says where they go (:func:`unknown_option_message`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from infiniretri_integrations.core.config import (
    RENAMED_OPTIONS,
    RetrievalConfig,
    generation_option_names,
    option_names,
    renamed_options,
)

__all__ = [
    "check_overrides",
    "retrieval_option_names",
    "retrieval_overrides",
    "unknown_option_message",
]


def retrieval_option_names() -> tuple[str, ...]:
    """Every :class:`RetrievalConfig` option, in declaration order (new fields appear here).

    Example:
        >>> "chunk_size" in retrieval_option_names(), "max_new_tokens" in retrieval_option_names()
        (True, False)
    """
    return option_names()


def unknown_option_message(owner: str, unknown: Iterable[str], valid: Iterable[str]) -> str:
    """The error for options ``owner`` does not take: answer options on something that does
    not answer say where they go.

    Example:
        >>> unknown_option_message("InfiniRetriRetriever", ["max_new_tokens"], ["k"])
        "InfiniRetriRetriever got unknown option(s) ['max_new_tokens']; valid options: ['k']. max_new_tokens is an answer option and InfiniRetriRetriever does not answer: set it where the answer is generated (InfiniRetriQA, InfiniRetriSynthesizer, InfiniRetriLLM or GenerationConfig)"
    """
    unknown = sorted(unknown)
    msg = f"{owner} got unknown option(s) {unknown}; valid options: {sorted(valid)}"
    answering = [name for name in unknown if name in generation_option_names()]
    if answering:
        msg += (
            f". {', '.join(answering)} {'is an answer option' if len(answering) == 1 else 'are answer options'} "
            f"and {owner} does not answer: set it where the answer is generated (InfiniRetriQA, "
            "InfiniRetriSynthesizer, InfiniRetriLLM or GenerationConfig)"
        )
    return msg


def check_overrides(options: Mapping[str, Any], owner: str = "retrieval") -> dict[str, Any]:
    """Per-call :class:`RetrievalConfig` overrides, renamed options resolved (with a
    ``DeprecationWarning``), checked now rather than at the first query: unknown names and
    invalid values raise, naming the value and what is valid.

    Example:
        >>> check_overrides({"tokens_per_pass": 20})
        {'tokens_per_pass': 20}
        >>> check_overrides({"topk": 20})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: retrieval got unknown option(s) ['topk']; valid options: [...]
    """
    resolved = renamed_options(options, stacklevel=4)
    unknown = sorted(set(resolved) - set(retrieval_option_names()))
    if unknown:
        msg = unknown_option_message(owner, unknown, [*retrieval_option_names(), *RENAMED_OPTIONS])
        raise TypeError(msg)
    RetrievalConfig().replace(**resolved)
    return resolved


def retrieval_overrides(config: RetrievalConfig | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides from an optional full ``config`` plus the single ``options`` given (which win; a
    ``None`` among them is a setting, as on the engine: ``fusion=None`` turns fusion off).

    Example:
        >>> retrieval_overrides(None, {"tokens_per_pass": 20, "fusion": None})
        {'tokens_per_pass': 20, 'fusion': None}
        >>> retrieval_overrides(None, {"tokens_per_pass": 0})
        Traceback (most recent call last):
        ...
        ValueError: tokens_per_pass must be a positive integer, got 0
    """
    overrides: dict[str, Any] = {}
    if config is not None:
        if not isinstance(config, RetrievalConfig):
            msg = f"retrieval_config must be a RetrievalConfig, got {type(config).__name__}: {config!r}"
            raise TypeError(msg)
        overrides = {name: getattr(config, name) for name in retrieval_option_names()}
    overrides.update(renamed_options(dict(options), 4))
    return check_overrides(overrides)
