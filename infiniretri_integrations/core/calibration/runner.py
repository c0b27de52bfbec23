"""Calibrate the scoring layer (and optionally heads) of a model on the synthetic task.

Which layer's attention carries the retrieval signal depends on the model; an earlier layer is
also cheaper, because the scoring forward stops there. :func:`calibrate` runs these steps:

1. :func:`~infiniretri_integrations.core.calibration.synthetic.synthetic_cases` and
   :func:`prepare_cases`: seeded cases, laid out as the engine lays out a chunk;
2. :func:`measure_layers`: ONE forward pass per case captures the question rows of every layer
   (and head) and scores each layer as the engine would (:class:`CaseMetrics` per case);
3. :func:`layer_candidates`, :func:`combination_candidates`, :func:`head_candidates`: the
   configurations, each with its :class:`Quality` over the cases and its cost;
4. :func:`propose`: the best by (hit rate, MRR), the cheapest among near-equals, a combination or a
   head subset only when strictly better;
5. :func:`build_report`: the :class:`CalibrationReport` (also the calibration file format).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from infiniretri_integrations.core.calibration.measure import (
    CaseMetrics,
    PreparedCase,
    Quality,
    all_layer_rows,
    measure,
    prepare_case,
)
from infiniretri_integrations.core.calibration.report import CalibrationReport
from infiniretri_integrations.core.calibration.synthetic import (
    DEFAULT_DEPTHS,
    DEFAULT_DISTRACTORS,
    DEFAULT_LENGTHS,
    DEFAULT_NEEDLES,
    SyntheticCase,
    synthetic_cases,
)
from infiniretri_integrations.core.config import DEFAULT_TOKENS_PER_PASS, RetrievalConfig
from infiniretri_integrations.core.progress import progress_bar

if TYPE_CHECKING:
    from infiniretri_integrations.core.models import LocalModel

logger = logging.getLogger(__name__)

TOLERANCE = 0.01
"""Mean reciprocal ranks closer than this count as equal (then the cheaper configuration wins)."""

DEFAULT_COMBINE = 3
MAX_HEAD_SUBSET = 4
PROMPT_MARGIN = 200
"""Room (tokens) left in the model's window for the prompt around a case's context."""


@dataclass(frozen=True)
class Candidate:
    """One scoring configuration and its quality over the calibration cases."""

    layers: tuple[int, ...]
    heads: tuple[int, ...] | None
    quality: Quality
    cost: float
    """Share of a full forward pass that scoring with it costs (deepest layer + 1) / layers."""

    @property
    def label(self) -> str:
        text = "+".join(str(layer) for layer in self.layers)
        return text if self.heads is None else f"{text} heads {','.join(map(str, self.heads))}"

    def key(self) -> tuple[float, float]:
        return (self.quality.hit_rate, self.quality.mrr)

    def as_row(self) -> dict[str, Any]:
        """The report's row for a combination (or head subset)."""
        return {
            "label": self.label,
            "layers": list(self.layers),
            "hit_rate": self.quality.hit_rate,
            "mrr": self.quality.mrr,
            "token_rank": self.quality.token_rank,
            "cost": self.cost,
        }


def better(a: Candidate, b: Candidate) -> bool:
    """``a`` strictly better than ``b`` (more hits, or as many and a clearly higher MRR)."""
    if a.quality.hit_rate != b.quality.hit_rate:
        return a.quality.hit_rate > b.quality.hit_rate
    return a.quality.mrr > b.quality.mrr + TOLERANCE


def pick(candidates: Sequence[Candidate]) -> Candidate:
    """The best by (hit rate, MRR); among those within the tolerance, the cheapest (earliest)."""
    top = max(candidates, key=lambda c: c.key())
    close = [
        c
        for c in candidates
        if c.quality.hit_rate == top.quality.hit_rate and c.quality.mrr >= top.quality.mrr - TOLERANCE
    ]
    return min(close, key=lambda c: (c.cost, len(c.layers), -c.quality.mrr))


def layer_cost(layers: Sequence[int], num_layers: int) -> float:
    """Share of a full forward that scoring with ``layers`` costs (the forward stops after the deepest)."""
    return round((max(layers) + 1) / num_layers, 4)


# ---------------------------------------------------------------------------------------------
# Steps


def usable_lengths(lm: LocalModel, lengths: Sequence[int]) -> list[int]:
    """The case lengths that fit the model's window with the prompt around them.

    Raises:
        ValueError: none fits.
    """
    window = lm.context_window
    usable = [n for n in lengths if n + PROMPT_MARGIN < window]
    if not usable:
        msg = f"no calibration length fits the model window ({window} tokens): {list(lengths)}"
        raise ValueError(msg)
    return usable


def prepare_cases(lm: LocalModel, cases: Sequence[SyntheticCase], config: RetrievalConfig) -> list[PreparedCase]:
    """Each case segmented and laid out as the engine lays out one chunk."""
    return [prepare_case(lm, case, config) for case in cases]


