"""Attention from the question rows of chosen layers, without ``output_attentions``.

During a scoring pass the model runs with a registered attention function (transformers'
``AttentionInterface``): every layer uses the SDPA kernel, except the scoring layers, which
additionally compute ``softmax(q_rows @ K^T * scale + mask)`` for the question rows only, with
the model's own rotary embedding, query/key norms, scaling, soft-capping and grouped-query heads
(all applied by the model before our function is called). After the deepest scoring layer the
forward stops: later layers and the LM head are never run.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from infiniretri_integrations.core.config import HeadSpec, is_head_pairs

if TYPE_CHECKING:
    from infiniretri_integrations.core.models import LocalModel

CAPTURE_IMPLEMENTATION = "infiniretri_capture"

_ACTIVE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("infiniretri_capture", default=None)


def heads_by_layer(heads: HeadSpec, layers: Sequence[int], num_heads: int) -> dict[int, tuple[int, ...]] | None:
    """The heads each of ``layers`` sums (``None``: all heads of every layer), validated.

    >>> heads_by_layer([0, 2], [15, 18], 9)
    {15: (0, 2), 18: (0, 2)}
    >>> heads_by_layer([(18, 3), (15, 0), (18, 1)], [15, 18], 9)
    {15: (0,), 18: (1, 3)}
    """
    if heads is None:
        return None
    if is_head_pairs(heads):
        pairs = [(int(layer), int(head)) for layer, head in heads]  # type: ignore[misc]
        chosen = {layer: tuple(sorted({h for lay, h in pairs if lay == layer})) for layer in layers}
        stray = sorted({lay for lay, _ in pairs} - set(layers))
        empty = [layer for layer, hs in chosen.items() if not hs]
        if stray or empty:
            msg = (
                f"scoring_heads pairs {list(heads)} do not match the scoring layers {list(layers)} "
                f"(layers without a head: {empty}, heads outside them: {stray})"
            )
            raise ValueError(msg)
    else:
        indices = tuple(int(h) for h in heads)  # type: ignore[arg-type]
        chosen = {layer: indices for layer in layers}
    bad = sorted({h for hs in chosen.values() for h in hs if not 0 <= h < num_heads})
    if bad:
        msg = f"scoring_heads {bad} out of range for a model with {num_heads} heads"
        raise ValueError(msg)
    return chosen


class _StopForward(Exception):
    """Raised by the deepest scoring layer: nothing after it is needed."""


@dataclass
class _Capture:
    layers: frozenset[int]
    row_start: int
    heads: Mapping[int, tuple[int, ...]] | None
    """Per scoring layer, the heads summed (``None``: all)."""
    stop_at: int
    keep_heads: bool = False
    rows: dict[int, torch.Tensor] = field(default_factory=dict)
    batch_spans: tuple[tuple[int, int], ...] | None = None
    """Batched capture: per sequence ``(row_start, length)``; rows go to ``batch_rows``."""
    batch_rows: dict[int, list[torch.Tensor]] = field(default_factory=dict)


def question_row_probabilities(
    query_rows: torch.Tensor,
    key: torch.Tensor,
    row_positions: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    softcap: float | None = None,
    past: int = 0,
) -> torch.Tensor:
    """Attention probabilities of some query rows over all keys, in float32.

    Args:
        query_rows: ``[batch, heads, rows, head_dim]`` (rotary already applied).
        key: ``[batch, kv_heads, keys, head_dim]``; kv heads are repeated to match query heads.
        row_positions: ``[rows]`` positions of the rows among the query positions (the mask's rows).
        attention_mask: the model's 4-D mask for the whole sequence (bool: True = attend, or
            additive float), or ``None`` for plain causal attention.
        scaling: the attention module's softmax scale.
        softcap: logit soft-capping (Gemma-2 style), if the model uses it.
        past: keys before the first query position (a cached prefix); 0 without a cache.

    Returns:
        ``[batch, heads, rows, keys]`` probabilities (each row sums to 1).
    """
    heads, kv_heads = query_rows.shape[1], key.shape[1]
    keys = key.float()
    if heads != kv_heads:
        keys = keys.repeat_interleave(heads // kv_heads, dim=1)
    logits = torch.matmul(query_rows.float(), keys.transpose(-1, -2)) * scaling
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    key_count = key.shape[2]
    if attention_mask is None:
        allowed = torch.arange(key_count, device=key.device)[None, :] <= past + row_positions[:, None]
        logits = logits.masked_fill(~allowed, float("-inf"))
    else:
        rows_mask = attention_mask[:, :, row_positions, :key_count]
        if rows_mask.dtype == torch.bool:
            logits = logits.masked_fill(~rows_mask, float("-inf"))
        else:
            logits = logits + rows_mask.float()
    return torch.softmax(logits, dim=-1)


def _capture_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    capture = _ACTIVE.get()
    layer = getattr(module, "layer_idx", None)
    if capture is not None and layer in capture.layers and capture.batch_spans is not None:
        capture.batch_rows[layer] = _batch_rows(
            capture, layer, query, key, attention_mask, scaling, kwargs.get("softcap")
        )
    elif capture is not None and layer in capture.layers:
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        row_positions = torch.arange(capture.row_start, query.shape[2], device=query.device)
        probabilities = question_row_probabilities(
            query[:, :, capture.row_start :, :],
            key,
            row_positions,
            attention_mask if isinstance(attention_mask, torch.Tensor) else None,
            scale,
            kwargs.get("softcap"),
            past=key.shape[2] - query.shape[2],
        )
        if capture.heads is not None:
            probabilities = probabilities[:, list(capture.heads[layer])]
        capture.rows[layer] = probabilities[0] if capture.keep_heads else probabilities.sum(dim=1)[0]
    heads_capture = _ACTIVE_HEADS.get()
    if capture is not None and capture.layers and heads_capture is not None and layer in heads_capture.layers:
        heads_capture.rows[layer] = _per_head_rows(
            capture, heads_capture.length, query, key, attention_mask, scaling, kwargs.get("softcap")
        )
    if capture is not None and layer == capture.stop_at:
        raise _StopForward
    kwargs.pop("softcap", None)
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def _sequence_probabilities(
    spans: Sequence[tuple[int, int]],
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: Any,
    scaling: float | None,
    softcap: float | None,
) -> Iterator[torch.Tensor]:
    """Per sequence ``b`` of the forward with question rows ``spans[b] = (row_start, length)``:
    its rows' probabilities over its own real keys (and a cached prefix, if any),
    ``[1, heads, length - row_start, keys]``; right padding is never a key."""
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    mask = attention_mask if isinstance(attention_mask, torch.Tensor) else None
    past = key.shape[2] - query.shape[2]
    for b, (row_start, length) in enumerate(spans):
        sequence_mask = None if mask is None else mask[b : b + 1] if mask.shape[0] > 1 else mask
        yield question_row_probabilities(
            query[b : b + 1, :, row_start:length, :],
            key[b : b + 1, :, : past + length, :],
            torch.arange(row_start, length, device=query.device),
            sequence_mask,
            scale,
            softcap,
            past=past,
        )


def _batch_rows(
    capture: _Capture,
    layer: int,
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: Any,
    scaling: float | None,
    softcap: float | None,
) -> list[torch.Tensor]:
    """Each batched sequence's question rows over its own real keys (heads summed):
    ``[length - row_start, length]`` per sequence; right padding is never a key."""
    assert capture.batch_spans is not None
    rows: list[torch.Tensor] = []
    for probabilities in _sequence_probabilities(capture.batch_spans, query, key, attention_mask, scaling, softcap):
        if capture.heads is not None:
            probabilities = probabilities[:, list(capture.heads[layer])]
        rows.append(probabilities.sum(dim=1)[0])
    return rows


def _per_head_rows(
    capture: _Capture,
    length: int | None,
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: Any,
    scaling: float | None,
    softcap: float | None,
) -> list[torch.Tensor]:
    """Every head's attention, averaged over each sequence's question rows: ``[heads, length]``
    per sequence of the forward (one without ``batch_spans``: its rows end at ``length``, the
    real length of a right-padded sequence, or at the end)."""
    spans = capture.batch_spans or ((capture.row_start, length or query.shape[2]),)
    return [
        probabilities[0].mean(dim=1).cpu()
        for probabilities in _sequence_probabilities(spans, query, key, attention_mask, scaling, softcap)
    ]


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(CAPTURE_IMPLEMENTATION, _capture_attention)
    AttentionMaskInterface.register(CAPTURE_IMPLEMENTATION, sdpa_mask)
    _registered = True


@contextmanager
def _capturing(model: Any) -> Iterator[None]:
    """Route the model's attention through :func:`_capture_attention` for the duration, through
    transformers' own ``set_attn_implementation`` (the model's previous choice is restored)."""
    _register()
    previous = model.config._attn_implementation
    model.set_attn_implementation(CAPTURE_IMPLEMENTATION)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def resolve_layers(spec: int | Sequence[int], num_layers: int) -> tuple[int, ...]:
    """Layer indices (negative ones count from the end), validated against the model depth.

    >>> resolve_layers(-1, 30)
    (29,)
    >>> resolve_layers([15, 18], 30)
    (15, 18)
    """
    raw = (spec,) if isinstance(spec, int) else tuple(spec)
    resolved = []
    for layer in raw:
        index = layer + num_layers if layer < 0 else layer
        if not 0 <= index < num_layers:
            msg = f"scoring_layer {layer} is out of range for a model with {num_layers} layers (expected -{num_layers}..{num_layers - 1})"
            raise ValueError(msg)
        resolved.append(index)
    return tuple(sorted(set(resolved)))


def capture_question_rows(
    lm: LocalModel,
    input_ids: torch.Tensor,
    row_start: int,
    layers: Sequence[int],
    heads: HeadSpec = None,
    keep_heads: bool = False,
) -> dict[int, torch.Tensor]:
    """Question-row attention of each of ``layers`` in ONE forward pass that stops after the deepest.

    Rows are positions ``row_start..length-1`` of ``input_ids`` (``[1, length]``); columns are all
    positions.

    Returns:
        ``{layer: [rows, length]}`` (heads summed), or ``{layer: [heads, rows, length]}`` with
        ``keep_heads=True``; float32.
    """
    capture = _Capture(
        layers=frozenset(layers),
        row_start=row_start,
        heads=heads_by_layer(heads, layers, lm.num_heads),
        stop_at=max(layers),
        keep_heads=keep_heads,
    )
    _run_until_stop(lm, input_ids, capture)
    _check_captured(lm, layers, capture.rows)
    return capture.rows


def _check_captured(lm: LocalModel, layers: Sequence[int], captured: Mapping[int, Any]) -> None:
    missing = set(layers) - set(captured)
    if missing:
        msg = (
            f"The model never called the attention interface for layer(s) {sorted(missing)}; "
            f"{type(lm.model).__name__} may not support transformers' AttentionInterface"
        )
        raise RuntimeError(msg)


def _run_until_stop(lm: LocalModel, input_ids: torch.Tensor, capture: _Capture, cache: Any = None) -> None:
    token = _ACTIVE.set(capture)
    try:
        with lm.lock, torch.inference_mode(), _capturing(lm.model), contextlib.suppress(_StopForward):
            keyword = _cache_keyword(type(lm.model))  # type: ignore[arg-type]
            cache_argument = {keyword: cache} if cache is not None else {}
            lm.model(input_ids=input_ids.to(lm.device), use_cache=cache is not None, logits_to_keep=1, **cache_argument)
    finally:
        _ACTIVE.reset(token)


@functools.cache
def _cache_keyword(model_class: Any) -> str:
    """``cache`` (transformers >= 5.24) or ``past_key_values`` (earlier), as the model's forward takes it."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def shared_prefix_attention(
    lm: LocalModel,
    prefix_ids: torch.Tensor,
    suffixes: Sequence[torch.Tensor],
    layers: Sequence[int],
    heads: HeadSpec = None,
) -> list[torch.Tensor]:
    """Question-row attention of several suffixes (questions) after ONE shared prefix (context).

    The prefix runs once through the deepest scoring layer, filling a key/value cache; each
    suffix then runs alone on a copy of that cache. Every row of a suffix attends to the prefix
    and to its own suffix only, exactly as in a full forward of ``prefix + suffix``.

    Args:
        prefix_ids: ``[1, prefix_length]``.
        suffixes: each ``[1, suffix_length]``; all of its positions are question rows.

    Returns:
        Per suffix, ``[suffix_length, prefix_length + suffix_length]`` float32 (heads and layers summed).
    """
    import copy

    from transformers import DynamicCache

    deepest = max(layers)
    chosen = heads_by_layer(heads, layers, lm.num_heads)
    cache = DynamicCache(config=lm.model.config)
    results: list[torch.Tensor] = []
    with lm.lock:
        _run_until_stop(lm, prefix_ids, _Capture(layers=frozenset(), row_start=0, heads=None, stop_at=deepest), cache)
        for suffix in suffixes:
            capture = _Capture(layers=frozenset(layers), row_start=0, heads=chosen, stop_at=deepest)
            _run_until_stop(lm, suffix, capture, copy.deepcopy(cache))
            length = prefix_ids.shape[1] + suffix.shape[1]
            # a sliding-window layer's cache holds only the window's keys: the rest had probability 0
            rows = [
                torch.nn.functional.pad(capture.rows[layer], (length - capture.rows[layer].shape[-1], 0))
                for layer in layers
            ]
            results.append(sum(rows[1:], rows[0]))
    return results


