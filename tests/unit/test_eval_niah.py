"""The NIH case builder and the grid's bookkeeping (results file, tables, heatmap)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infiniretri_integrations.evaluation import niah
from infiniretri_integrations.evaluation.niah import STANDARD_NEEDLE, build_case

SENTENCES = [f"Sentence number {i} talks about topic {i * 7 % 13} in some detail." for i in range(400)]
HAYSTACK = " ".join(SENTENCES)


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _pieces(case):
    start, end = case.needle_span
    return case.text[:start], case.text[start:end], case.text[end:]


@pytest.mark.parametrize("context_tokens", [500, 1234, 3000])
@pytest.mark.parametrize("depth", [0, 10, 25, 50, 75, 100])
def test_exact_length_boundary_and_depth(tokenizer, context_tokens: int, depth: float) -> None:
    case = build_case(HAYSTACK, tokenizer, context_tokens, depth)
    before, needle, after = _pieces(case)
    assert needle == STANDARD_NEEDLE
    # exact length, counted piecewise as build_case documents (and the standard harness does)
    assert _count(tokenizer, before) + _count(tokenizer, needle) + _count(tokenizer, after) == context_tokens
    # at a sentence boundary: nothing or a full sentence before the needle
    assert before == "" or before.rstrip().endswith(".")
    # at the asked depth, at most one sentence early (the cut goes back to the previous boundary)
    room = context_tokens - _count(tokenizer, needle)
    target = int(room * depth / 100)
    sentence_tokens = max(_count(tokenizer, " " + s) for s in SENTENCES)
    assert target - sentence_tokens <= _count(tokenizer, before) <= target
    if depth == 0:
        assert case.needle_start == 0


def test_repeats_short_haystack_and_stdlib(tokenizer, stdlib_haystack: str) -> None:
    short = "One short sentence. Another one here."
    case = build_case(short, tokenizer, 400, 50)
    before, needle, after = _pieces(case)
    assert _count(tokenizer, before) + _count(tokenizer, needle) + _count(tokenizer, after) == 400
    case = build_case(stdlib_haystack, tokenizer, 2000, 40)
    before, needle, after = _pieces(case)
    assert _count(tokenizer, before) + _count(tokenizer, needle) + _count(tokenizer, after) == 2000
    assert re.search(r"[.?!\n]\s*$", before)


def test_build_case_rejects_bad_arguments(tokenizer) -> None:
    with pytest.raises(ValueError, match="depth_percent"):
        build_case(HAYSTACK, tokenizer, 1000, 101)
    with pytest.raises(ValueError, match="exceed"):
        build_case(HAYSTACK, tokenizer, 5, 50)
    with pytest.raises(ValueError, match="empty"):
        build_case("", tokenizer, 1000, 50)


def test_needle_checks() -> None:
    assert niah.needle_retrieved(
        ["Intro.", "  The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day. "]
    )
    assert not niah.needle_retrieved(["The best thing to do in San Francisco is eat a sandwich."])
    assert niah.answer_has_facts("Eat a Sandwich and sit in Dolores Park.")
    assert not niah.answer_has_facts("Sit in Dolores Park.")


def _cell(length: int, depth: float, ok: bool, base: bool | None = None) -> dict:
    cell = {"context_tokens": length, "depth_percent": depth, "infiniretri": {"retrieved": ok, "answered": ok}}
    if base is not None:
        cell["full_context"] = {"retrieved": base, "answered": base}
    return cell


def test_grid_tables_and_heatmap(tmp_path: Path) -> None:
    data = {
        "meta": {"model": "m"},
        "cells": [_cell(8000, 0, True, True), _cell(8000, 50, True, False), _cell(16000, 0, False, False)],
    }
    lengths, depths, matrix = niah.grid_table(data)
    assert lengths == [8000, 16000] and depths == [0.0, 50.0]
    assert matrix == [[1.0, 0.0], [1.0, None]]
    summary = niah.grid_summary(data)
    assert summary["cells"] == 3 and summary["infiniretri.answered"] == pytest.approx(0.667)
    table = niah.markdown_grid(data)
    assert "| 0% | 1/1 \\| 1 | 0/0 \\| 0 |" in table and "| 50% | 1/1 \\| 0 | - |" in table
    png = niah.plot_heatmap(data, tmp_path / "grid.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_load_results_missing_and_invalid(tmp_path: Path) -> None:
    assert niah.load_results(tmp_path / "none.json") == {"meta": {}, "cells": []}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(ValueError, match="cells"):
        niah.load_results(bad)
