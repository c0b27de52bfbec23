from __future__ import annotations

import pytest

from infiniretri_integrations import RetrievalConfig
from infiniretri_integrations.core.attention import resolve_layers


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_k", 0),
        ("top_k", -3),
        ("chunk_size", 0),
        ("phrase_window", 0),
        ("top_k", 2.5),
        ("max_cache_tokens", 0),
        ("top_k", True),
    ],
)
def test_invalid_numbers_name_the_value(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be a positive integer, got {value!r}"):
        RetrievalConfig(**{field: value})


def test_template_must_put_context_before_question():
    with pytest.raises(ValueError, match="before"):
        RetrievalConfig(prompt_template="{question}\n{context}")
    with pytest.raises(ValueError, match="must contain"):
        RetrievalConfig(prompt_template="no placeholders")


def test_layer_specs():
    assert RetrievalConfig(scoring_layer=[15, 18]).scoring_layer == (15, 18)
    with pytest.raises(ValueError, match="scoring_layer"):
        RetrievalConfig(scoring_layer="last")
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers(30, 30)
    assert resolve_layers(-1, 30) == (29,)


def test_replace_rejects_unknown_options():
    with pytest.raises(TypeError, match="topk"):
        RetrievalConfig().replace(topk=3)
    assert RetrievalConfig().replace(top_k=5).top_k == 5


def test_sentence_must_fit_chunk():
    with pytest.raises(ValueError, match="max_sentence_tokens"):
        RetrievalConfig(chunk_size=100, max_sentence_tokens=200)
