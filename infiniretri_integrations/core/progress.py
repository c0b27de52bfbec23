"""The package's one progress-bar policy: shown on an interactive terminal and in Jupyter notebooks,
hidden otherwise (logs, pipes, CI), unless the caller decides.

Example:
    >>> with progress_bar(3, "chunks", enabled=False) as bar:
    ...     bar.update(3)
    >>> bar.disable, bar.total
    (True, 3)
"""

from __future__ import annotations

import sys
from typing import Any


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session, where stderr is not a terminal but a bar
    still renders. IPython is only looked up, never imported."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and (type(shell).__name__ == "ZMQInteractiveShell" or hasattr(shell, "kernel"))


def progress_enabled(enabled: bool | None = None) -> bool:
    """``enabled`` when given; else whether a bar can be seen (stderr is a terminal, or a notebook).

    Example:
        >>> progress_enabled(True), progress_enabled(False)
        (True, False)
    """
    if enabled is not None:
        return bool(enabled)
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(callable(isatty) and isatty()) or in_notebook()


def progress_bar(total: int | None, desc: str, enabled: bool | None = None, *, unit: str = "it") -> Any:
    """A ``tqdm.auto`` bar on stderr (a widget in notebooks); disabled, but still usable, when
    :func:`progress_enabled` says no, so callers never branch on it."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress_enabled(enabled), file=sys.stderr)
