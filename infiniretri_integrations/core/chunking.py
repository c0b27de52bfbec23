"""Greedy packing of whole sentences into chunks of at most ``chunk_size`` tokens."""

from __future__ import annotations

from collections.abc import Sequence

from infiniretri_integrations.core.types import Sentence


def pack_chunks(sentences: Sequence[Sentence], chunk_size: int) -> list[list[Sentence]]:
    """Consecutive sentences (across documents, in order) grouped into chunks of at most
    ``chunk_size`` tokens; a sentence never straddles two chunks.

    Example:
        >>> s = [Sentence(0, i, 0, 0, "", tuple(range(n))) for i, n in enumerate([4, 4, 3, 9])]
        >>> [[x.sentence_index for x in c] for c in pack_chunks(s, 10)]
        [[0, 1], [2], [3]]
    """
    chunks: list[list[Sentence]] = []
    current: list[Sentence] = []
    used = 0
    for sentence in sentences:
        size = sentence.token_count
        if size > chunk_size:
            msg = f"sentence of {size} tokens exceeds chunk_size {chunk_size}; split it first"
            raise ValueError(msg)
        if current and used + size > chunk_size:
            chunks.append(current)
            current, used = [], 0
        current.append(sentence)
        used += size
    if current:
        chunks.append(current)
    return chunks
