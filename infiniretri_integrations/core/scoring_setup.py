"""Which layers and heads of the scoring model score: ``scoring_layer`` and ``scoring_heads``
resolved against the model (its known default layer, a stored calibration for ``"auto"``)."""

from __future__ import annotations

from typing import Any, cast

import torch

from infiniretri_integrations.core.attention import resolve_layers
from infiniretri_integrations.core.config import HeadSelection, LayerSpec, RetrievalConfig, is_head_pairs
from infiniretri_integrations.core.models import LocalModel, model_lock


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


class TrimmedLayer(torch.nn.Module):
    """Stands in for a decoder layer (or LM head) :func:`trim_to_scoring` removed: no weights; raises if run."""

    def __init__(self, name: str, attention_type: str | None = None) -> None:
        super().__init__()
        self.name = name
        if attention_type is not None:
            self.attention_type = attention_type  # read by some decoders' loops before each layer runs

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        msg = (
            f"{self.name} was removed by trim_to_scoring: this model scores (the passes stop at the deepest "
            "scoring layer) but cannot score deeper or generate; give answers their own model "
            "(InfiniRetriEngine(model=full_model, scoring_model=trimmed))"
        )
        raise RuntimeError(msg)


def trim_to_scoring(lm: LocalModel, scoring_layer: LayerSpec = None, *, inplace: bool = False) -> LocalModel:
    """``lm`` keeping only the decoder layers a scoring pass runs: the layers after the deepest of
    ``scoring_layer`` (``None``: the model's default, :func:`default_scoring_layer`) and an untied
    LM head are replaced by weightless :class:`TrimmedLayer` placeholders.

    Every pass stops inside the deepest scoring layer, so the scores are exactly today's; what
    changes is memory (SmolLM2-135M at its default layer 18 keeps 19 of 30 layers: ~29% fewer
    parameters). The config is left as it was (layer count, defaults and stored calibrations
    still apply). Such a model cannot answer: use it where nothing generates (retrievers,
    compressors, postprocessors) or as ``scoring_model`` beside a full reader.

    Args:
        lm: the model to trim.
        scoring_layer: the layer(s) the engine will score with (``"auto"``: the model's stored
            calibration); deeper ``scoring_layer`` values then fail with a clear error.
        inplace: trim ``lm.model`` itself instead of a copy.

    Example:
        >>> from infiniretri_integrations import InfiniRetriEngine, load_model  # doctest: +SKIP
        >>> retriever_engine = InfiniRetriEngine(trim_to_scoring(load_model(), inplace=True))  # doctest: +SKIP
    """
    import copy

    from infiniretri_integrations.core.attention import decoder_layers

    layers, _ = scoring_setup(lm, RetrievalConfig(scoring_layer=scoring_layer))
    deepest = max(layers)
    model = lm.model if inplace else copy.deepcopy(lm.model)
    trimmed = LocalModel(
        model=model,
        tokenizer=lm.tokenizer,
        name=lm.name,  # the same weights' identity: its bundled or cached layer calibration applies
        default_scoring_layer=default_scoring_layer(lm),
    )
    with model_lock(model):
        modules = decoder_layers(trimmed)
        for index in range(deepest + 1, len(modules)):
            if not isinstance(modules[index], TrimmedLayer):
                attention_type = getattr(modules[index], "attention_type", None)
                modules[index] = TrimmedLayer(f"decoder layer {index}", attention_type)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        embeddings = model.get_input_embeddings()
        if isinstance(head, torch.nn.Module) and getattr(head, "weight", None) is not embeddings.weight:
            model.set_output_embeddings(TrimmedLayer("the LM head"))
    return trimmed