@dataclass
class LayerMeasurements:
    """What the first pass measured: per case, for every layer (and head)."""

    per_layer: list[list[CaseMetrics]]
    """``[layer][case]``."""
    per_head: list[list[list[CaseMetrics]]] | None
    """``[layer][head][case]``, when heads were measured."""
    summed_rows: list[dict[int, torch.Tensor]]
    """Per case, every layer's question rows with heads summed (to score layer sums)."""


def measure_layers(
    lm: LocalModel,
    cases: Sequence[PreparedCase],
    config: RetrievalConfig,
    *,
    heads: bool = False,
    progress: bool | None = True,
) -> LayerMeasurements:
    """One forward pass per case, every layer (and with ``heads`` every head) scored on its own."""
    num_layers, num_heads = lm.num_layers, lm.num_heads
    per_layer: list[list[CaseMetrics]] = [[] for _ in range(num_layers)]
    per_head: list[list[list[CaseMetrics]]] | None = (
        [[[] for _ in range(num_heads)] for _ in range(num_layers)] if heads else None
    )
    summed_rows: list[dict[int, torch.Tensor]] = []
    with progress_bar(len(cases), f"Calibrating {lm.name}", progress, unit="case") as bar:
        for case in cases:
            rows = all_layer_rows(lm, case.ids, case.question_start)
            summed = {layer: tensor.sum(dim=0) for layer, tensor in rows.items()}
            for layer in range(num_layers):
                per_layer[layer].append(measure(summed[layer], case, config))
                if per_head is not None:
                    for head in range(num_heads):
                        per_head[layer][head].append(measure(rows[layer][head], case, config))
            summed_rows.append(summed)
            bar.update(1)
    return LayerMeasurements(per_layer, per_head, summed_rows)


def layer_candidates(measured: LayerMeasurements) -> list[Candidate]:
    """Every layer on its own."""
    count = len(measured.per_layer)
    return [
        Candidate((layer,), None, Quality.of(metrics), layer_cost([layer], count))
        for layer, metrics in enumerate(measured.per_layer)
    ]


def combination_sets(singles: Sequence[Candidate], combine: int) -> list[tuple[int, ...]]:
    """Layer sets to try: the best 2..``combine`` layers, and every pair of them.

    Example:
        >>> q = lambda mrr: Quality(1.0, mrr, 0.1)
        >>> singles = [Candidate((i,), None, q(m), 0.5) for i, m in enumerate([0.2, 0.9, 0.5, 0.7])]
        >>> combination_sets(singles, 3)
        [(1, 3), (1, 2, 3), (1, 2), (2, 3)]
    """
    if combine < 2:
        return []
    ranked = sorted(singles, key=lambda c: (-c.quality.hit_rate, -c.quality.mrr, c.cost))[:combine]
    top = [c.layers[0] for c in ranked]
    sets = [tuple(sorted(top[:n])) for n in range(2, len(top) + 1)]
    for i, a in enumerate(top):
        for b in top[i + 1 :]:
            pair = tuple(sorted((a, b)))
            if pair not in sets:
                sets.append(pair)
    return sets


def combination_candidates(
    singles: Sequence[Candidate],
    measured: LayerMeasurements,
    cases: Sequence[PreparedCase],
    config: RetrievalConfig,
    combine: int,
) -> list[Candidate]:
    """Sums of the best layers' rows (as the engine sums the rows of several scoring layers)."""
    candidates = []
    for layer_set in combination_sets(singles, combine):
        metrics = []
        for case, summed in zip(cases, measured.summed_rows, strict=True):
            total = summed[layer_set[0]]
            for layer in layer_set[1:]:
                total = total + summed[layer]
            metrics.append(measure(total, case, config))
        candidates.append(Candidate(layer_set, None, Quality.of(metrics), layer_cost(layer_set, len(singles))))
    return candidates


def head_candidates(
    lm: LocalModel,
    layer: Candidate,
    head_quality: Sequence[Quality],
    cases: Sequence[PreparedCase],
    config: RetrievalConfig,
) -> list[Candidate]:
    """Sums of the best 1..4 heads of the single layer ``layer`` (a second pass that stops at it)."""
    order = sorted(range(len(head_quality)), key=lambda h: (-head_quality[h].hit_rate, -head_quality[h].mrr, h))
    subsets = [tuple(sorted(order[:n])) for n in range(1, min(MAX_HEAD_SUBSET, len(order) - 1) + 1)]
    metrics: dict[tuple[int, ...], list[CaseMetrics]] = {subset: [] for subset in subsets}
    (index,) = layer.layers
    for case in cases:
        rows = all_layer_rows(lm, case.ids, case.question_start, last_layer=index)[index]
        for subset in subsets:
            metrics[subset].append(measure(rows[list(subset)].sum(dim=0), case, config))
    return [Candidate(layer.layers, subset, Quality.of(metrics[subset]), layer.cost) for subset in subsets]


def propose(best: Candidate, combinations: Sequence[Candidate], head_subsets: Sequence[Candidate] = ()) -> Candidate:
    """``best`` unless a layer combination is strictly better; then, for a single layer, a head
    subset when strictly better than all heads (and than any earlier subset)."""
    chosen = best
    for combo in combinations:
        if better(combo, chosen):
            chosen = combo
    winner: Candidate | None = None
    for subset in head_subsets:
        if subset.layers == chosen.layers and better(subset, winner or chosen):
            winner = subset
    return winner or chosen