def forward_through(lm: LocalModel, input_ids: torch.Tensor, layer: int) -> None:
    """The forward-pass floor of a scoring pass: run ``input_ids`` (``[1, length]``) through the
    model exactly as a scoring pass does (SDPA in every layer, stopping when layer ``layer``'s
    attention is reached), without computing any question rows.

    A scoring pass costs this plus the question rows' softmax; benchmarks compare the two.
    """
    (resolved,) = resolve_layers(layer, lm.num_layers)
    _run_until_stop(lm, input_ids, _Capture(layers=frozenset(), row_start=0, heads=None, stop_at=resolved))


def batched_question_attention(
    lm: LocalModel,
    input_ids: torch.Tensor,
    spans: Sequence[tuple[int, int]],
    layers: Sequence[int],
    heads: HeadSpec = None,
) -> list[torch.Tensor]:
    """Question-row attention of several right-padded sequences in ONE batched forward pass.

    Attention is causal, so the padding after a sequence's last real token changes none of its
    rows: each result equals :func:`question_attention` of that sequence alone.

    Args:
        input_ids: ``[batch, padded_length]``, each sequence right-padded.
        spans: per sequence ``(row_start, length)``: its question rows and real length.

    Returns:
        Per sequence, ``[length - row_start, length]`` float32 (heads and layers summed).
    """
    if len(spans) != input_ids.shape[0]:
        msg = f"spans has {len(spans)} entries for a batch of {input_ids.shape[0]} sequences"
        raise ValueError(msg)
    capture = _Capture(
        layers=frozenset(layers),
        row_start=0,
        heads=heads_by_layer(heads, layers, lm.num_heads),
        stop_at=max(layers),
        batch_spans=tuple((int(start), int(length)) for start, length in spans),
    )
    _run_until_stop(lm, input_ids, capture)
    _check_captured(lm, layers, capture.batch_rows)
    per_layer = [capture.batch_rows[layer] for layer in layers]
    return [sum((rows[b] for rows in per_layer[1:]), per_layer[0][b]) for b in range(len(spans))]


