"""Issue #13 item 10: "Acme Corp. Carol moved ..." splits as pysbd and punkt do; a pluggable splitter."""

from __future__ import annotations

import re

import pytest

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.core.segmentation import covering_spans, sentence_spans


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She works at Acme Corp. Carol moved to Rome.", ["She works at Acme Corp.", " Carol moved to Rome."]),
        (
            "We sell apples, pears etc. The shop opens at nine.",
            ["We sell apples, pears etc.", " The shop opens at nine."],
        ),
        ("Acme Corp. was founded in 1990.", ["Acme Corp. was founded in 1990."]),
        ("Dr. Smith met Mr. Jones.", ["Dr. Smith met Mr. Jones."]),
    ],
)
def test_sentence_final_abbreviations(text, expected):
    assert [text[s:e] for s, e in sentence_spans(text)] == expected


def test_covering_spans_and_bad_spans():
    text = "One.  Two.\n"
    assert covering_spans(text, [(0, 4), (6, 10)]) == [(0, 4), (4, 11)]
    with pytest.raises(ValueError, match=r"span \(6, 3\) out of order"):
        covering_spans(text, [(0, 4), (6, 3)])


def test_engine_uses_a_pluggable_splitter(tiny_llama):
    def by_semicolon(text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"[^;]+;?", text)]

    text = "alpha beta; gamma delta; epsilon zeta"
    engine = InfiniRetriEngine(tiny_llama, tokens_per_pass=8, sentence_splitter=by_semicolon)
    result = engine.retrieve(text, "Which Greek letter?", token_budget=10_000)
    assert [s.text for s in result.sentences] == ["alpha beta;", " gamma delta;", " epsilon zeta"]
    assert "".join(s.text for s in result.sentences) == text
