"""Per-model calibration of the scoring layer (and optionally heads) on a synthetic retrieval task.

Which layer's attention carries the retrieval signal depends on the model. :func:`calibrate`
measures every layer at once on seeded planted-fact cases (scored exactly as the engine scores a
chunk) and proposes a configuration; the store keeps calibrations in one format, shipped with the
package or cached per user; ``scoring_layer="auto"`` uses :func:`calibrated_layers`.

Modules: ``haystack`` (filler text, needle insertion), ``synthetic`` (the cases), ``measure``
(per-case metrics), ``runner`` (the calibration's steps), ``report`` (the result and file format),
``store`` (bundled and cached calibrations), ``auto`` (what ``"auto"`` resolves to), ``heads``
(query-focused heads chosen on labelled natural questions, QRHead).

Example:
    >>> from infiniretri_integrations import default_model  # doctest: +SKIP
    >>> report = calibrate(default_model(), heads=True)  # doctest: +SKIP
    >>> report.scoring_layer, report.scoring_heads  # doctest: +SKIP
    (18, None)
"""

from infiniretri_integrations.core.calibration.auto import calibrated_layers, calibrated_scoring
from infiniretri_integrations.core.calibration.heads import (
    EvidenceExample,
    HeadRanking,
    evidence_share,
    query_focused_heads,
)
from infiniretri_integrations.core.calibration.measure import CaseMetrics, Quality, all_layer_rows
from infiniretri_integrations.core.calibration.report import SCHEMA_VERSION, CalibrationReport
from infiniretri_integrations.core.calibration.runner import Candidate, calibrate
from infiniretri_integrations.core.calibration.store import (
    cache_path,
    clear_calibration_cache,
    find_calibration,
    known_default_layer,
    load_cached_calibration,
    store_calibration,
)
from infiniretri_integrations.core.calibration.synthetic import (
    DEFAULT_DEPTHS,
    DEFAULT_DISTRACTORS,
    DEFAULT_LENGTHS,
    DEFAULT_NEEDLES,
    SyntheticCase,
    synthetic_cases,
)

__all__ = [
    "DEFAULT_DEPTHS",
    "DEFAULT_DISTRACTORS",
    "DEFAULT_LENGTHS",
    "DEFAULT_NEEDLES",
    "SCHEMA_VERSION",
    "CalibrationReport",
    "Candidate",
    "CaseMetrics",
    "EvidenceExample",
    "HeadRanking",
    "Quality",
    "SyntheticCase",
    "all_layer_rows",
    "cache_path",
    "calibrate",
    "calibrated_layers",
    "calibrated_scoring",
    "clear_calibration_cache",
    "evidence_share",
    "find_calibration",
    "known_default_layer",
    "load_cached_calibration",
    "query_focused_heads",
    "store_calibration",
    "synthetic_cases",
]
