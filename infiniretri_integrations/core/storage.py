"""Files the package keeps between runs: where they live, and the one way they are written.

Everything the package stores (de-quantised GGUF weights, calibrations, evaluation results) is
written through :func:`staged_path`: the new content is written next to its final place and then
moved there in one step, so a reader (or a crashed run) never sees half a file.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "notes" / "a.txt", "done").read_text()
    'done'
    >>> sorted(p.name for p in (folder / "notes").iterdir())
    ['a.txt']
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

CACHE_DIR_ENV = "INFINIRETRI_CACHE_DIR"


def cache_dir() -> Path:
    """Where converted weights and calibrations are stored (``INFINIRETRI_CACHE_DIR`` overrides,
    else ``$XDG_CACHE_HOME/infiniretri``, else ``~/.cache/infiniretri``)."""
    root = os.environ.get(CACHE_DIR_ENV)
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "infiniretri"


@contextmanager
def staged_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh, not yet existing path next to ``target``: write a file or a folder there.

    On a clean exit it is moved onto ``target`` (``os.replace``, atomic for files; a folder
    ``target`` that exists is removed just before); on an error it is removed and ``target`` is
    left as it was. The folder of ``target`` is created when missing.

    Raises:
        OSError: the folder cannot be created or written (read-only, a file in the way, ...).

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "weights"
        >>> with staged_path(target) as staging:
        ...     staging.mkdir()
        ...     _ = (staging / "config.json").write_text("{}")
        >>> sorted(p.name for p in target.iterdir())
        ['config.json']
    """
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield staging
        if staging.is_dir() and final.is_dir():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        _remove(staging)
        raise


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through :func:`staged_path`; returns the path."""
    with staged_path(path) as staging:
        if isinstance(data, str):
            staging.write_text(data, encoding="utf-8")
        else:
            staging.write_bytes(data)
    return Path(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(OSError):
            path.unlink()
