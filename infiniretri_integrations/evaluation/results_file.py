"""Resumable results files shared by the NIH grid and the QA evaluation: ``{"meta": ..., KEY: [...]}``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infiniretri_integrations.core.storage import write_atomic


def read_results(path: str | Path, key: str, kind: str) -> dict[str, Any]:
    """The results file at ``path`` (an empty one when it does not exist yet).

    Raises:
        ValueError: the file is not an object with a ``key`` list.
    """
    target = Path(path)
    if not target.is_file():
        return {"meta": {}, key: []}
    data = json.loads(target.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        msg = f"{str(target)!r} is not a {kind} results file (expected an object with a '{key}' list)"
        raise ValueError(msg)
    return data


def write_results(path: str | Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (a crash never leaves a half-written results file)."""
    write_atomic(path, json.dumps(data, indent=1, ensure_ascii=False))
