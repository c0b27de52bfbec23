from __future__ import annotations

import pytest

from infiniretri_integrations import RetrievalConfig
from infiniretri_integrations.core.attention import resolve_layers
from infiniretri_integrations.core.config import AUTO_CANDIDATE_TOKENS, AUTO_CASCADE_ABOVE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tokens_per_pass", 0),
        ("tokens_per_pass", -3),
        ("chunk_size", 0),
        ("phrase_window", 0),
        ("tokens_per_pass", 2.5),
        ("working_set_tokens", 0),
        ("tokens_per_pass", True),
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
    assert RetrievalConfig().replace(tokens_per_pass=5).tokens_per_pass == 5


@pytest.mark.parametrize(("old", "new"), [("top_k", "tokens_per_pass"), ("max_cache_tokens", "working_set_tokens")])
def test_renamed_options_still_work_with_a_deprecation_warning(old, new):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated, use '{new}'"):
        config = RetrievalConfig(**{old: 64})
    assert getattr(config, new) == 64
    with pytest.warns(DeprecationWarning, match=old):
        assert getattr(RetrievalConfig().replace(**{old: 32}), new) == 32
    with (
        pytest.raises(ValueError, match=f"{old}=64 and {new}=32 are the same option"),
        pytest.warns(DeprecationWarning),
    ):
        RetrievalConfig(**{old: 64, new: 32})


def test_max_new_tokens_moved_to_the_generation_config():
    from infiniretri_integrations import InfiniRetriEngine
    from infiniretri_integrations.core.config import GenerationConfig, option_names

    assert "max_new_tokens" not in option_names()
    with pytest.warns(DeprecationWarning, match="GenerationConfig"):
        legacy = RetrievalConfig(max_new_tokens=7)
    assert InfiniRetriEngine(config=legacy.replace(chunk_size=512)).generation.max_new_tokens == 7
    assert InfiniRetriEngine(max_new_tokens=9).generation.max_new_tokens == 9
    assert InfiniRetriEngine(generation=GenerationConfig(stop="END")).generation.stop == ("END",)


@pytest.mark.parametrize(
    ("options", "resolved"),
    [
        ({}, (None, 300, 2.5, False)),
        ({"token_budget": 512}, (None, None, 2.5, False)),
        ({"fusion": None}, (None, 300, None, False)),
        ({"fusion_stage": "pass", "fusion_weight": 1.0}, (None, 300, 1.0, True)),
        ({"chunk_size": 1024, "tokens_per_pass": 50}, (1024, 50, 2.5, False)),
    ],
)
def test_unset_options_resolve_to_their_documented_defaults(options, resolved):
    config = RetrievalConfig(**options)
    assert (
        config.chunk_size,
        config.effective_tokens_per_pass,
        config.effective_fusion_weight,
        config.fuses_every_pass,
    ) == resolved


def test_explicit_default_values_are_kept_as_given():
    from infiniretri_integrations.core.config import DEFAULT_CHUNK_SIZE

    assert RetrievalConfig(chunk_size=DEFAULT_CHUNK_SIZE).chunk_size == DEFAULT_CHUNK_SIZE
    assert RetrievalConfig().chunk_size is None


def test_sentence_must_fit_chunk():
    with pytest.raises(ValueError, match="max_sentence_tokens"):
        RetrievalConfig(chunk_size=100, max_sentence_tokens=200)


@pytest.mark.parametrize("value", [0, -5, 2.5, True, "all", "Auto"])
def test_candidate_tokens_must_be_a_positive_integer_auto_or_none(value):
    with pytest.raises(
        ValueError,
        match=rf"candidate_tokens must be a positive integer, 'auto' or None \(read everything\), got {value!r}",
    ):
        RetrievalConfig(candidate_tokens=value)


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, float("nan"), "half", True])
def test_candidate_coverage_must_be_a_share_below_one(value):
    with pytest.raises(ValueError, match=r"candidate_coverage must be a number in \[0, 1\).*got"):
        RetrievalConfig(candidate_tokens=4096, candidate_coverage=value)


def test_candidate_coverage_applies_only_with_candidate_tokens():
    with pytest.raises(ValueError, match=r"candidate_coverage=0.5 applies only with candidate_tokens"):
        RetrievalConfig(candidate_tokens=None, candidate_coverage=0.5)
    with pytest.raises(ValueError, match="applies only with candidate_tokens"):
        RetrievalConfig(candidate_tokens=4096, candidate_coverage=0.5).replace(candidate_tokens=None)


@pytest.mark.parametrize(
    ("options", "resolved"),
    [
        ({}, ("auto", 0.25)),
        ({"candidate_tokens": None}, (None, None)),
        ({"candidate_coverage": 0.1}, ("auto", 0.1)),
        ({"candidate_tokens": 4096}, (4096, 0.25)),
        ({"candidate_tokens": 4096, "candidate_coverage": 0}, (4096, 0.0)),
        ({"candidate_tokens": 512, "candidate_coverage": 0.5}, (512, 0.5)),
    ],
)
def test_cascade_is_auto_by_default_and_coverage_resolves(options, resolved):
    config = RetrievalConfig(**options)
    assert (config.candidate_tokens, config.effective_candidate_coverage) == resolved


@pytest.mark.parametrize(
    ("candidate_tokens", "input_tokens", "budget"),
    [
        ("auto", 1, None),
        ("auto", AUTO_CASCADE_ABOVE, None),
        ("auto", AUTO_CASCADE_ABOVE + 1, AUTO_CANDIDATE_TOKENS),
        ("auto", 10_000_000, AUTO_CANDIDATE_TOKENS),
        (None, 10_000_000, None),
        (4096, 4096, None),
        (4096, 4097, 4096),
        (100_000, 40_000, None),
    ],
)
def test_candidate_budget_reads_short_inputs_whole(candidate_tokens, input_tokens, budget):
    assert RetrievalConfig(candidate_tokens=candidate_tokens).candidate_budget(input_tokens) == budget


def test_cascade_options_reach_every_adapter_option_list():
    from infiniretri_integrations.core.options import check_overrides, retrieval_option_names, retrieval_overrides
    from infiniretri_integrations.langchain._options import InfiniRetriOptions

    assert {"candidate_tokens", "candidate_coverage"} <= set(retrieval_option_names())
    assert {"candidate_tokens", "candidate_coverage"} <= set(InfiniRetriOptions.model_fields)
    assert check_overrides({"candidate_tokens": 2048, "candidate_coverage": 0.1}) == {
        "candidate_tokens": 2048,
        "candidate_coverage": 0.1,
    }
    with pytest.raises(ValueError, match="candidate_tokens must be a positive integer, 'auto' or None"):
        check_overrides({"candidate_tokens": 0})
    assert check_overrides({"candidate_tokens": "auto"}) == {"candidate_tokens": "auto"}
    # an adapter's option given as None is None (the full read), as on the engine; one left out is the engine's
    assert retrieval_overrides(None, {"candidate_tokens": None}) == {"candidate_tokens": None}
    assert retrieval_overrides(None, {}) == {}
    assert InfiniRetriOptions(candidate_tokens=None).retrieval_options() == {"candidate_tokens": None}
    assert retrieval_overrides(RetrievalConfig(candidate_tokens=None), {})["candidate_tokens"] is None
    assert (
        InfiniRetriOptions(retrieval_config=RetrievalConfig(candidate_tokens=None)).retrieval_options()[
            "candidate_tokens"
        ]
        is None
    )
