"""Query-focused heads (QRHead, arXiv 2506.09944), chosen on labelled natural questions.

The synthetic calibration (:func:`~infiniretri_integrations.core.calibration.calibrate`) picks a
layer on planted facts. QRHead instead scores every ``(layer, head)`` by how much of the question's
attention lands on the known evidence of real questions, and keeps the best few; summing only
those heads is the scoring signal. :func:`query_focused_heads` measures that share for every head
in one forward pass per example, scored with the engine's own prompt layout; the result's
:meth:`HeadRanking.top` is a ``scoring_heads`` value for the engine.

Example:
    >>> from infiniretri_integrations import InfiniRetriEngine, default_model  # doctest: +SKIP
    >>> example = EvidenceExample(
    ...     text="Paris is in France. The Rhine flows north.",
    ...     question="Which way does the Rhine flow?",
    ...     evidence=((20, 42),),
    ... )
    >>> ranking = query_focused_heads(default_model(), [example])  # doctest: +SKIP
    >>> engine = InfiniRetriEngine(default_model(), scoring_heads=ranking.top(8))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from infiniretri_integrations.core.attention import capture_question_rows
from infiniretri_integrations.core.config import RetrievalConfig
from infiniretri_integrations.core.progress import progress_bar
from infiniretri_integrations.core.prompting import build_layout

if TYPE_CHECKING:
    from infiniretri_integrations.core.models import LocalModel


@dataclass(frozen=True)
class EvidenceExample:
    """A context, a question about it, and the character spans of the context that answer it."""

    text: str
    question: str
    evidence: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not self.text.strip() or not self.question.strip():
            msg = f"an EvidenceExample needs a non-empty text and question, got {self.text[:40]!r}, {self.question!r}"
            raise ValueError(msg)
        spans = tuple((int(start), int(end)) for start, end in self.evidence)
        if not spans or any(not 0 <= start < end <= len(self.text) for start, end in spans):
            msg = f"evidence must be non-empty (start, end) spans inside the text (0..{len(self.text)}), got {self.evidence!r}"
            raise ValueError(msg)
        object.__setattr__(self, "evidence", spans)


@dataclass(frozen=True)
class HeadRanking:
    """Every head's mean share of the question rows' context attention that lands on evidence.

    ``scores[i][h]`` belongs to layer ``layers[i]``, head ``h``; ``uniform`` is the share the
    evidence would get if attention were spread evenly over the context (the chance level).
    """

    model: str
    layers: tuple[int, ...]
    scores: tuple[tuple[float, ...], ...]
    uniform: float
    examples: int

    def ranked(self) -> list[tuple[int, int, float]]:
        """``(layer, head, share)`` from the most query-focused head down."""
        cells = [
            (layer, head, share)
            for layer, row in zip(self.layers, self.scores, strict=True)
            for head, share in enumerate(row)
        ]
        return sorted(cells, key=lambda cell: (-cell[2], cell[0], cell[1]))

    def top(self, count: int, max_layer: int | None = None) -> tuple[tuple[int, int], ...]:
        """The ``count`` best heads as ``(layer, head)`` pairs (a ``scoring_heads`` value), by layer.

        ``max_layer`` keeps to heads at or below that layer: a scoring pass stops after the
        deepest scoring layer, so it bounds the cost of a pass.

        Raises:
            ValueError: ``count`` is not between 1 and the number of heads measured.
        """
        cells = [cell for cell in self.ranked() if max_layer is None or cell[0] <= max_layer]
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= len(cells):
            msg = f"count must be an integer in 1..{len(cells)} (the heads measured up to layer {max_layer}), got {count!r}"
            raise ValueError(msg)
        return tuple(sorted((layer, head) for layer, head, _ in cells[:count]))

    def layer_means(self) -> dict[int, float]:
        """Each layer's mean share over its heads (what summing all its heads roughly gets)."""
        return {layer: sum(row) / len(row) for layer, row in zip(self.layers, self.scores, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "layers": list(self.layers),
            "scores": [list(row) for row in self.scores],
            "uniform": self.uniform,
            "examples": self.examples,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadRanking:
        return cls(
            model=str(data["model"]),
            layers=tuple(int(layer) for layer in data["layers"]),
            scores=tuple(tuple(float(v) for v in row) for row in data["scores"]),
            uniform=float(data["uniform"]),
            examples=int(data["examples"]),
        )

    def to_markdown(self, count: int = 16) -> str:
        """The ``count`` best heads and the best layers (all heads), as markdown tables."""
        lines = [
            f"Query-focused heads of **{self.model}** on {self.examples} examples (share of the question rows' "
            f"context attention on evidence; spread evenly it would be {self.uniform:.3f}).",
            "",
            "| rank | layer | head | share |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {rank} | {layer} | {head} | {share:.3f} |"
            for rank, (layer, head, share) in enumerate(self.ranked()[:count], 1)
        ]
        best_layers = sorted(self.layer_means().items(), key=lambda item: -item[1])[:5]
        lines += ["", "| layer (all heads) | mean share |", "|---:|---:|"]
        lines += [f"| {layer} | {share:.3f} |" for layer, share in best_layers]
        return "\n".join(lines)


def evidence_share(rows: torch.Tensor, context: slice, evidence: torch.Tensor) -> torch.Tensor:
    """Per head, the share of the question rows' attention to the context that lands on evidence.

    Args:
        rows: ``[heads, question_rows, length]`` attention probabilities.
        context: the context's key positions.
        evidence: ``[context_length]`` bool, True at evidence tokens.

    Returns:
        ``[heads]``: per row ``mass(evidence) / mass(context)``, averaged over the rows.
    """
    on_context = rows[:, :, context]
    total = on_context.sum(dim=-1).clamp_min(torch.finfo(on_context.dtype).tiny)
    return (on_context[:, :, evidence].sum(dim=-1) / total).mean(dim=-1)


def evidence_tokens(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``[tokens]`` bool: each token (given by its character ``offsets``) overlaps an evidence span.

    >>> evidence_tokens([(0, 5), (5, 9), (9, 14)], [(6, 10)]).tolist()
    [False, True, True]
    """
    return torch.tensor([any(start < e and s < end for s, e in spans) for start, end in offsets], dtype=torch.bool)


@torch.inference_mode()
def query_focused_heads(
    lm: LocalModel,
    examples: Iterable[EvidenceExample],
    *,
    layers: Sequence[int] | None = None,
    config: RetrievalConfig | None = None,
    progress: bool | None = False,
) -> HeadRanking:
    """Rank every ``(layer, head)`` of ``lm`` by its mean evidence share over ``examples``.

    Each example is laid out as the engine lays out a pass (``config``'s prompt template and chat
    template, the whole text as context) and read in ONE forward that stops after the deepest of
    ``layers`` (default: every layer).

    Raises:
        ValueError: no examples, or an example longer than the model's window.
    """
    cfg = config or RetrievalConfig()
    chosen = tuple(range(lm.num_layers)) if layers is None else tuple(sorted(set(layers)))
    items = list(examples)
    if not items:
        msg = "query_focused_heads needs at least one EvidenceExample, got none"
        raise ValueError(msg)
    totals = torch.zeros(len(chosen), lm.num_heads, dtype=torch.float64)
    uniform_total = 0.0
    bar = progress_bar(len(items), "query-focused heads", progress)
    for example in items:
        encoded = lm.tokenizer(example.text, add_special_tokens=False, return_offsets_mapping=True)
        context_ids = list(encoded["input_ids"])
        layout = build_layout(lm.tokenizer, cfg, example.question)
        ids, context_start, context_end, question_start = layout.assemble(context_ids)
        if len(ids) > lm.context_window:
            msg = (
                f"example of {len(ids)} tokens (question {example.question[:60]!r}) exceeds the model's "
                f"window of {lm.context_window}; shorten its text"
            )
            raise ValueError(msg)
        mask = evidence_tokens(encoded["offset_mapping"], example.evidence)
        if not bool(mask.any()):
            msg = f"no token of the text falls in the evidence spans {example.evidence} (question {example.question!r})"
            raise ValueError(msg)
        rows = capture_question_rows(lm, torch.tensor([ids]), question_start, chosen, keep_heads=True)
        for index, layer in enumerate(chosen):
            totals[index] += evidence_share(rows[layer].float().cpu(), slice(context_start, context_end), mask).double()
        uniform_total += float(mask.float().mean())
        bar.update(1)
    bar.close()
    means = totals / len(items)
    return HeadRanking(
        model=lm.name,
        layers=chosen,
        scores=tuple(tuple(round(float(v), 6) for v in row) for row in means),
        uniform=round(uniform_total / len(items), 6),
        examples=len(items),
    )
