"""The cascade (``candidate_tokens``) on the real packaged model: a needle far beyond the candidate
budget is found and answered while the model reads a fraction of the input, and the default
(``"auto"``) reads a candidate set of an input over its threshold."""

from __future__ import annotations

import pytest

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.benchmark_cascade import build_text, make_needles
from infiniretri_integrations.core.config import AUTO_CANDIDATE_TOKENS, AUTO_CASCADE_ABOVE
from infiniretri_integrations.evaluation.niah import answer_has_facts, build_case, load_haystack, needle_retrieved

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def haystack() -> str:
    from tests.conftest import SHARED_DATA

    essays = SHARED_DATA / "niah_paulgraham" / "PaulGrahamEssays"
    return load_haystack(essays if essays.is_dir() else None)


@pytest.mark.parametrize("depth", [30, 80])
def test_needle_at_32k_found_reading_4096_candidate_tokens(real_lm, haystack, depth):
    case = build_case(haystack, real_lm.tokenizer, 32_000, depth)
    engine = InfiniRetriEngine(real_lm, candidate_tokens=4096)
    result = engine.retrieve([case.text], case.question)
    stats = result.stats
    assert stats.input_tokens > 30_000
    assert 0 < stats.tokens_read <= 4096 < stats.input_tokens // 7
    assert stats.chunks == 1
    assert needle_retrieved([s.text for s in result.sentences], case.needle)
    for s in result.sentences:
        assert case.text[s.start : s.end] == s.text
    answer = engine.answer_from(result, case.question, max_new_tokens=48)
    assert answer_has_facts(answer.text), answer.text


def test_multikey_needles_kept_by_the_default_cascade_of_a_long_input(real_lm, haystack):
    needles = make_needles(4)
    text = build_text(haystack, real_lm.tokenizer, 70_000, needles)
    assert all(sentence in text for sentence in needles.sentences)
    result = InfiniRetriEngine(real_lm).retrieve([text], needles.question)  # candidate_tokens="auto"
    kept = " ".join(s.text for s in result.sentences)
    assert result.stats.input_tokens > AUTO_CASCADE_ABOVE
    assert 0 < result.stats.tokens_read <= AUTO_CANDIDATE_TOKENS
    assert sum(value in kept for value in needles.values) >= 3, kept[:2000]
