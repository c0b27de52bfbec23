"""Output rules shared by the LangChain Documents and the LlamaIndex nodes.

The stripped sentence span (:func:`sentence_span`), the deterministic output id
(:func:`output_id`), a document's score (:func:`best_score_per_document`), which sentences make
the ``k`` best outputs (:func:`keep_best`, :func:`select_outputs`), normalised scores and thresholds (:func:`score_scale`,
:func:`check_threshold`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from infiniretri_integrations.core.types import RetrievedSentence

__all__ = [
    "GroupBy",
    "best_score_per_document",
    "check_threshold",
    "keep_best",
    "output_id",
    "score_scale",
    "select_outputs",
    "sentence_span",
]

GroupBy = Literal["sentence", "document"]


def sentence_span(sentence: RetrievedSentence) -> tuple[str, int, int]:
    """The sentence without surrounding whitespace and its exact ``(start, end)`` in the source
    (:meth:`RetrievedSentence.stripped`), what every output (Document, node) is made of.

    Example:
        >>> s = RetrievedSentence(" Bob lives in Rome. ", 1.0, 0, "d", 1, 10, 30, 5)
        >>> sentence_span(s)
        ('Bob lives in Rome.', 11, 29)
    """
    return sentence.stripped()


def output_id(source_id: str | None, start: int, end: int) -> str | None:
    """The id of an output made from ``source[start:end]``: unique per span and deterministic
    (the same input gives the same id), ``None`` when the source has no id.

    Example:
        >>> output_id("report", 10, 42), output_id(None, 0, 5)
        ('report:10-42', None)
    """
    return None if source_id is None else f"{source_id}:{start}-{end}"


def best_score_per_document(sentences: Sequence[RetrievedSentence]) -> dict[int, float]:
    """Each document's score: the best score of its sentences in ``sentences``, by
    ``document_index`` (keys in order of first appearance; documents without a sentence are
    absent). The score of a grouped output (a LangChain ``group_by="document"`` Document, a
    LlamaIndex parent node) and what ``keep_best(..., "document")`` ranks by.

    Example:
        >>> s = [RetrievedSentence("a", 1.0, 2, None, 0, 0, 1, 1), RetrievedSentence("b", 3.0, 0, None, 0, 0, 1, 1),
        ...      RetrievedSentence("c", 4.0, 2, None, 1, 1, 2, 1)]
        >>> best_score_per_document(s)
        {2: 4.0, 0: 3.0}
    """
    best: dict[int, float] = {}
    for sentence in sentences:
        previous = best.get(sentence.document_index)
        if previous is None or sentence.score > previous:
            best[sentence.document_index] = sentence.score
    return best


def keep_best(sentences: Sequence[RetrievedSentence], k: int | None, group_by: GroupBy) -> list[RetrievedSentence]:
    """The sentences that make up the ``k`` best outputs, in document order (``None``: all).

    With ``group_by="sentence"`` the ``k`` best-scoring sentences; with ``"document"`` every kept
    sentence of the ``k`` documents with the best maximum sentence score.

    Example:
        >>> s = [RetrievedSentence("a", 1.0, 0, None, 0, 0, 1, 1), RetrievedSentence("b", 3.0, 1, None, 0, 0, 1, 1),
        ...      RetrievedSentence("c", 2.0, 1, None, 1, 1, 2, 1)]
        >>> [x.text for x in keep_best(s, 2, "sentence")], [x.text for x in keep_best(s, 1, "document")]
        (['b', 'c'], ['b', 'c'])
    """
    if k is None:
        return list(sentences)
    if group_by == "sentence":
        best = sorted(range(len(sentences)), key=lambda i: (-sentences[i].score, i))[:k]
        return [sentences[i] for i in sorted(best)]
    top = best_score_per_document(sentences)
    chosen = set(sorted(top, key=lambda d: (-top[d], d))[:k])
    return [s for s in sentences if s.document_index in chosen]


def score_scale(sentences: Sequence[RetrievedSentence]) -> Callable[[float], float]:
    """Map the raw scores of one query's kept sentences to 0-1 (min-max): the best scores 1, the
    weakest 0. Raw scores are attention sums, fused reciprocal ranks or content-free differences
    (which can be negative), so only their order within one query means anything.

    Example:
        >>> s = [RetrievedSentence("a", 2.0, 0, None, 0, 0, 1, 1), RetrievedSentence("b", 8.0, 0, None, 1, 1, 2, 1),
        ...      RetrievedSentence("c", 5.0, 0, None, 2, 2, 3, 1)]
        >>> scale = score_scale(s)
        >>> scale(2.0), scale(5.0), scale(8.0)
        (0.0, 0.5, 1.0)
    """
    scores = [s.score for s in sentences]
    top, bottom = max(scores, default=0.0), min(scores, default=0.0)
    if top <= bottom:
        return lambda score: 1.0
    return lambda score: max(0.0, min(1.0, (score - bottom) / (top - bottom)))


def select_outputs(
    sentences: Sequence[RetrievedSentence],
    k: int | None,
    group_by: GroupBy,
    *,
    normalize_scores: bool = False,
    score_threshold: float | None = None,
) -> tuple[list[RetrievedSentence], Callable[[float], float] | None]:
    """The sentences behind the ``k`` best outputs scoring at least ``score_threshold`` (on the
    reported scale), and the scale reported (``None``: raw attention scores). Kept pieces that
    are only whitespace (a long run of blanks cut by tokens) are left out before anything else:
    they would make empty outputs.

    Example:
        >>> s = [RetrievedSentence("a", 2.0, 0, None, 0, 0, 1, 1), RetrievedSentence("b", 8.0, 0, None, 1, 1, 2, 1)]
        >>> kept, scale = select_outputs(s, None, "sentence", normalize_scores=True, score_threshold=0.5)
        >>> [x.text for x in kept], scale(8.0)
        (['b'], 1.0)
    """
    sentences = [s for s in sentences if s.text.strip()]  # whitespace-only pieces make no output
    scale = score_scale(sentences) if normalize_scores else None
    kept = list(sentences)
    if score_threshold is not None:
        kept = [s for s in kept if (scale(s.score) if scale is not None else s.score) >= score_threshold]
    return keep_best(kept, k, group_by), scale


def check_threshold(value: object, normalized: bool) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        msg = f"score_threshold must be None or a number >= 0, got {value!r}"
        raise ValueError(msg)
    if normalized and value > 1:
        msg = f"score_threshold must be in [0, 1] with normalize_scores=True, got {value!r}"
        raise ValueError(msg)
