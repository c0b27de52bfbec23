"""LongBench QA F1 (ported from THUDM/LongBench metrics.py) against hand-checked cases."""

from __future__ import annotations

import pytest

from infiniretri_integrations.evaluation.metrics import best_f1, f1_score, mean_score, normalize_answer, qa_f1_score


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  a  cat, an owl & THE dog!  ", "cat owl dog"),
        ("U.S.A.", "usa"),
        ("theatre", "theatre"),  # articles only as whole words
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("The cat sat.", "a cat sat", 1.0),  # identical after normalisation
        ("Paris France", "Paris", 2 / 3),  # precision 1/2, recall 1
        ("Paris", "Paris France", 2 / 3),  # precision 1, recall 1/2
        ("the the cat cat", "cat", 2 / 3),  # "cat cat" vs "cat": one shared token
        ("video game console", "video game", 0.8),  # p 2/3, r 1 -> 0.8
        ("London", "Paris", 0.0),
        ("", "Paris", 0.0),
        ("the", "a", 0.0),  # both normalise to nothing: no shared token
    ],
)
def test_qa_f1_score(prediction: str, gold: str, expected: float) -> None:
    assert qa_f1_score(prediction, gold) == pytest.approx(expected)


def test_f1_score_counts_multiset_overlap() -> None:
    assert f1_score(["a", "b", "b"], ["b", "b", "c", "d"]) == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert f1_score([], ["x"]) == 0


def test_best_f1_is_max_over_gold_answers() -> None:
    assert best_f1("Paris, France", ["London", "Paris", "France Paris"]) == pytest.approx(1.0)
    assert best_f1("Paris", ["London"]) == 0.0
    assert best_f1("anything", []) == 0.0


def test_mean_score_is_longbench_percentage() -> None:
    assert mean_score([1.0, 0.5, 0.0]) == 50.0
    assert mean_score([2 / 3]) == 66.67
    assert mean_score([]) == 0.0
