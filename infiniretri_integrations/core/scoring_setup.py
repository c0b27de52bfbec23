"""Which layers and heads of the scoring model score: ``scoring_layer`` and ``scoring_heads``
resolved against the model (its known default layer, a stored calibration for ``"auto"``)."""

from __future__ import annotations

from typing import cast

from infiniretri_integrations.core.attention import resolve_layers
from infiniretri_integrations.core.config import HeadSelection, LayerSpec, RetrievalConfig, is_head_pairs
from infiniretri_integrations.core.models import LocalModel


def default_scoring_layer(lm: LocalModel) -> int | tuple[int, ...]:
    """The layer(s) ``scoring_layer=None`` scores with: the model's own ``default_scoring_layer``,
    else the one shipped for it (measured for the packaged model), else the last layer (``-1``)."""
    if lm.default_scoring_layer is not None:
        return lm.default_scoring_layer
    from infiniretri_integrations.core.calibration.store import known_default_layer

    known = known_default_layer(lm)
    return known if known is not None else -1


def scoring_setup(lm: LocalModel, cfg: RetrievalConfig) -> tuple[tuple[int, ...], HeadSelection]:
    """``(layers, heads)`` that score: ``"auto"`` takes both from the model's calibration (heads
    only where ``scoring_heads`` is unset); ``None`` the model's default layer
    (:func:`default_scoring_layer`). ``(layer, head)`` pairs set the layers themselves (returned
    with their layers resolved); ``scoring_layer`` must then be unset, ``"auto"`` or the same layers.
    """
    spec: LayerSpec = cfg.scoring_layer
    heads = cfg.scoring_heads
    if spec == "auto":
        from infiniretri_integrations.core.calibration import calibrated_scoring

        spec, calibrated_heads = calibrated_scoring(lm)
        heads = heads if heads is not None else calibrated_heads
        if is_head_pairs(heads):
            spec = None  # the pairs name their layers
    if heads is not None and is_head_pairs(heads):
        given = cast("tuple[tuple[int, int], ...]", heads)
        pairs = tuple((resolve_layers(layer, lm.num_layers)[0], head) for layer, head in given)
        layers = tuple(sorted({layer for layer, _ in pairs}))
        if spec is not None and resolve_layers(spec, lm.num_layers) != layers:  # type: ignore[arg-type]
            msg = (
                f"scoring_heads pairs {list(heads)} score layers {list(layers)}, but scoring_layer is {spec!r}; "
                "leave scoring_layer unset (or 'auto') with (layer, head) pairs"
            )
            raise ValueError(msg)
        return layers, pairs
    if spec is None:
        spec = default_scoring_layer(lm)
    return resolve_layers(spec, lm.num_layers), heads  # type: ignore[arg-type]
