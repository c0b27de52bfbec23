"""Per-call retrieval options of the framework adapters, framework-free.

Per-call :class:`RetrievalConfig` overrides are validated by the config itself
(:func:`check_overrides`, :func:`retrieval_overrides`). ``tokens_per_pass`` is the adapters' name
for the config's ``top_k`` (context tokens kept per forward pass, :data:`OPTION_ALIASES`), so that
nobody confuses it with the frameworks' ``k``/``top_k``/``top_n`` (how many documents come back).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from infiniretri_integrations.core.config import RetrievalConfig

__all__ = [
    "OPTION_ALIASES",
    "check_overrides",
    "resolve_aliases",
    "retrieval_option_names",
    "retrieval_overrides",
]

OPTION_ALIASES: dict[str, str] = {"tokens_per_pass": "top_k"}
"""Adapter names for :class:`RetrievalConfig` fields whose own name collides with a framework's."""


def retrieval_option_names() -> tuple[str, ...]:
    """Every :class:`RetrievalConfig` field, in declaration order (new fields appear here).

    Example:
        >>> "chunk_size" in retrieval_option_names()
        True
    """
    return tuple(f.name for f in dataclasses.fields(RetrievalConfig))


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
