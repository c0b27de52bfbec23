"""The kept sentences and scores of real-model cases, pinned in float32 before the engine was split
into stages (``pin_cases.py``): any change to what is kept, or to a score, fails here."""

from __future__ import annotations

import json

import pytest

from tests.regression.pin_cases import CASES, PINS, compute, float32_engine

pytestmark = pytest.mark.real_model

SCORE_TOLERANCE = 1e-5
"""Relative tolerance on scores (float32 sums whose order a restructure may change)."""


@pytest.fixture(scope="module")
def computed(real_lm) -> dict[str, list[list[float]]]:
    return compute(float32_engine())


def test_every_case_is_pinned() -> None:
    pins = json.loads(PINS.read_text(encoding="utf-8"))
    assert {key.split("/")[0] for key in pins} == set(CASES)


def test_kept_spans_and_scores_unchanged(computed: dict[str, list[list[float]]]) -> None:
    pins = json.loads(PINS.read_text(encoding="utf-8"))
    assert set(computed) == set(pins)
    for key, expected in pins.items():
        got = computed[key]
        spans = [row[:4] + row[5:] for row in got]
        assert spans == [row[:4] + row[5:] for row in expected], f"{key}: kept sentences changed"
        for (*_, score, _tokens), (*_, pinned, _pinned_tokens) in zip(got, expected, strict=True):
            assert score == pytest.approx(pinned, rel=SCORE_TOLERANCE, abs=1e-9), f"{key}: score changed"