def question_attention(
    lm: LocalModel,
    input_ids: torch.Tensor,
    row_start: int,
    layers: Sequence[int],
    heads: HeadSpec = None,
) -> torch.Tensor:
    """Question-row attention probabilities of ``input_ids`` (``[1, length]``), heads summed, layers summed.

    Returns:
        ``[length - row_start, length]`` float32 tensor.
    """
    rows = capture_question_rows(lm, input_ids, row_start, layers, heads)
    total = rows[layers[0]]
    for layer in layers[1:]:
        total = total + rows[layer]
    return total


def decoder_layers(lm: LocalModel) -> torch.nn.ModuleList:
    """The model's decoder layers, in order (``model.get_decoder().layers``)."""
    decoder = lm.model.get_decoder() if hasattr(lm.model, "get_decoder") else getattr(lm.model, "model", None)
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) < lm.num_layers:
        msg = f"cannot find the decoder layers of {type(lm.model).__name__} (expected model.get_decoder().layers)"
        raise RuntimeError(msg)
    return layers


_ACTIVE_HEADS: contextvars.ContextVar[HeadsCapture | None] = contextvars.ContextVar("infiniretri_heads", default=None)


@dataclass
class HeadsCapture:
    """Every head's question-row attention in ``layers`` during the scoring forward run inside
    :func:`capturing_heads`: ``{layer: [per sequence, [heads, length]]}``, averaged over each
    sequence's question rows (float32, on the CPU). A later forward in the block replaces it."""

    layers: frozenset[int]
    length: int | None = None
    """A single right-padded sequence's real length (its question rows end there)."""
    rows: dict[int, list[torch.Tensor]] = field(default_factory=dict)

    def stacked(self, sequence: int = 0) -> torch.Tensor:
        """``[layers, heads, length]``: one sequence's rows, layers in ascending order."""
        missing = sorted(self.layers - set(self.rows))
        if missing:
            msg = f"no attention was captured for layer(s) {missing}: they lie past the deepest scoring layer"
            raise RuntimeError(msg)
        return torch.stack([self.rows[layer][sequence] for layer in sorted(self.layers)])


