"""Scoring configurations known for a model: shipped with the package or calibrated and cached.

A calibration file is JSON: ``{"fingerprint": ..., "model": ..., "scoring_layer": int | [int, ...],
"scoring_heads": null | [...], ...report fields}``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infiniretri_integrations.core.models import LocalModel

logger = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "calibrations"


def user_calibration_dir() -> Path:
    from infiniretri_integrations.core.models import cache_dir

    return cache_dir() / "calibrations"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("Ignoring unreadable calibration file %s: %s", path, error)
        return None
    if not isinstance(data, dict) or "fingerprint" not in data or "scoring_layer" not in data:
        logger.warning("Ignoring malformed calibration file %s", path)
        return None
    return data


def find_calibration(lm: LocalModel, *, include_user: bool = True) -> dict[str, Any] | None:
    """The calibration for ``lm``: the user's cached one first, then a bundled one."""
    fingerprint = lm.fingerprint()
    if include_user:
        cached = user_calibration_dir() / f"{fingerprint}.json"
        if cached.is_file():
            data = _read(cached)
            if data is not None and data.get("fingerprint") == fingerprint:
                return data
    if BUNDLED_DIR.is_dir():
        for path in sorted(BUNDLED_DIR.glob("*.json")):
            data = _read(path)
            if data is not None and data.get("fingerprint") == fingerprint:
                return data
    return None


def known_default_layer(lm: LocalModel) -> int | tuple[int, ...] | None:
    """The shipped default scoring layer for ``lm`` (``None``: use the last layer)."""
    data = find_calibration(lm, include_user=False)
    if data is None:
        return None
    layer = data["scoring_layer"]
    return tuple(layer) if isinstance(layer, list) else int(layer)
