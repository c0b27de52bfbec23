"""Answers that end (issue #13 item 2): the pure text rules of core.generation, and the shared
adapter helpers of core.outputs and core.options (spans, ids, best-k selection, score scale, option checks)."""

from __future__ import annotations

import random

import pytest

from infiniretri_integrations.core.generation import DEFAULT_STOP, clean_answer
from infiniretri_integrations.core.options import check_overrides, retrieval_overrides
from infiniretri_integrations.core.outputs import keep_best, output_id, select_outputs
from infiniretri_integrations.core.types import RetrievedSentence


@pytest.mark.parametrize(
    ("raw", "expected", "reason"),
    [
        ("  The answer is: Bob lives in Rome.  ", "Bob lives in Rome.", None),
        ("Answer: Rome", "Rome", None),
        ("The answer is: The answer is: The answer is: The answer is:", "", None),
        ("The answer is: Answer: Rome.", "Rome.", None),
        ("Rome. Rome. Rome. Rome. Rome. Rome. Rome. Rome. Rome. Rome.", "Rome.", "repetition"),
        ("The answer is Rome.", "The answer is Rome.", None),  # no colon: a sentence, not an echo
        ("Rome.\nQuestion: and Paris?", "Rome.", "stop"),
        ("Rome.<|im_end|>", "Rome.<|im_end|>", None),
        ("Eat a sandwich in Dolores Park.\n\nThe answer is:", "Eat a sandwich in Dolores Park.", None),
        (
            "Rome. Answer: it is Rome.",
            "Rome. Answer: it is Rome.",
            None,
        ),  # an echo followed by text stays  # special tokens are removed at decode time
    ],
)
def test_clean_answer(raw: str, expected: str, reason: str | None) -> None:
    assert clean_answer(raw) == (expected, reason)


def test_user_stop_strings_cut_the_answer() -> None:
    assert clean_answer("Bob lives in Rome. Alice too.", stop=(*DEFAULT_STOP, " Alice")) == (
        "Bob lives in Rome.",
        "stop",
    )


def _stream(raw: str, stop: tuple[str, ...]) -> str:
    """What stream_generate shows for ``raw`` arriving in random pieces."""
    rng = random.Random(len(raw))
    shown, so_far, position = "", "", 0
    while position < len(raw):
        step = rng.randint(1, 6)
        so_far += raw[position : position + step]
        position += step
        visible, reason = clean_answer(so_far, stop, final=False)
        assert visible.startswith(shown), (so_far, visible, shown)
        shown = visible
        if reason is not None:
            break
    final, _ = clean_answer(so_far, stop)
    assert final.startswith(shown)
    return final


@pytest.mark.parametrize(
    "raw",
    [
        " The answer is: Bob lives in Rome. He drinks coffee every morning near the Colosseum.",
        "Answer:\n\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park.",
        "Bob lives in Rome. Bob lives in Rome. Bob lives in Rome. Bob lives in Rome.",
        "Rome, Italy.\n\nQuestion:\n\nWhere does Alice live?\n\nAnswer: Paris.",
        "The answ",
        "Rome\nQuest",
        "The best thing to do is eat a sandwich.\n\nThe answer is:",
        "Eat a sandwich. Answer: in Dolores Park. The answer is: sit there.",
    ],
)
def test_streamed_text_is_the_blocking_text(raw: str) -> None:
    assert _stream(raw, DEFAULT_STOP) == clean_answer(raw, DEFAULT_STOP)[0]


def _sentence(score: float, document: int, index: int, start: int = 0) -> RetrievedSentence:
    return RetrievedSentence(f"s{document}.{index}", score, document, f"d{document}", index, start, start + 4, 1)


def test_keep_best_and_thresholds() -> None:
    sentences = [_sentence(1.0, 0, 0), _sentence(5.0, 0, 1), _sentence(3.0, 1, 0), _sentence(4.0, 2, 0)]
    assert [s.text for s in keep_best(sentences, 2, "sentence")] == ["s0.1", "s2.0"]  # best two, document order
    assert [s.text for s in keep_best(sentences, 1, "document")] == ["s0.0", "s0.1"]
    kept, scale = select_outputs(sentences, None, "sentence", normalize_scores=True, score_threshold=0.7)
    assert scale is not None and [s.text for s in kept] == ["s0.1", "s2.0"]
    assert scale(5.0) == 1.0 and scale(1.0) == 0.0 and scale(3.0) == pytest.approx(0.5)  # min-max per query
    kept, scale = select_outputs(sentences, None, "sentence", score_threshold=3.5)
    assert scale is None and [s.text for s in kept] == ["s0.1", "s2.0"]


def test_output_ids_and_option_checks() -> None:
    assert output_id("doc", 3, 9) == "doc:3-9" and output_id(None, 3, 9) is None
    assert check_overrides({"tokens_per_pass": 40}) == {"tokens_per_pass": 40}
    with pytest.warns(DeprecationWarning, match="'top_k' is deprecated"):
        assert check_overrides({"top_k": 40}) == {"tokens_per_pass": 40}
    with pytest.raises(TypeError, match=r"\['topk'\].*tokens_per_pass"):
        check_overrides({"topk": 4})
    with pytest.raises(ValueError, match="same option"), pytest.warns(DeprecationWarning):
        check_overrides({"tokens_per_pass": 40, "top_k": 30})
    with pytest.raises(TypeError, match="max_new_tokens is an answer option"):
        check_overrides({"max_new_tokens": 5}, owner="InfiniRetriNodePostprocessor")
    from infiniretri_integrations.core.config import RetrievalConfig

    merged = retrieval_overrides(RetrievalConfig(tokens_per_pass=10), {"tokens_per_pass": 40, "chunk_size": None})
    assert merged["tokens_per_pass"] == 40 and merged["chunk_size"] == RetrievalConfig().chunk_size