@contextmanager
def capturing_heads(layers: Sequence[int], length: int | None = None) -> Iterator[HeadsCapture]:
    """Record every head's question-row attention in ``layers`` (each at most the deepest
    scoring layer) in the scoring forwards run inside the block (``length``: the real length of
    a single right-padded sequence; batched forwards give their own).

    Example:
        >>> with capturing_heads(range(19)) as heads:  # doctest: +SKIP
        ...     question_attention(lm, ids, row_start, [18])
        >>> heads.stacked().shape  # doctest: +SKIP
        torch.Size([19, 9, length])
    """
    capture = HeadsCapture(frozenset(layers), length)
    token = _ACTIVE_HEADS.set(capture)
    try:
        yield capture
    finally:
        _ACTIVE_HEADS.reset(token)


_ACTIVE_STATES: contextvars.ContextVar[StatesCapture | None] = contextvars.ContextVar(
    "infiniretri_states", default=None
)


@dataclass
class StatesCapture:
    """Hidden states entering one layer, one ``[batch, length, hidden]`` tensor per forward call
    made inside :func:`capturing_states` (float32, on the CPU)."""

    layer: int
    calls: list[torch.Tensor] = field(default_factory=list)


@contextmanager
def capturing_states(lm: LocalModel, layer: int) -> Iterator[StatesCapture]:
    """Record the hidden states entering decoder layer ``layer`` in every forward run inside the
    block (a forward pre-hook; the forward itself is unchanged). A scoring pass reaches the layer
    when it is at most its deepest scoring layer.

    Example:
        >>> with capturing_states(lm, 9) as states:  # doctest: +SKIP
        ...     question_attention(lm, ids, row_start, [18])
        >>> states.calls[0].shape  # doctest: +SKIP
        torch.Size([1, length, 576])
    """
    capture = StatesCapture(layer)

    def record(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if _ACTIVE_STATES.get() is capture:  # another thread's forward of the same model is not ours
            hidden = args[0] if args else kwargs["hidden_states"]
            capture.calls.append(hidden.detach().float().cpu())

    handle = decoder_layers(lm)[layer].register_forward_pre_hook(record, with_kwargs=True)
    token = _ACTIVE_STATES.set(capture)
    try:
        yield capture
    finally:
        _ACTIVE_STATES.reset(token)
        handle.remove()


def hidden_states_at(lm: LocalModel, input_ids: torch.Tensor, layer: int) -> torch.Tensor:
    """``[length, hidden]`` hidden states of ``input_ids`` (``[1, length]``) entering ``layer``,
    from a forward that stops there (float32)."""
    with capturing_states(lm, layer) as states:
        _run_until_stop(lm, input_ids, _Capture(layers=frozenset(), row_start=0, heads=None, stop_at=layer))
    return states.calls[0][0]
