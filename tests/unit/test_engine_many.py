"""Several questions over the same documents (``retrieve_many``) and cancellation, on the tiny model."""

from __future__ import annotations

import threading

import pytest
import torch

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.core.types import ForwardPass, RetrievalCancelled

QUESTIONS = [
    "Which module handles regular expressions?",
    "How do I read a CSV file?",
    "What does the json module do?",
    "How are dates formatted?",
    "Which function sorts a list?",
]


@pytest.fixture
def engine(tiny_llama):
    assert tiny_llama.model.dtype == torch.float32
    return InfiniRetriEngine(tiny_llama, chunk_size=256, tokens_per_pass=40, max_sentence_tokens=64)


@pytest.fixture
def haystack(stdlib_haystack):
    return stdlib_haystack[:12_000]


def _summary(result):
    return [(s.document_index, s.sentence_index, s.start, s.end) for s in result.sentences], [
        s.score for s in result.sentences
    ]


@pytest.mark.parametrize("batch_size", [1, 2, 5, None])
@pytest.mark.parametrize(
    "options", [{}, {"fusion": None}, {"token_budget": 120, "tokens_per_pass": None}, {"content_free": True}]
)
def test_many_equals_one_call_per_question(engine, haystack, batch_size, options):
    if options.get("content_free") and batch_size is not None:
        pytest.skip(
            "batch_size does not apply with content_free (see test_batch_size_is_refused_where_it_does_nothing)"
        )
    many = engine.retrieve_many(
        [haystack, "A second document. It is short."], QUESTIONS, batch_size=batch_size, **options
    )
    assert [r.question for r in many] == QUESTIONS
    assert many[0].stats.chunks > 3  # the rolling cache is exercised
    for question, result in zip(QUESTIONS, many, strict=True):
        single = engine.retrieve([haystack, "A second document. It is short."], question, **options)
        spans, scores = _summary(result)
        expected_spans, expected_scores = _summary(single)
        assert spans == expected_spans
        assert scores == pytest.approx(expected_scores, rel=1e-4, abs=1e-6)
        assert result.stats.kept_tokens == single.stats.kept_tokens


def test_batched_forward_runs_once_per_chunk_and_group(engine, haystack):
    passes: list[ForwardPass] = []
    results = engine.retrieve_many(haystack, QUESTIONS[:4], batch_size=4, on_forward=passes.append)
    chunks = results[0].stats.chunks
    assert len(passes) == 4 * chunks  # one hook call per question per pass
    assert {p.input_ids.shape[1] % 64 for p in passes} == {0}  # shape-bucketed rows of one padded batch


def test_shared_context_keeps_valid_spans_and_finds_a_planted_fact(engine, haystack):
    fact = "The secret harbour code is PELICAN-42."
    cut = haystack.index(
        "\n\n", 6000
    )  # the fact as its own passage: BM25 indexes it with no other passage's first line
    text = haystack[:cut] + "\n\n" + fact + haystack[cut:]
    questions = ["What is the secret harbour code?", *QUESTIONS[:3]]
    shared = engine.retrieve_many(
        text, questions, share_context=True, token_budget=200, tokens_per_pass=None, fusion_weight=20.0
    )
    assert len(shared) == len(questions)
    for result in shared:
        assert 0 < result.stats.kept_tokens <= 200
        for sentence in result.sentences:
            assert text[sentence.start : sentence.end] == sentence.text
        order = [(s.document_index, s.sentence_index) for s in result.sentences]
        assert order == sorted(order)
    # every sentence of the input reaches the final fusion of every question (the random model's
    # attention is noise; the lexical signal, weighted up, must then find the fact)
    assert any("PELICAN-42" in s.text for s in shared[0].sentences)
    assert not any("PELICAN-42" in s.text for s in shared[2].sentences)


def test_shared_context_encodes_the_context_once_per_pass(engine, haystack, monkeypatch):
    from infiniretri_integrations.core import passes as passes_module

    calls: list[int] = []
    original = passes_module.shared_prefix_attention

    def counting(lm, prefix, suffixes, layers, heads=None):
        calls.append(len(suffixes))
        return original(lm, prefix, suffixes, layers, heads)

    monkeypatch.setattr(passes_module, "shared_prefix_attention", counting)
    results = engine.retrieve_many(haystack, QUESTIONS, share_context=True)
    assert calls == [len(QUESTIONS)] * results[0].stats.chunks


def test_many_input_errors(engine):
    with pytest.raises(TypeError, match="use retrieve\\(\\) for one question"):
        engine.retrieve_many(["Text."], "one question?")
    with pytest.raises(ValueError, match="question must be a non-empty string, got ''"):
        engine.retrieve_many(["Text."], ["Fine?", ""])
    with pytest.raises(ValueError, match="batch_size must be a positive integer or None, got 0"):
        engine.retrieve_many(["Text."], ["Q?"], batch_size=0)
    assert engine.retrieve_many(["Text."], []) == []


def test_cancel_stops_before_the_next_pass_and_the_engine_stays_usable(engine, haystack, tiny_llama):
    expected = _summary(engine.retrieve(haystack, QUESTIONS[0]))
    cancel = threading.Event()
    seen: list[int] = []

    def progress(p, _cache):
        seen.append(p.chunk_index)
        if p.chunk_index == 1:
            cancel.set()

    with pytest.raises(RetrievalCancelled, match="cancelled before pass 3 of"):
        engine.retrieve(haystack, QUESTIONS[0], on_progress=progress, cancel=cancel)
    assert seen == [0, 1]
    assert tiny_llama.lock.acquire(timeout=1)
    tiny_llama.lock.release()
    assert _summary(engine.retrieve(haystack, QUESTIONS[0])) == expected
    with pytest.raises(RetrievalCancelled):
        engine.retrieve_many(haystack, QUESTIONS, cancel=cancel)


def test_default_batch_size_is_one_on_a_cpu(engine, haystack, monkeypatch):
    from infiniretri_integrations.core import passes as passes_module

    batches: list[int] = []
    original = passes_module.batched_question_attention

    def counting(lm, input_ids, spans, layers, heads=None):
        batches.append(input_ids.shape[0])
        return original(lm, input_ids, spans, layers, heads)

    monkeypatch.setattr(passes_module, "batched_question_attention", counting)
    engine.retrieve_many(haystack[:3000], QUESTIONS[:3])
    assert batches == []  # CPU: one question's pass at a time (batching saves nothing there)
    results = engine.retrieve_many(haystack[:3000], QUESTIONS[:3], batch_size=2)
    assert batches == [2, 1] * results[0].stats.chunks


@pytest.mark.parametrize("options", [{"share_context": True}, {"content_free": True}])
def test_batch_size_is_refused_where_it_does_nothing(engine, options):
    name = next(iter(options))
    with pytest.raises(ValueError, match=rf"batch_size=2 does not apply with {name}"):
        engine.retrieve_many("Some text. More text.", QUESTIONS[:2], batch_size=2, **options)
