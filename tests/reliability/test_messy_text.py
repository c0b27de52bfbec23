"""Issue #14 item 6: lone surrogates in the question or in a kept sentence reach the tokenizer
cleaned (as documents already are), in retrieval and in answering (tiny model)."""

from __future__ import annotations

from infiniretri_integrations import InfiniRetriEngine

JUNK = "bad\udc80bytes"


def test_surrogates_in_question_and_kept_sentences(tiny_llama):
    engine = InfiniRetriEngine(tiny_llama, tokens_per_pass=8, max_new_tokens=4)
    text = f"The code is 4812. Some {JUNK} here. More text follows."
    result = engine.retrieve(text, f"What is the {JUNK} code?", token_budget=10_000)
    assert any(JUNK in s.text for s in result.sentences)  # spans and texts keep the original characters
    assert result.question == "What is the bad\ufffdbytes code?"
    assert isinstance(engine.answer_from(result).text, str)
    assert isinstance("".join(engine.stream_from(result)), str)
    assert isinstance(engine.answer_from(f"context {JUNK}", f"question {JUNK}?").text, str)
