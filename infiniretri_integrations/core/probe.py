"""A probe on every head's attention: per-sentence features from the heads up to the scoring
layer, read by a logistic regression fitted per model (Sentinel, arXiv 2505.23277).

The scoring passes record, for every sentence they read, the attention density each head of the
first ``layers`` layers gives it (:func:`head_features`, from the last pass that read it, as the
attention score is); with ``probe`` set, the final selection ranks sentences by the probe's
log-odds instead of the scoring layer's attention. Probes are fitted on the evidence benchmark's
calibration halves (``python -m infiniretri_integrations.evaluation.evidence.probe``) and stored one
small JSON file per model, shipped in ``core/calibration/bundled/probes/``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from infiniretri_integrations.core.calibration.store import ModelIdentity, checksum
from infiniretri_integrations.core.config import DEFAULT_FUSION_WEIGHT, DEFAULT_SIMILARITY_WEIGHT
from infiniretri_integrations.core.scoring import token_sentence_index
from infiniretri_integrations.core.storage import write_atomic

if TYPE_CHECKING:
    from infiniretri_integrations.core.models import LocalModel

logger = logging.getLogger(__name__)

AUTO_PROBE = "auto"
"""``probe="auto"``: the probe shipped for the scoring model, if any."""

DENSITY_FLOOR = 1e-3
"""Added to a density before its logarithm (a head that gives a sentence nothing)."""


def head_features(rows: torch.Tensor, token_counts: Sequence[int]) -> torch.Tensor:
    """Each sentence's attention density under every head: its mean and its best token's
    attention relative to the head's mean over the context, as logarithms.

    Args:
        rows: ``[layers, heads, context tokens]`` question-row attention (averaged over the rows).
        token_counts: the sentences' token counts, in context order (summing to the context's length).

    Returns:
        ``[sentences, 2 * layers * heads]`` float32: log mean densities, then log best densities.

    Example:
        >>> rows = torch.tensor([[[0.1, 0.1, 0.4, 0.2]]])
        >>> head_features(rows, [2, 2]).exp().round(decimals=2).tolist()
        [[0.5, 0.5], [1.5, 2.0]]
    """
    layers, heads, length = rows.shape
    flat = rows.reshape(layers * heads, length).float()
    density = flat / flat.mean(dim=-1, keepdim=True).clamp_min(1e-12)
    index = token_sentence_index(token_counts)
    count = len(token_counts)
    sums = torch.zeros(layers * heads, count).index_add_(1, index, density)
    means = sums / torch.tensor(list(token_counts), dtype=torch.float32)
    best = torch.full((layers * heads, count), float("-inf")).scatter_reduce(
        1, index.expand(layers * heads, -1), density, reduce="amax"
    )
    return torch.cat([means, best]).T.add(DENSITY_FLOOR).log()


PROBE_SCHEMA_VERSION = 1
BUNDLED_PROBES = Path(__file__).resolve().parent / "calibration" / "bundled" / "probes"
"""Probes shipped with the package, one ``<fingerprint>.json`` per model."""


class ProbeFileError(ValueError):
    """A probe file that cannot be used (unreadable, corrupt, or made for another model)."""


@dataclass(frozen=True)
class AttentionProbe:
    """A logistic regression on :func:`head_features`: ``features`` are standardised by ``center``
    and ``scale``, then ``score = features @ weights + bias`` (the log-odds that a sentence is
    evidence for the question).

    ``layers`` is how many layers from the first feed it (all heads of layers ``0..layers-1``); the
    scoring passes must run that deep.

    Example:
        >>> probe = AttentionProbe("m", "f", 1, 1, (0.0, 0.0), (1.0, 1.0), (1.0, 0.0), 0.0)
        >>> probe.score(torch.tensor([[2.0, 9.0], [-1.0, 0.0]])).tolist()
        [2.0, -1.0]
    """

    model: str
    fingerprint: str
    layers: int
    heads: int
    center: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    fusion_weight: float = DEFAULT_FUSION_WEIGHT
    """The lexical signal's weight relative to the probe where ``fusion_weight`` is unset."""
    similarity_weight: float = DEFAULT_SIMILARITY_WEIGHT
    """The similarity's weight relative to the probe where ``similarity_weight`` is unset."""
    fitted_on: Mapping[str, Any] = field(default_factory=dict)
    """How it was made (data, halves, regularisation, command): recorded, never read."""

    def __post_init__(self) -> None:
        size = 2 * self.layers * self.heads
        lengths = {"center": len(self.center), "scale": len(self.scale), "weights": len(self.weights)}
        if any(n != size for n in lengths.values()):
            msg = f"probe of {self.layers} layers x {self.heads} heads needs {size} values each, got {lengths}"
            raise ValueError(msg)
        for name in ("fusion_weight", "similarity_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                msg = f"probe {name} must be a finite number > 0, got {value!r}"
                raise ValueError(msg)

    @classmethod
    def blank(cls, lm: LocalModel, layers: int) -> AttentionProbe:
        """A probe of zero weights over the first ``layers`` layers of ``lm``: passes that carry it
        record every sentence's features (to fit a probe on), and it scores every sentence 0."""
        size = 2 * layers * lm.num_heads
        zeros = (0.0,) * size
        return cls(lm.name, lm.fingerprint(), layers, lm.num_heads, zeros, (1.0,) * size, zeros, 0.0)

    @property
    def feature_count(self) -> int:
        return len(self.weights)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """``[sentences]`` log-odds from ``[sentences, feature_count]`` features."""
        if features.shape[-1] != self.feature_count:
            msg = f"the probe reads {self.feature_count} features per sentence, got {features.shape[-1]}"
            raise ValueError(msg)
        center, scale, weights = (torch.tensor(v, dtype=torch.float32) for v in (self.center, self.scale, self.weights))
        return ((features.float() - center) / scale) @ weights + self.bias

    def to_dict(self) -> dict[str, Any]:
        payload = {"schema_version": PROBE_SCHEMA_VERSION, **dataclasses.asdict(self)}
        payload["fitted_on"] = dict(self.fitted_on)
        return payload

    def save(self, path: str | Path) -> Path:
        """Write the probe as JSON with a checksum (atomically)."""
        payload = self.to_dict()
        payload["checksum"] = checksum(payload)
        target = Path(path)
        write_atomic(target, json.dumps(payload, indent=1))
        return target

    @classmethod
    def load(cls, path: str | Path, lm: ModelIdentity | None = None) -> AttentionProbe:
        """The probe stored at ``path``, checked (and, with ``lm``, checked to be made for it).

        Raises:
            ProbeFileError: no file, not JSON, another schema version, a checksum that does not
                match, another model's fingerprint, or values of the wrong shape.
        """
        target = Path(path)
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            msg = f"probe file {str(target)!r} is unreadable ({error})"
            raise ProbeFileError(msg) from None
        if not isinstance(data, dict) or data.get("schema_version") != PROBE_SCHEMA_VERSION:
            version = data.get("schema_version") if isinstance(data, dict) else None
            msg = f"probe file {str(target)!r} has schema version {version!r}, expected {PROBE_SCHEMA_VERSION}"
            raise ProbeFileError(msg)
        if data.get("checksum") != checksum(data):
            msg = f"probe file {str(target)!r}: checksum mismatch (file corrupt or edited)"
            raise ProbeFileError(msg)
        if lm is not None and data.get("fingerprint") != lm.fingerprint():
            msg = (
                f"probe file {str(target)!r} was made for another model ({data.get('model')!r}, fingerprint "
                f"{data.get('fingerprint')!r}; this model's is {lm.fingerprint()!r})"
            )
            raise ProbeFileError(msg)
        try:
            return cls(
                model=str(data["model"]),
                fingerprint=str(data["fingerprint"]),
                layers=int(data["layers"]),
                heads=int(data["heads"]),
                center=tuple(float(v) for v in data["center"]),
                scale=tuple(float(v) for v in data["scale"]),
                weights=tuple(float(v) for v in data["weights"]),
                bias=float(data["bias"]),
                fusion_weight=float(data.get("fusion_weight", DEFAULT_FUSION_WEIGHT)),
                similarity_weight=float(data.get("similarity_weight", DEFAULT_SIMILARITY_WEIGHT)),
                fitted_on=dict(data.get("fitted_on") or {}),
            )
        except (KeyError, TypeError, ValueError) as error:
            msg = f"probe file {str(target)!r} is unreadable ({type(error).__name__}: {error})"
            raise ProbeFileError(msg) from None


def bundled_probe_path(lm: ModelIdentity) -> Path:
    return BUNDLED_PROBES / f"{lm.fingerprint()}.json"


def resolve_probe(spec: str | None, lm: ModelIdentity) -> AttentionProbe | None:
    """The probe ``probe=spec`` means for ``lm``: ``None`` for none, ``"auto"`` for the one shipped
    for the model (``None`` when there is none), else the file at ``spec``.

    Raises:
        ProbeFileError: the file cannot be used (see :meth:`AttentionProbe.load`).
    """
    if spec is None:
        return None
    if spec == AUTO_PROBE:
        path = bundled_probe_path(lm)
        if not path.is_file():
            logger.info(
                "No probe is shipped for %s (fingerprint %s): attention scores as read", lm.name, lm.fingerprint()
            )
            return None
        return _bundled(str(path))
    return AttentionProbe.load(spec, lm)


@functools.lru_cache(maxsize=8)
def _bundled(path: str) -> AttentionProbe:
    """A shipped probe (named by its model's fingerprint), read once per process."""
    return AttentionProbe.load(path)


def fit_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    l2: float = 0.1,
    iterations: int = 200,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """A class-balanced, L2-regularised logistic regression on standardised features (L-BFGS).

    Args:
        features: ``[sentences, features]``.
        labels: ``[sentences]`` 1.0 for evidence, 0.0 otherwise (both classes present).
        l2: the penalty on the squared weights (of the standardised features).

    Returns:
        ``(center [features], scale [features], weights [features], bias)``.

    Example:
        >>> x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]])
        >>> _, _, weights, _ = fit_probe(x, torch.tensor([0.0, 1.0, 0.0, 1.0]), l2=0.01)
        >>> bool(weights[0] > 0 > weights[1])
        True
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        msg = f"features must be [sentences, features] and labels [sentences], got {tuple(features.shape)} and {tuple(labels.shape)}"
        raise ValueError(msg)
    positives = float(labels.sum())
    if not 0 < positives < len(labels):
        msg = f"labels must hold both classes, got {positives:g} positives among {len(labels)}"
        raise ValueError(msg)
    x = features.double()
    center, scale = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    standard = (x - center) / scale
    y = labels.double()
    balance = torch.tensor((len(y) - positives) / positives, dtype=torch.float64)
    weights = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        logits = standard @ weights + bias
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=balance)
        value = value + l2 * (weights * weights).sum()
        value.backward()  # type: ignore[no-untyped-call]
        return value

    with torch.enable_grad():
        optimizer.step(loss)  # type: ignore[no-untyped-call]
    return center.float(), scale.float(), weights.detach().float(), float(bias.detach())


def probe_for(
    spec: str | None, lm: LocalModel, scoring_layers: Sequence[int], shared_context: bool, content_free: bool = False
) -> AttentionProbe | None:
    """The probe a call with ``probe=spec`` uses, checked against its scoring passes: they must run
    through every layer the probe reads, one question per context (no ``share_context``), read
    as asked (no ``content_free``). A
    shipped probe (``"auto"``) that does not fit is left out (attention as read); a probe file
    that does not fit is an error.

    Raises:
        ValueError: a probe file the call cannot feed.
        ProbeFileError: the file cannot be used.
    """
    probe = resolve_probe(spec, lm)
    if probe is None:
        return None
    deepest = max(scoring_layers)
    problems = []
    if probe.heads != lm.num_heads:
        problems.append(f"it reads {probe.heads} heads per layer, the model has {lm.num_heads}")
    if probe.layers - 1 > deepest:
        problems.append(
            f"it reads layers 0..{probe.layers - 1}, but the scoring passes stop at layer {deepest} "
            f"(use scoring_layer >= {probe.layers - 1})"
        )
    if content_free:
        problems.append("content_free=True scores what the question adds over a content-free one")
    if shared_context:
        problems.append(
            "share_context=True runs the questions over one shared context, the probe reads each question's own"
        )
    if not problems:
        return probe
    if spec == AUTO_PROBE:
        logger.info("The shipped probe does not fit this call (%s): attention scores as read", "; ".join(problems))
        return None
    msg = f"probe={spec!r} cannot be used here: " + "; ".join(problems)
    raise ValueError(msg)
