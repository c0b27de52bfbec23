"""The one store of calibrations: shipped with the package, or made on this machine and cached.

Both places hold files in one format, ``<fingerprint>.json`` (a
:class:`~infiniretri_integrations.core.calibration.report.CalibrationReport` as JSON with a SHA-256
checksum), read and checked by the same code:

- bundled: ``core/calibration/bundled/`` inside the package (validated on NIH; never changed at run time);
- user cache: ``<cache dir>/calibrations/`` (``$INFINIRETRI_CACHE_DIR`` or ``~/.cache/infiniretri``),
  written atomically; a file that fails its checks is logged, deleted and so rebuilt. Where the
  cache cannot be written, a calibration is kept in memory for the rest of the process.

:func:`find_calibration` looks in the user cache, then memory, then the bundled files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

from infiniretri_integrations.core.calibration.report import SCHEMA_VERSION, CalibrationReport
from infiniretri_integrations.core.storage import cache_dir, write_atomic

logger = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"

ScoringLayer = int | tuple[int, ...]


class ModelIdentity(Protocol):
    """What the store needs to know about a model (a :class:`~infiniretri_integrations.core.models.LocalModel` is one)."""

    name: str

    @property
    def num_layers(self) -> int: ...

    def fingerprint(self) -> str: ...


class CalibrationFileError(ValueError):
    """A calibration file that cannot be used (unreadable, corrupt, or made for another model)."""


_IN_MEMORY: dict[str, CalibrationReport] = {}
"""Calibrations made in this process that could not be written to the user cache, by fingerprint."""


# ---------------------------------------------------------------------------------------------
# The file format


def checksum(payload: Mapping[str, Any]) -> str:
    """SHA-256 of ``payload`` without its ``checksum`` entry (canonical JSON)."""
    body = {k: v for k, v in payload.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def encode(report: CalibrationReport) -> str:
    """The file content for ``report``: its fields, ``scoring_layer``/``scoring_heads`` and a checksum."""
    payload = report.to_dict()
    payload["checksum"] = checksum(payload)
    return json.dumps(payload, indent=1)


def decode(text: str, lm: ModelIdentity) -> CalibrationReport:
    """The calibration in ``text`` if it is one for ``lm``.

    Raises:
        CalibrationFileError: not JSON, not an object, another schema version, a checksum that
            does not match, another model's fingerprint, or a layer out of the model's range.
    """
    try:
        data = json.loads(text)
    except ValueError as error:
        msg = f"unreadable ({error})"
        raise CalibrationFileError(msg) from None
    if not isinstance(data, dict):
        msg = f"not a JSON object (got {type(data).__name__})"
        raise CalibrationFileError(msg)
    if data.get("schema_version") != SCHEMA_VERSION:
        msg = f"schema version {data.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        raise CalibrationFileError(msg)
    if data.get("checksum") != checksum(data):
        msg = "checksum mismatch (file corrupt or edited)"
        raise CalibrationFileError(msg)
    if data.get("fingerprint") != lm.fingerprint():
        msg = f"made for another model (fingerprint {data.get('fingerprint')!r}, expected {lm.fingerprint()!r})"
        raise CalibrationFileError(msg)
    try:
        report = CalibrationReport.from_dict(data)
        layer = report.scoring_layer
    except (TypeError, KeyError, ValueError) as error:
        msg = f"unreadable ({type(error).__name__}: {error})"
        raise CalibrationFileError(msg) from None
    if not all(0 <= index < lm.num_layers for index in (layer if isinstance(layer, tuple) else (layer,))):
        msg = f"layer {layer} out of range for a {lm.num_layers}-layer model"
        raise CalibrationFileError(msg)
    return report


def read_calibration(path: str | Path, lm: ModelIdentity) -> CalibrationReport | None:
    """The calibration stored at ``path`` (``None`` when there is no file).

    Raises:
        CalibrationFileError: the file exists but cannot be used (see :func:`decode`).
    """
    target = Path(path)
    if not target.is_file():
        return None
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        msg = f"unreadable ({error})"
        raise CalibrationFileError(msg) from None
    return decode(text, lm)


def settings_match(report: CalibrationReport, settings: Mapping[str, Any] | None) -> bool:
    """True when ``report`` was made with every setting in ``settings`` (``None``: any)."""
    return settings is None or all(report.settings.get(k) == v for k, v in settings.items())


# ---------------------------------------------------------------------------------------------
# The two places


def user_calibration_dir() -> Path:
    """The user cache of calibrations (``<cache dir>/calibrations``)."""
    return cache_dir() / "calibrations"


def cache_path(lm: ModelIdentity) -> Path:
    """Where the calibration of ``lm`` is cached (``<user cache>/calibrations/<fingerprint>.json``)."""
    return user_calibration_dir() / f"{lm.fingerprint()}.json"


def bundled_path(lm: ModelIdentity) -> Path:
    """Where a calibration of ``lm`` shipped with the package would be."""
    return BUNDLED_DIR / f"{lm.fingerprint()}.json"


def store_calibration(lm: ModelIdentity, report: CalibrationReport, path: str | Path | None = None) -> Path:
    """Write ``report`` atomically as the cached calibration of ``lm`` (default: :func:`cache_path`).

    Raises:
        OSError: the folder cannot be written.
    """
    return write_atomic(path if path is not None else cache_path(lm), encode(report))


def keep_calibration(lm: ModelIdentity, report: CalibrationReport) -> Path | None:
    """Store ``report`` in the user cache; where that fails (read-only folder, full disk, ...),
    log a warning and keep it in memory for the rest of the process. Returns the file written."""
    try:
        return store_calibration(lm, report)
    except OSError as error:
        logger.warning(
            "Could not write the calibration cache %s (%s): the calibration of %s is kept in memory "
            "for this process only (set INFINIRETRI_CACHE_DIR to a writable folder to keep it)",
            cache_path(lm),
            error,
            lm.name,
        )
        _IN_MEMORY[lm.fingerprint()] = report
        return None


def load_cached_calibration(lm: ModelIdentity, settings: Mapping[str, Any] | None = None) -> CalibrationReport | None:
    """The calibration of ``lm`` in the user cache, or ``None``. A file that cannot be used or
    was made with other ``settings`` is logged and deleted (so that it is rebuilt)."""
    path = cache_path(lm)
    try:
        report = read_calibration(path, lm)
        if report is not None and not settings_match(report, settings):
            msg = "made with other calibration settings"
            raise CalibrationFileError(msg)
    except CalibrationFileError as problem:
        logger.warning("Discarding cached calibration %s: %s; it will be rebuilt", path, problem)
        with suppress(OSError):
            path.unlink()
        return None
    return report


def bundled_calibration(lm: ModelIdentity) -> CalibrationReport | None:
    """The calibration of ``lm`` shipped with the package, or ``None`` (a broken one is logged)."""
    path = bundled_path(lm)
    try:
        return read_calibration(path, lm)
    except CalibrationFileError as problem:
        logger.warning("Ignoring bundled calibration %s: %s", path, problem)
        return None


def _in_memory(lm: ModelIdentity, settings: Mapping[str, Any] | None) -> CalibrationReport | None:
    return _IN_MEMORY.get(lm.fingerprint())


def _bundled(lm: ModelIdentity, settings: Mapping[str, Any] | None) -> CalibrationReport | None:
    return bundled_calibration(lm)


_SOURCES: tuple[Callable[[ModelIdentity, Mapping[str, Any] | None], CalibrationReport | None], ...] = (
    load_cached_calibration,
    _in_memory,
    _bundled,
)
"""Where :func:`find_calibration` looks, in order."""


def find_calibration(lm: ModelIdentity, settings: Mapping[str, Any] | None = None) -> CalibrationReport | None:
    """The calibration of ``lm``: the user's cached one, else one kept in memory by this process,
    else the bundled one; only one made with ``settings`` (``None``: any) counts."""
    for source in _SOURCES:
        report = source(lm, settings)
        if report is not None and settings_match(report, settings):
            return report
    return None


_KNOWN_DEFAULTS: dict[str, ScoringLayer | None] = {}
"""Bundled default layers already read, by bundled file path (bundled files never change at run time)."""


def known_default_layer(lm: ModelIdentity) -> ScoringLayer | None:
    """The scoring layer shipped for ``lm`` (what ``scoring_layer=None`` uses; ``None``: no bundled
    calibration, the last layer is used). Read once per model."""
    key = str(bundled_path(lm))
    if key not in _KNOWN_DEFAULTS:
        report = bundled_calibration(lm)
        _KNOWN_DEFAULTS[key] = None if report is None else report.scoring_layer
    return _KNOWN_DEFAULTS[key]


def clear_calibration_cache(lm: ModelIdentity | None = None) -> int:
    """Forget the cached calibration of ``lm`` (``None``: of every model), in the user cache and
    in memory. Returns how many were removed. Bundled calibrations are not affected."""
    removed = 0
    if lm is None:
        removed += len(_IN_MEMORY)
        _IN_MEMORY.clear()
        folder = user_calibration_dir()
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    else:
        removed += int(_IN_MEMORY.pop(lm.fingerprint(), None) is not None)
        paths = [cache_path(lm)]
    for path in paths:
        if path.is_file():
            path.unlink()
            removed += 1
    return removed
