"""Which engine a framework adapter uses.

``engine=None`` means the process-wide shared default engine (one per ``(device, dtype)``),
created on first use and loading its model on the first query, never at construction. An engine,
a ``LocalModel`` or a model path may be given instead (:func:`coerce_engine`,
:func:`resolve_engine`). Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import InfiniRetriEngine

__all__ = ["check_device_dtype", "coerce_engine", "default_engine", "resolve_engine"]

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
