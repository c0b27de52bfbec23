"""LongBench's QA metric, ported exactly from THUDM/LongBench ``metrics.py`` (``normalize_answer``,
``f1_score``, ``qa_f1_score``) and ``eval.py`` (maximum over the gold answers, mean x 100).

Examples:
    >>> normalize_answer("The  Eiffel Tower!")
    'eiffel tower'
    >>> round(qa_f1_score("the Eiffel tower in Paris", "Eiffel Tower"), 4)
    0.6667
    >>> best_f1("Paris, France", ["London", "Paris"])
    0.6666666666666666
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction: Sequence[str], ground_truth: Sequence[str], **kwargs: object) -> float:
    """Token-multiset F1 of two token lists (0 when nothing is shared)."""
    common = Counter(prediction) & Counter(ground_truth)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction)
    recall = 1.0 * num_same / len(ground_truth)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def qa_f1_score(prediction: str, ground_truth: str, **kwargs: object) -> float:
    """LongBench ``qa_f1_score``: F1 of the normalised whitespace tokens."""
    normalized_prediction = normalize_answer(prediction)
    normalized_ground_truth = normalize_answer(ground_truth)

    prediction_tokens = normalized_prediction.split()
    ground_truth_tokens = normalized_ground_truth.split()
    return f1_score(prediction_tokens, ground_truth_tokens)


def best_f1(prediction: str, ground_truths: Iterable[str]) -> float:
    """LongBench ``scorer``: the maximum ``qa_f1_score`` over the gold answers (0.0 when none)."""
    score = 0.0
    for ground_truth in ground_truths:
        score = max(score, qa_f1_score(prediction, ground_truth))
    return score


def mean_score(scores: Sequence[float]) -> float:
    """LongBench's reported number: ``round(100 * mean, 2)``."""
    return round(100 * sum(scores) / len(scores), 2) if scores else 0.0
