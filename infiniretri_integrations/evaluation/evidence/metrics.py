"""What the evidence benchmark measures: kept character spans against the gold evidence
(supporting-sentence coverage, both hops, answer recall; on the lexical-gap needles the needle and
the pair's own hard negatives kept), the bootstrap CI, and locating a kept text (the reference
package's) in the sample's text.

One rule decides whether a sentence is kept, everywhere: :func:`span_covered` (at least
``COVERAGE`` of its characters inside the kept spans).

Example:
    >>> merge_spans([(5, 8), (0, 2), (2, 3), (7, 10)])
    [(0, 3), (5, 10)]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from infiniretri_integrations.evaluation.evidence.data import DEFAULT_SEED, RESAMPLES, YES_NO, Span
from infiniretri_integrations.evaluation.evidence_data import (
    COVERAGE as COVERAGE,
)
from infiniretri_integrations.evaluation.evidence_data import (
    EvidenceSample,
    answer_in_text,
    merge_spans,
    span_covered,
)
from infiniretri_integrations.evaluation.evidence_data import (
    covered_fraction as covered_fraction,
)
from infiniretri_integrations.evaluation.metrics import normalize_answer


def negatives_kept(sample: EvidenceSample, spans: Sequence[Span]) -> float | None:
    """The fraction of a lexical-gap sample's own hard negatives (``metadata["negatives"]``, the
    pair's sentences that hold the question's words but do not answer) that ``spans`` keep
    (:func:`span_covered`); ``None`` for samples without them (HotpotQA-long, L-Eval).

    Example:
        >>> negatives = {"negatives": [[0, 3], [4, 7]]}
        >>> sample = EvidenceSample("lexgap", "x", "q", ("A",), "N1. N2. A ate.", "test", metadata=negatives)
        >>> negatives_kept(sample, [(0, 3)]), negatives_kept(sample, [(8, 14)])
        (0.5, 0.0)
    """
    negatives = sample.metadata.get("negatives")
    if not negatives:
        return None
    kept = merge_spans(spans)
    return sum(span_covered((start, end), kept) for start, end in negatives) / len(negatives)


def kept_text(text: str, spans: Sequence[Span]) -> str:
    """The kept pieces of ``text`` in document order, separated by blank lines."""
    return "\n\n".join(text[s:e].strip() for s, e in merge_spans(spans) if text[s:e].strip())


def evidence_metrics(sample: EvidenceSample, spans: Sequence[Span]) -> dict[str, float | None]:
    """``supporting_recall``, ``both_paragraphs`` (``None`` without supporting facts or gold
    paragraphs) and ``answer_recall`` (``None`` for yes/no answers) of the kept ``spans``; for a
    lexical-gap sample (one with hard negatives) also ``negatives_kept`` (:func:`negatives_kept`), a
    key the other datasets' results do not have. On a lexical-gap sample ``supporting_recall`` is
    needle recall (1.0 when the needle sentence is kept, else 0.0) and ``both_paragraphs`` is
    ``None``."""
    kept = merge_spans(spans)
    result: dict[str, float | None] = {"supporting_recall": None, "both_paragraphs": None}
    if sample.supporting:
        covered = [span_covered((s, e), kept) for s, e, _ in sample.supporting]
        result["supporting_recall"] = sum(covered) / len(covered)
        if sample.gold_passages:
            paragraphs = {p for (_, _, p), hit in zip(sample.supporting, covered, strict=True) if hit}
            result["both_paragraphs"] = float(paragraphs == {p for _, _, p in sample.supporting})
    answers = [a for a in sample.answers if normalize_answer(a) not in YES_NO]
    result["answer_recall"] = float(answer_in_text(answers, kept_text(sample.text, kept))) if answers else None
    negatives = negatives_kept(sample, kept)
    if negatives is not None:
        result["negatives_kept"] = negatives
    return result


def bootstrap_ci(
    values: Sequence[float], resamples: int = RESAMPLES, seed: int = DEFAULT_SEED, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (seeded; ``resamples`` resamples of
    the questions with replacement).

    Example:
        >>> bootstrap_ci([1.0, 1.0, 1.0])
        (1.0, 1.0)
    """
    if not values:
        msg = "bootstrap_ci needs at least one value, got an empty sequence"
        raise ValueError(msg)
    import numpy as np

    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def locate_pieces(kept: str, text: str) -> list[Span]:
    """Character spans in ``text`` of the sentences of ``kept`` (a string built from pieces of
    ``text``, possibly with whitespace changed by a tokenizer round trip); pieces not found are
    dropped.

    Example:
        >>> locate_pieces("B c. D!", "A. B  c. C. D!")
        [(3, 8), (12, 14)]
        >>> locate_pieces("A.D!", "A. B  c. C. D!")
        [(0, 2), (12, 14)]
    """
    from infiniretri_integrations.core.segmentation import sentence_spans

    spans: list[Span] = []
    cursor = 0
    for start, end in sentence_spans(kept):
        piece = kept[start:end].strip()
        found = _find(piece, text, cursor) or _find(piece, text, 0) if piece else None
        # pieces glued without a space ("...in 1952.Passage 7:") are looked up part by part
        parts = [piece] if found is not None else [p for p in _GLUED.split(piece) if p.strip()]
        for part in parts:
            found = _find(part.strip(), text, cursor) or _find(part.strip(), text, 0)
            if found is not None:
                spans.append(found)
                cursor = found[1]
    return spans


_GLUED = re.compile(r"(?<=[.!?])(?=[^\s.!?])")


def _find(piece: str, text: str, start: int) -> Span | None:
    at = text.find(piece, start)
    if at >= 0:
        return at, at + len(piece)
    pattern = r"\s*".join(re.escape(char) for char in piece if not char.isspace())
    match = re.compile(pattern).search(text, start)
    return (match.start(), match.end()) if match else None
