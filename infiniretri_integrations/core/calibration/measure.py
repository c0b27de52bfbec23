"""How well question-row attention finds a planted fact: one case, then a summary over cases.

A case is scored exactly as the engine scores a chunk (question weights, phrase window,
``tokens_per_pass``), with the engine's own functions from :mod:`~infiniretri_integrations.core.scoring`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from infiniretri_integrations.core.attention import capture_question_rows
from infiniretri_integrations.core.config import DEFAULT_CHUNK_SIZE, DEFAULT_TOKENS_PER_PASS
from infiniretri_integrations.core.prompting import build_layout
from infiniretri_integrations.core.scoring import (
    context_scores,
    question_weights,
    sentence_maxima,
    token_sentence_index,
)
from infiniretri_integrations.core.segmentation import segment_documents

if TYPE_CHECKING:
    from infiniretri_integrations.core.calibration.synthetic import SyntheticCase
    from infiniretri_integrations.core.config import RetrievalConfig
    from infiniretri_integrations.core.models import LocalModel


@dataclass(frozen=True)
class PreparedCase:
    """A case as the engine would see it: the prompt's token ids and where its parts are."""

    ids: torch.Tensor
    """``[1, length]`` prompt token ids."""
    context_start: int
    context_end: int
    question_start: int
    token_sentence: torch.Tensor
    """``[context tokens]`` sentence index of each context token."""
    needle_sentences: tuple[int, ...]
    """The sentence(s) holding the asked fact."""


def _squashed(text: str) -> str:
    return " ".join(text.split())


def prepare_case(lm: LocalModel, case: SyntheticCase, config: RetrievalConfig) -> PreparedCase:
    """Segment ``case.text`` and lay out the prompt as the engine does (one chunk).

    Raises:
        RuntimeError: no sentence holds the needle after segmentation.
    """
    (sentences,) = segment_documents(
        [case.text], lm.tokenizer, config.effective_max_sentence_tokens(config.chunk_size or DEFAULT_CHUNK_SIZE)
    )
    target = _squashed(case.needle)
    needle_sentences = tuple(
        i
        for i, s in enumerate(sentences)
        if target in _squashed(s.text) or (_squashed(s.text) in target and len(s.text.strip()) > 10)
    )
    if not needle_sentences:
        msg = f"needle sentence not found after segmentation: {case.needle!r}"
        raise RuntimeError(msg)
    layout = build_layout(lm.tokenizer, config, case.question)
    ids, context_start, context_end, question_start = layout.assemble([t for s in sentences for t in s.token_ids])
    token_sentence = token_sentence_index([len(s.token_ids) for s in sentences])
    return PreparedCase(
        ids=torch.tensor([ids]),
        context_start=context_start,
        context_end=context_end,
        question_start=question_start,
        token_sentence=token_sentence,
        needle_sentences=needle_sentences,
    )


def all_layer_rows(
    lm: LocalModel, input_ids: torch.Tensor, row_start: int, last_layer: int | None = None
) -> dict[int, torch.Tensor]:
    """Question-row attention of every layer up to ``last_layer`` (default: all), per head, in
    one forward pass: ``{layer: [heads, length - row_start, length]}`` (float32, on the CPU).

    Summing a layer's tensor over heads gives what the engine scores for that layer.
    """
    last = lm.num_layers - 1 if last_layer is None else last_layer
    rows = capture_question_rows(lm, input_ids, row_start, range(last + 1), keep_heads=True)
    return {layer: tensor.cpu() for layer, tensor in rows.items()}


@dataclass(frozen=True)
class CaseMetrics:
    """How one scoring configuration did on one case."""

    hit: bool
    """The needle sentence's best token is among the ``tokens_per_pass`` best context tokens (so the engine
    keeps it; on tied scores the needle counts as kept)."""
    reciprocal_rank: float
    """1 / rank of the needle sentence among all sentences by their best token score."""
    token_rank: float
    """Rank of the needle's best token / number of context tokens (lower is better)."""


def measure(rows: torch.Tensor, case: PreparedCase, config: RetrievalConfig) -> CaseMetrics:
    """Score ``rows`` (``[question rows, length]``, heads and layers already summed) as the engine
    does and locate the needle sentence."""
    weights = question_weights(rows, case.question_start) if config.question_weights else None
    scores = context_scores(rows, case.context_start, case.context_end, weights, config.phrase_window)
    best = sentence_maxima(scores, case.token_sentence)
    needle_best = max(float(best[i]) for i in case.needle_sentences)
    sentence_rank = 1 + int((best > needle_best).sum())
    token_rank = 1 + int((scores > needle_best).sum())
    return CaseMetrics(
        hit=token_rank <= (config.effective_tokens_per_pass or DEFAULT_TOKENS_PER_PASS),
        reciprocal_rank=1.0 / sentence_rank,
        token_rank=token_rank / scores.numel(),
    )


@dataclass(frozen=True)
class Quality:
    """Mean metrics of one scoring configuration over the calibration cases (rounded to 4 places)."""

    hit_rate: float
    mrr: float
    token_rank: float

    @classmethod
    def of(cls, metrics: Sequence[CaseMetrics]) -> Quality:
        """The means of ``metrics`` (at least one).

        Example:
            >>> Quality.of([CaseMetrics(True, 1.0, 0.1), CaseMetrics(False, 0.5, 0.3)])
            Quality(hit_rate=0.5, mrr=0.75, token_rank=0.2)
        """
        if not metrics:
            msg = "Quality.of needs at least one CaseMetrics, got an empty sequence"
            raise ValueError(msg)
        n = len(metrics)
        return cls(
            hit_rate=round(sum(float(m.hit) for m in metrics) / n, 4),
            mrr=round(sum(m.reciprocal_rank for m in metrics) / n, 4),
            token_rank=round(sum(m.token_rank for m in metrics) / n, 4),
        )
