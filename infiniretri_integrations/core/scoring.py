"""The method's arithmetic on question-row attention: pure functions on tensors."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def question_weights(rows: torch.Tensor, question_start: int) -> torch.Tensor:
    """Attention mass each question row puts on the question span itself.

    Args:
        rows: ``[rows, length]`` attention of the question rows; the rows are the positions
            ``question_start..length-1``.
        question_start: first column of the question span.

    Returns:
        ``[rows]`` weights.
    """
    return rows[:, question_start:].sum(dim=-1)


def phrase_scores(token_scores: torch.Tensor, window: int) -> torch.Tensor:
    """Zero-padded moving sum over ``window`` neighbours: ``out[j] = sum(x[j-w//2 .. j+w-1-w//2])``.

    Equals the reference's ``convolve2d(..., mode="same")`` with a ``1 x window`` kernel of ones.

    Args:
        token_scores: ``[keys]``.
    Returns:
        ``[keys]``.
    """
    left = window // 2
    right = window - 1 - left
    padded = torch.nn.functional.pad(token_scores[None, None, :], (left, right))
    kernel = torch.ones(1, 1, window, dtype=token_scores.dtype, device=token_scores.device)
    return torch.nn.functional.conv1d(padded, kernel)[0, 0]


def context_scores(
    rows: torch.Tensor,
    context_start: int,
    context_end: int,
    weights: torch.Tensor | None,
    window: int,
) -> torch.Tensor:
    """Phrase score of every context token.

    Args:
        rows: ``[rows, length]`` question-row attention (heads already summed).
        context_start, context_end: the context columns.
        weights: ``[rows]`` question weights (applied squared) or ``None`` (all ones).
        window: phrase window.

    Returns:
        ``[context_end - context_start]`` scores.
    """
    context = rows[:, context_start:context_end]
    if weights is not None:
        context = context * (weights * weights)[:, None]
    return phrase_scores(context.sum(dim=0), window)


def content_free_scores(
    rows: torch.Tensor,
    neutral_rows: torch.Tensor,
    context_start: int,
    context_end: int,
    weights: torch.Tensor | None,
    window: int,
) -> torch.Tensor:
    """Phrase score of what the question adds over a content-free question (ICR, arXiv 2410.02642).

    Each question's rows are averaged (the question's rows weighted by ``weights`` squared, as
    :func:`context_scores` does), the content-free mean is subtracted, and the phrase window is
    applied: tokens that draw attention whatever is asked (punctuation, list markers, the first
    tokens of a chunk) fall to about zero.

    Args:
        rows: ``[rows, length]`` question-row attention.
        neutral_rows: ``[neutral_rows, length']`` attention of the content-free question's rows
            over the same context columns.
        context_start, context_end: the context columns (the same in both).

    Returns:
        ``[context_end - context_start]`` scores (may be negative).
    """
    context = rows[:, context_start:context_end]
    row_weights = weights * weights if weights is not None else torch.ones(context.shape[0], dtype=context.dtype)
    asked = (context * row_weights[:, None]).sum(dim=0) / row_weights.sum().clamp_min(1e-12)
    neutral = neutral_rows[:, context_start:context_end].mean(dim=0)
    return phrase_scores(asked - neutral, window)


def select_sentences(
    scores: torch.Tensor,
    token_sentence: torch.Tensor,
    top_k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentences holding at least one of the ``top_k`` best tokens, and every sentence's best score.

    Args:
        scores: ``[tokens]`` context-token scores.
        token_sentence: ``[tokens]`` index (0..n-1, non-decreasing) of the sentence of each token.
        top_k: how many tokens to take.

    Returns:
        ``(kept, best)``: sorted indices of the kept sentences, and ``[n]`` max token score per sentence.
    """
    best = sentence_maxima(scores, token_sentence)
    k = min(top_k, scores.numel())
    top = torch.topk(scores, k).indices
    kept = torch.unique(token_sentence[top])
    return kept, best


def token_sentence_index(token_counts: Sequence[int]) -> torch.Tensor:
    """``[sum(token_counts)]``: the index of the sentence each token belongs to.

    Example:
        >>> token_sentence_index([2, 1, 3]).tolist()
        [0, 0, 1, 2, 2, 2]
    """
    return torch.repeat_interleave(torch.arange(len(token_counts)), torch.tensor(list(token_counts), dtype=torch.long))


def sentence_maxima(scores: torch.Tensor, token_sentence: torch.Tensor) -> torch.Tensor:
    """Best token score of each sentence.

    Args:
        scores: ``[tokens]``.
        token_sentence: ``[tokens]`` sentence index (0..n-1, non-decreasing) of each token.

    Returns:
        ``[n]``.

    Example:
        >>> sentence_maxima(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([0, 0, 1])).tolist()
        [3.0, 2.0]
    """
    count = int(token_sentence[-1].item()) + 1 if token_sentence.numel() else 0
    best = torch.full((count,), float("-inf"), dtype=scores.dtype)
    return best.scatter_reduce(0, token_sentence, scores, reduce="amax")


def rank_fusion(primary: torch.Tensor, secondary: torch.Tensor, weight: float = 1.0, k: float = 60.0) -> torch.Tensor:
    """Reciprocal-rank fusion of two scores of the same items: ``1/(k + rank_1) + weight/(k + rank_2)``.

    Ranks start at 1 (best); ties share the better rank. Only ranks matter, so the two signals
    need no common scale.

    Args:
        primary, secondary: ``[n]`` scores (higher is better).

    Returns:
        ``[n]`` fused scores (higher is better).

    Example:
        >>> rank_fusion(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([0.0, 5.0, 1.0])).argmax().item()
        1
    """
    return rank_fusion_many(primary, [(secondary, weight)], k)


def rank_fusion_many(
    primary: torch.Tensor, others: Sequence[tuple[torch.Tensor, float]], k: float = 60.0
) -> torch.Tensor:
    """Reciprocal-rank fusion of any number of signals: ``1/(k + rank_0) + sum_i w_i/(k + rank_i)``
    (:func:`rank_fusion` with one other signal).

    Args:
        primary: ``[n]`` scores (weight 1).
        others: ``(scores [n], weight)`` pairs.

    Example:
        >>> a, b, c = torch.tensor([3.0, 2.0, 1.0]), torch.tensor([0.0, 5.0, 1.0]), torch.tensor([0.0, 0.0, 9.0])
        >>> rank_fusion_many(a, [(b, 1.0), (c, 3.0)]).argmax().item()
        2
    """
    fused = 1.0 / (k + _ranks(primary))
    for scores, weight in others:
        fused = fused + weight / (k + _ranks(scores))
    return fused


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    """``[n]`` 1-based ranks, best first; equal scores share the better rank."""
    ascending = torch.sort(scores).values
    greater = scores.numel() - torch.searchsorted(ascending, scores, right=True)
    return greater.to(torch.float64) + 1.0


def fill_budget(
    scores: Sequence[float] | torch.Tensor,
    sizes: Sequence[int],
    budget: int,
    limits: Sequence[tuple[Sequence[int], int]] = (),
) -> list[int]:
    """Items taken in score order while they fit in ``budget`` (items that do not fit are
    skipped, smaller ones after them may still fit); returned in their original order.

    ``limits``: further ``(sizes, budget)`` constraints (e.g. the same items counted in another
    tokenizer's tokens); an item is taken only when it fits in every one.

    Example:
        >>> fill_budget([0.9, 0.5, 0.8, 0.1], [6, 2, 5, 1], 8)
        [0, 1]
        >>> fill_budget([0.9, 0.5, 0.8, 0.1], [6, 2, 5, 1], 9)
        [0, 1, 3]
        >>> fill_budget([0.9, 0.5, 0.8, 0.1], [6, 2, 5, 1], 13), fill_budget([0.9, 0.5, 0.8, 0.1], [6, 2, 5, 1], 13, limits=[([1, 9, 1, 1], 3)])
        ([0, 1, 2], [0, 2, 3])
    """
    values = scores.tolist() if isinstance(scores, torch.Tensor) else list(scores)
    constraints = [(sizes, budget), *limits]
    used = [0] * len(constraints)
    chosen: list[int] = []
    for index in sorted(range(len(values)), key=lambda i: (-values[i], i)):
        if all(used[c] + size[index] <= cap for c, (size, cap) in enumerate(constraints)):
            chosen.append(index)
            for c, (size, _cap) in enumerate(constraints):
                used[c] += size[index]
    return sorted(chosen)