def build_report(
    lm: LocalModel,
    *,
    settings: dict[str, Any],
    singles: Sequence[Candidate],
    combinations: Sequence[Candidate],
    head_quality: Sequence[Sequence[Quality]] | None,
    best: Candidate,
    chosen: Candidate,
    seconds: float,
) -> CalibrationReport:
    """The report of a calibration (what is stored and shipped)."""
    proposal = {
        "scoring_layer": chosen.layers[0] if len(chosen.layers) == 1 else list(chosen.layers),
        "scoring_heads": None if chosen.heads is None else list(chosen.heads),
        "hit_rate": chosen.quality.hit_rate,
        "mrr": chosen.quality.mrr,
        "token_rank": chosen.quality.token_rank,
        "cost": chosen.cost,
        "best_single_layer": best.layers[0],
    }
    return CalibrationReport(
        model=lm.name,
        fingerprint=lm.fingerprint(),
        num_layers=lm.num_layers,
        num_heads=lm.num_heads,
        settings=settings,
        layers=[
            {
                "layer": c.layers[0],
                "hit_rate": c.quality.hit_rate,
                "mrr": c.quality.mrr,
                "token_rank": c.quality.token_rank,
                "cost": c.cost,
            }
            for c in singles
        ],
        combinations=[c.as_row() for c in combinations],
        proposal=proposal,
        heads=None
        if head_quality is None
        else [
            [
                {"layer": layer, "head": head, "hit_rate": q.hit_rate, "mrr": q.mrr, "token_rank": q.token_rank}
                for head, q in enumerate(qualities)
            ]
            for layer, qualities in enumerate(head_quality)
        ],
        seconds=seconds,
    )


# ---------------------------------------------------------------------------------------------
# The whole calibration


def calibrate(
    lm: LocalModel,
    *,
    seed: int = 0,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    needles: int = DEFAULT_NEEDLES,
    distractors: int = DEFAULT_DISTRACTORS,
    heads: bool = False,
    combine: int = DEFAULT_COMBINE,
    config: RetrievalConfig | None = None,
    progress: bool | None = True,
) -> CalibrationReport:
    """Measure retrieval quality per layer (optionally per head) and propose a configuration.

    Args:
        lm: the model.
        seed: makes the cases (and so the result) deterministic.
        lengths, depths, needles: the case grid (``needles`` cases per length and depth, each with
            a different random fact); ``distractors`` similar facts about other names per case.
        heads: also measure every head on its own (reported; with a single proposed layer, the
            best few heads of that layer are proposed when strictly better than all heads).
        combine: also try the sum of the best 2..``combine`` layers; kept only if strictly better.
        config: the method's settings used to score (default: :class:`RetrievalConfig()`).
        progress: show a progress bar (``None``: only where one can be seen).

    Returns:
        The report; ``report.scoring_layer`` / ``report.scoring_heads`` is the proposal.

    Example:
        >>> from infiniretri_integrations import default_model  # doctest: +SKIP
        >>> report = calibrate(default_model())  # doctest: +SKIP
        >>> print(report.to_markdown())  # doctest: +SKIP
    """
    cfg = config or RetrievalConfig()
    started = time.perf_counter()
    usable = usable_lengths(lm, lengths)
    cases = synthetic_cases(
        lm.tokenizer, seed=seed, lengths=usable, depths=depths, needles=needles, distractors=distractors
    )
    prepared = prepare_cases(lm, cases, cfg)
    measured = measure_layers(lm, prepared, cfg, heads=heads, progress=progress)
    singles = layer_candidates(measured)
    best = pick(singles)
    combinations = combination_candidates(singles, measured, prepared, cfg, combine)
    measured.summed_rows.clear()
    head_quality = (
        None if measured.per_head is None else [[Quality.of(m) for m in layer] for layer in measured.per_head]
    )
    chosen = propose(best, combinations)
    if head_quality is not None and len(chosen.layers) == 1:
        subsets = head_candidates(lm, chosen, head_quality[chosen.layers[0]], prepared, cfg)
        combinations = [*combinations, *subsets]
        chosen = propose(chosen, (), subsets)
    settings = {
        "seed": seed,
        "lengths": list(usable),
        "depths": [float(d) for d in depths],
        "needles": needles,
        "distractors": distractors,
        "heads": heads,
        "combine": combine,
        "cases": len(cases),
        "top_k": cfg.effective_tokens_per_pass or DEFAULT_TOKENS_PER_PASS,
        "phrase_window": cfg.phrase_window,
        "question_weights": cfg.question_weights,
    }
    report = build_report(
        lm,
        settings=settings,
        singles=singles,
        combinations=combinations,
        head_quality=head_quality,
        best=best,
        chosen=chosen,
        seconds=round(time.perf_counter() - started, 1),
    )
    logger.info(
        "Calibrated %s in %.0fs: scoring_layer=%s scoring_heads=%s",
        lm.name,
        report.seconds,
        report.proposal["scoring_layer"],
        report.proposal["scoring_heads"],
    )
    return report
