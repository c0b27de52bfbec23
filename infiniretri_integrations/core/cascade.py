"""The cascade's first stage: which sentences of a long input the language model reads at all.

With ``RetrievalConfig(candidate_tokens=N)`` the chunk loop reads a candidate set of about ``N``
tokens instead of the whole input. The set is chosen here from a score per sentence that costs
next to nothing per token (the BM25 scores fusion already computes, :mod:`core.lexical`):

1. every document's first sentence (its title or opening line);
2. evenly spaced *coverage windows* (``coverage`` of the budget, ~:data:`COVERAGE_WINDOW_TOKENS`
   tokens each), so that the attention also sees parts of the input that share no word with
   the question;
3. the best-scoring sentences, each with :data:`NEIGHBOURS` neighbour on each side (same
   document), until the budget is filled;
4. room still left (too few sentences score above zero) goes to more coverage windows, spread
   over the sentences not taken yet.

The candidates come back as indices into the input's sentences, in document order: each
:class:`~infiniretri_integrations.core.types.Sentence` keeps its document, index and character
offsets, so what the passes keep maps back to the original text exactly.

Pure functions of token counts and scores (no model, no configuration object).
"""

from __future__ import annotations

from collections.abc import Sequence

from infiniretri_integrations.core.types import Sentence

COVERAGE_WINDOW_TOKENS = 128
"""Size of one coverage window, in tokens."""

NEIGHBOURS = 1
"""Sentences taken on each side of a high-scoring sentence (same document)."""

__all__ = [
    "COVERAGE_WINDOW_TOKENS",
    "NEIGHBOURS",
    "candidate_indices",
    "candidate_sentences",
    "coverage_windows",
    "document_starts",
]


def document_starts(document_indices: Sequence[int]) -> list[int]:
    """Positions where a new document begins.

    Example:
        >>> document_starts([0, 0, 1, 1, 1, 3])
        [0, 2, 5]
    """
    return [i for i, doc in enumerate(document_indices) if i == 0 or doc != document_indices[i - 1]]


def coverage_windows(
    sizes: Sequence[int], amount: int, window: int = COVERAGE_WINDOW_TOKENS, phase: float = 0.5
) -> list[int]:
    """Sentence positions of ``amount // window`` windows of about ``window`` tokens each, spread
    evenly over the token positions of the input: window ``k`` starts at the sentence holding
    token ``(k + phase) * total / windows`` and takes whole sentences while it has room (at
    least one).

    Args:
        sizes: ``[sentences]`` token counts, in document order.
        amount: tokens to spend on windows.
        phase: where in its stretch of the input each window starts (0: at its start).

    Example:
        >>> coverage_windows([10] * 100, 60, window=20)  # 3 windows of 2 sentences, evenly spread
        [16, 17, 50, 51, 83, 84]
    """
    total = sum(sizes)
    count = amount // window if window > 0 else 0
    if count <= 0 or total <= 0:
        return []
    starts = []
    position = 0
    for size in sizes:
        starts.append(position)
        position += size
    chosen: list[int] = []
    cursor = 0
    for k in range(count):
        target = (k + phase) * total / count
        while cursor + 1 < len(sizes) and starts[cursor + 1] <= target:
            cursor += 1
        used = 0
        index = cursor
        while index < len(sizes) and (used == 0 or used + sizes[index] <= window):
            if not chosen or index > chosen[-1]:
                chosen.append(index)
            used += sizes[index]
            index += 1
    return chosen


def candidate_indices(
    sizes: Sequence[int],
    document_indices: Sequence[int],
    scores: Sequence[float],
    budget: int,
    coverage: float,
    window: int = COVERAGE_WINDOW_TOKENS,
    neighbours: int = NEIGHBOURS,
) -> list[int]:
    """The candidate set (positions into the sentences, ascending) of at most ``budget`` tokens:
    first sentences of documents, ``coverage * budget`` tokens of coverage windows, then the
    best-scoring sentences (score > 0) with ``neighbours`` on each side, then more coverage
    windows, over the sentences not taken yet, with what is left. Everything when the input fits in the budget.

    Args:
        sizes: ``[sentences]`` token counts, in document order.
        document_indices: ``[sentences]`` document of each sentence.
        scores: ``[sentences]`` first-stage score (higher is better).
        budget: tokens the candidate set may hold (> 0).
        coverage: share of ``budget`` spent on coverage windows first, in ``[0, 1)``.

    Example:
        >>> sizes, docs = [10] * 20, [0] * 10 + [1] * 10
        >>> scores = [0.0] * 20
        >>> scores[6] = 3.0
        >>> candidate_indices(sizes, docs, scores, 50, 0.0)  # first sentences, the hit and its neighbours
        [0, 5, 6, 7, 10]
        >>> candidate_indices(sizes, docs, scores, 90, 0.0, window=20)  # room left: coverage windows
        [0, 4, 5, 6, 7, 8, 10, 16, 17]
    """
    count = len(sizes)
    if not len(document_indices) == len(scores) == count:
        msg = f"sizes, document_indices and scores must have one entry per sentence, got {count}, {len(document_indices)}, {len(scores)}"
        raise ValueError(msg)
    if budget <= 0:
        msg = f"budget must be a positive number of tokens, got {budget!r}"
        raise ValueError(msg)
    if not 0 <= coverage < 1:
        msg = f"coverage must be in [0, 1), got {coverage!r}"
        raise ValueError(msg)
    if sum(sizes) <= budget:
        return list(range(count))
    chosen: set[int] = set()
    used = 0

    def take(index: int) -> bool:
        nonlocal used
        if index in chosen:
            return True
        if used + sizes[index] > budget:
            return False
        chosen.add(index)
        used += sizes[index]
        return True

    def take_windows(amount: int, phase: float) -> None:
        for index in coverage_windows(sizes, amount, window, phase):
            take(index)

    for index in document_starts(document_indices):
        take(index)
    take_windows(int(coverage * budget), 0.5)
    ranked = sorted((i for i in range(count) if scores[i] > 0), key=lambda i: (-scores[i], i))
    for index in ranked:
        if used >= budget:
            break
        take(index)
        for offset in range(1, neighbours + 1):
            for other in (index - offset, index + offset):
                if 0 <= other < count and document_indices[other] == document_indices[index]:
                    take(other)
    while budget - used >= window:
        rest = [i for i in range(count) if i not in chosen]
        before = used
        for position in coverage_windows([sizes[i] for i in rest], budget - used, window):
            take(rest[position])
        if used == before:
            break
    return sorted(chosen)


def candidate_sentences(
    sentences: Sequence[Sentence],
    scores: Sequence[float],
    budget: int,
    coverage: float,
) -> list[Sentence]:
    """The sentences the chunk loop reads (:func:`candidate_indices`), in document order, each the
    input's own :class:`Sentence` (document, index and offsets unchanged).

    Example:
        >>> s = [Sentence(0, i, 2 * i, 2 * i + 2, "x.", (1, 2)) for i in range(10)]
        >>> [c.sentence_index for c in candidate_sentences(s, [0.0] * 5 + [1.0] + [0.0] * 4, 8, 0.0)]
        [0, 4, 5, 6]
    """
    chosen = candidate_indices(
        [s.token_count for s in sentences], [s.document_index for s in sentences], scores, budget, coverage
    )
    return [sentences[i] for i in chosen]
