"""The method's arithmetic on question-row attention: pure functions on tensors."""

from __future__ import annotations

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
    count = int(token_sentence[-1].item()) + 1 if token_sentence.numel() else 0
    best = torch.full((count,), float("-inf"), dtype=scores.dtype)
    best = best.scatter_reduce(0, token_sentence, scores, reduce="amax")
    k = min(top_k, scores.numel())
    top = torch.topk(scores, k).indices
    kept = torch.unique(token_sentence[top])
    return kept, best
