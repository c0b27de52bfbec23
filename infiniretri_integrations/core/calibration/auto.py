"""What ``scoring_layer="auto"`` resolves to: the stored calibration of a model, else a fresh one.

Example:
    >>> from infiniretri_integrations import default_model  # doctest: +SKIP
    >>> calibrated_scoring(default_model())  # doctest: +SKIP
    (18, None)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from infiniretri_integrations.core.calibration import runner
from infiniretri_integrations.core.calibration.store import (
    ScoringLayer,
    find_calibration,
    keep_calibration,
    user_calibration_dir,
)
from infiniretri_integrations.core.config import DEFAULT_TOKENS_PER_PASS

if TYPE_CHECKING:
    from infiniretri_integrations.core.config import HeadSelection
    from infiniretri_integrations.core.models import LocalModel

logger = logging.getLogger(__name__)

RECORDED_SETTINGS = ("seed", "lengths", "depths", "needles", "distractors", "heads", "combine")
"""Settings of :func:`~infiniretri_integrations.core.calibration.runner.calibrate` that a stored
calibration records and must match to be reused (with the scoring settings of ``config``)."""


def expected_settings(settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """``settings`` as a stored report records them (lists, float depths); ``None`` when none is recorded.

    Example:
        >>> expected_settings({"seed": 1, "lengths": (256,), "depths": (20,), "progress": False})
        {'seed': 1, 'lengths': [256], 'depths': [20.0]}
    """
    expected = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items() if k in RECORDED_SETTINGS}
    if "depths" in expected:
        expected["depths"] = [float(d) for d in expected["depths"]]
    config = settings.get("config")
    if config is not None:
        expected.update(
            top_k=config.effective_tokens_per_pass or DEFAULT_TOKENS_PER_PASS,
            phrase_window=config.phrase_window,
            question_weights=config.question_weights,
        )
    return expected or None


def calibrated_scoring(
    lm: LocalModel, *, refresh: bool = False, progress: bool | None = True, **settings: Any
) -> tuple[ScoringLayer, HeadSelection]:
    """``(scoring_layer, scoring_heads)`` for ``lm``: its stored calibration (user cache, then
    bundled), else a fresh :func:`~infiniretri_integrations.core.calibration.runner.calibrate`,
    stored in the user cache (kept in memory where the cache cannot be written).

    Args:
        refresh: ignore stored calibrations and calibrate again.
        progress: progress bar of a fresh calibration (``None``: only where one can be seen).
        **settings: passed to ``calibrate``; a stored calibration made with other settings is not used.
    """
    expected = expected_settings(settings)
    report = None if refresh else find_calibration(lm, expected)
    if report is None:
        logger.warning("No calibration for %s yet: calibrating once (cached in %s)", lm.name, user_calibration_dir())
        report = runner.calibrate(lm, progress=progress, **settings)
        keep_calibration(lm, report)
    return report.scoring_layer, report.scoring_heads


def calibrated_layers(lm: LocalModel, **kwargs: Any) -> ScoringLayer:
    """The calibrated scoring layer(s) of ``lm``; see :func:`calibrated_scoring`."""
    return calibrated_scoring(lm, **kwargs)[0]
