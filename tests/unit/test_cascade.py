"""The cascade (``candidate_tokens``): the candidate choice as pure functions, then the engine reading
only the candidates, on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from infiniretri_integrations import InfiniRetriEngine, SourceDocument
from infiniretri_integrations.core import lexical
from infiniretri_integrations.core.cascade import candidate_indices, candidate_sentences, coverage_windows
from infiniretri_integrations.core.config import AUTO_CANDIDATE_TOKENS, AUTO_CASCADE_ABOVE
from infiniretri_integrations.core.types import ForwardPass, Sentence

NEEDLE = " The secret password of the zebrafish archive is quartz marigold."
ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What is the secret password of the zebrafish archive?"


# ------------------------------------------------------------------------------ the choice
def _input(count: int = 200, size: int = 10, documents: int = 4) -> tuple[list[int], list[int]]:
    per = count // documents
    return [size] * count, [i // per for i in range(count)]


@pytest.mark.parametrize("budget", [35, 100, 333, 1000])
@pytest.mark.parametrize("coverage", [0.0, 0.25, 0.9])
def test_candidates_fit_the_budget_in_document_order(budget, coverage):
    sizes, docs = _input()
    sizes = [5 + (i * 7) % 23 for i in range(len(sizes))]
    scores = [float((i * 37) % 11) for i in range(len(sizes))]
    chosen = candidate_indices(sizes, docs, scores, budget, coverage)
    assert chosen == sorted(set(chosen)), "ascending, no repeats"
    assert sum(sizes[i] for i in chosen) <= budget
    assert sum(sizes[i] for i in chosen) > budget - 2 * max(sizes) - 128, "the budget is (nearly) filled"


def test_an_input_that_fits_is_read_whole():
    sizes, docs = _input(20)
    assert candidate_indices(sizes, docs, [0.0] * 20, sum(sizes), 0.25) == list(range(20))


def test_best_sentences_come_with_one_neighbour_each_side_within_their_document():
    sizes, docs = _input(40, documents=2)  # documents start at 0 and 20
    scores = [0.0] * 40
    scores[7], scores[20], scores[30] = 5.0, 4.0, 3.0
    chosen = candidate_indices(sizes, docs, scores, 90, 0.0)
    assert chosen == [0, 6, 7, 8, 20, 21, 29, 30, 31]  # not 19: it belongs to the other document
    assert sum(sizes[i] for i in chosen) <= 90


def test_higher_scores_win_when_the_budget_is_short():
    sizes, docs = _input(40, documents=1)
    scores = [0.0] * 40
    scores[10], scores[30] = 1.0, 9.0
    chosen = candidate_indices(sizes, docs, scores, 40, 0.0)
    assert chosen == [0, 29, 30, 31]


def test_every_document_gets_its_first_sentence():
    sizes, docs = _input(100, documents=5)
    scores = [0.0] * 100
    scores[55] = 1.0
    chosen = candidate_indices(sizes, docs, scores, 150, 0.25)
    assert {0, 20, 40, 60, 80} <= set(chosen)


def test_coverage_windows_spread_evenly_without_any_lexical_match():
    sizes, docs = _input(400, documents=1)  # 4,000 tokens, no sentence scores
    chosen = candidate_indices(sizes, docs, [0.0] * 400, 1000, 0.25, window=50)
    quarters = [sum(1 for i in chosen if q * 100 <= i < (q + 1) * 100) for q in range(4)]
    assert min(quarters) >= 20, quarters
    assert coverage_windows([10] * 100, 60, window=20) == [16, 17, 50, 51, 83, 84]


def test_coverage_share_goes_to_windows_before_the_lexical_hits():
    sizes, docs = _input(400, documents=1)
    scores = [0.0] * 400
    for i in range(100, 200):  # many matches, all in the second quarter
        scores[i] = 1.0 + i / 1000
    lexical_only = candidate_indices(sizes, docs, scores, 500, 0.0, window=50)
    covered = candidate_indices(sizes, docs, scores, 500, 0.5, window=50)
    outside = [i for i in covered if not 99 <= i <= 200 and i != 0]
    assert [i for i in lexical_only if not 99 <= i <= 200 and i != 0] == []
    assert sum(sizes[i] for i in outside) >= 150  # most of the 250-token share lands elsewhere


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([10, 10], [0, 0], [1.0], 10, 0.2), "one entry per sentence"),
        (([10, 10], [0, 0], [1.0, 0.0], 0, 0.2), "budget must be a positive number of tokens, got 0"),
        (([10, 10], [0, 0], [1.0, 0.0], 10, 1.0), r"coverage must be in \[0, 1\), got 1.0"),
    ],
)
def test_choice_errors_name_the_value(args, message):
    with pytest.raises(ValueError, match=message):
        candidate_indices(*args)


def test_candidate_sentences_are_the_inputs_own_objects():
    sentences = [Sentence(i // 5, i % 5, 3 * i, 3 * i + 3, "ab.", (1, 2, 3)) for i in range(20)]
    scores = [0.0] * 20
    scores[12] = 2.0
    chosen = candidate_sentences(sentences, scores, 24, 0.0)
    assert all(any(c is s for s in sentences) for c in chosen)
    keys = [(c.document_index, c.sentence_index) for c in chosen]
    assert keys == [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (3, 0)]
    assert [(c.start, c.end) for c in chosen] == [(0, 3), (15, 18), (30, 33), (33, 36), (36, 39), (39, 42), (45, 48)]


# ------------------------------------------------------------------------------ the engine
@pytest.fixture
def engine(tiny_llama):
    assert tiny_llama.model.dtype == torch.float32
    return InfiniRetriEngine(tiny_llama, chunk_size=256, tokens_per_pass=40, max_sentence_tokens=64)


@pytest.fixture
def documents(stdlib_haystack):
    body = stdlib_haystack[:20_000]
    middle = body.index(". ", len(body) // 2) + 1
    return [
        SourceDocument(body[:middle] + NEEDLE + body[middle:], id="stdlib", metadata={"source": "docstrings"}),
        SourceDocument("Zebrafish are small fish. They live in rivers of India.", id="fish", metadata={"n": 2}),
    ]


def _summary(result):
    return [(s.document_index, s.sentence_index, s.start, s.end, s.score) for s in result.sentences]


def test_short_inputs_are_read_whole_by_default_as_with_the_cascade_off(engine, documents):
    fed_default: list[ForwardPass] = []
    plain = engine.retrieve(documents, QUESTION, on_forward=fed_default.append)
    assert engine.config.candidate_tokens == "auto"
    assert plain.stats.input_tokens <= AUTO_CASCADE_ABOVE
    assert plain.stats.tokens_read == plain.stats.input_tokens
    for candidate_tokens in (plain.stats.input_tokens, None):
        fed: list[ForwardPass] = []
        whole = engine.retrieve(documents, QUESTION, candidate_tokens=candidate_tokens, on_forward=fed.append)
        assert _summary(whole) == _summary(plain)
        assert [p.input_ids.tolist() for p in fed] == [p.input_ids.tolist() for p in fed_default]
        assert whole.stats.tokens_read == plain.stats.input_tokens


def test_auto_reads_a_candidate_set_of_inputs_over_the_threshold(tiny_llama, stdlib_haystack, caplog):
    engine = InfiniRetriEngine(tiny_llama, chunk_size=2048, tokens_per_pass=40, max_sentence_tokens=64)
    text = stdlib_haystack
    while len(engine.scoring_local_model.tokenizer(text)["input_ids"]) <= AUTO_CASCADE_ABOVE:
        text += "\n\n" + stdlib_haystack
    middle = text.index(". ", len(text) // 2) + 1
    long_document = [SourceDocument(text[:middle] + NEEDLE + text[middle:], id="long")]
    with caplog.at_level("INFO", logger="infiniretri_integrations"):
        auto = engine.retrieve(long_document, QUESTION)
    assert auto.stats.input_tokens > AUTO_CASCADE_ABOVE
    assert 0 < auto.stats.tokens_read <= AUTO_CANDIDATE_TOKENS
    assert f"the cascade reads {AUTO_CANDIDATE_TOKENS} candidate tokens (candidate_tokens='auto'" in caplog.text
    explicit = engine.retrieve(long_document, QUESTION, candidate_tokens=AUTO_CANDIDATE_TOKENS)
    assert _summary(explicit) == _summary(auto)
    assert explicit.stats.tokens_read == auto.stats.tokens_read


def test_the_cascade_reads_only_candidates_within_budget(engine, documents):
    fed: list[ForwardPass] = []
    plain = engine.retrieve(documents, QUESTION)
    result = engine.retrieve(documents, QUESTION, candidate_tokens=1024, fusion_weight=20.0, on_forward=fed.append)
    stats = result.stats
    assert stats.input_tokens == plain.stats.input_tokens
    assert 0 < stats.tokens_read <= 1024 < stats.input_tokens
    assert stats.chunks == len(fed) < plain.stats.chunks
    assert set(stats.stage_seconds) == {"segment", "lexical", "similarity", "candidates", "passes"}
    assert stats.stage_seconds["passes"] > 0
    # the needle is a candidate, read by a pass, and (fused with BM25, weighted over the random attention) kept
    needle_ids = engine.local_model.tokenizer(NEEDLE, add_special_tokens=False)["input_ids"][2:8]
    assert any(_contains(p.input_ids[0, : p.length].tolist(), needle_ids) for p in fed)
    assert any("quartz marigold" in s.text for s in result.sentences)


def test_kept_sentences_keep_their_true_offsets_order_and_metadata(engine, documents):
    result = engine.retrieve(documents, QUESTION, candidate_tokens=600, candidate_coverage=0.5)
    keys = [(s.document_index, s.sentence_index) for s in result.sentences]
    assert keys == sorted(keys)
    assert result.sentences
    for s in result.sentences:
        source = documents[s.document_index]
        assert source.text[s.start : s.end] == s.text
        assert s.document_id == source.id
        assert s.metadata == source.metadata
    assert max(s.start for s in result.sentences if s.document_index == 0) > 1000  # offsets, not candidate positions


def test_fusion_off_still_ranks_candidates_by_bm25(engine, documents):
    result = engine.retrieve(documents, QUESTION, candidate_tokens=1024, fusion=None)
    assert result.stats.tokens_read <= 1024
    assert all(documents[s.document_index].text[s.start : s.end] == s.text for s in result.sentences)


def test_retrieve_many_builds_one_lexical_index_and_equals_single_calls(engine, documents, monkeypatch):
    questions = [QUESTION, "Which module handles regular expressions?", "Where do zebrafish live?"]
    built = []
    original = lexical.LEXICAL_SIGNALS["bm25"]

    def counting(sentences):
        built.append(len(sentences))
        return original(sentences)

    monkeypatch.setitem(lexical.LEXICAL_SIGNALS, "bm25", counting)
    many = engine.retrieve_many(documents, questions, candidate_tokens=800)
    assert len(built) == 1
    for question, result in zip(questions, many, strict=True):
        single = engine.retrieve(documents, question, candidate_tokens=800)
        assert [x[:4] for x in _summary(result)] == [x[:4] for x in _summary(single)]
        assert [x[4] for x in _summary(result)] == pytest.approx([x[4] for x in _summary(single)], rel=1e-4)
        assert result.stats.tokens_read == single.stats.tokens_read <= 800
    assert len(built) == 1 + len(questions)


def test_shared_context_reads_the_union_of_the_candidate_sets(engine, documents):
    questions = [QUESTION, "Which module handles regular expressions?"]
    shared = engine.retrieve_many(documents, questions, candidate_tokens=500, share_context=True)
    alone = [engine.retrieve(documents, q, candidate_tokens=500).stats.tokens_read for q in questions]
    assert max(alone) <= shared[0].stats.tokens_read <= sum(alone)
    assert shared[0].stats.tokens_read == shared[1].stats.tokens_read


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"candidate_tokens": 0}, "candidate_tokens must be a positive integer, 'auto' or None .*got 0"),
        (
            {"candidate_tokens": None, "candidate_coverage": 0.3},
            "candidate_coverage=0.3 applies only with candidate_tokens",
        ),
        ({"candidate_tokens": 512, "candidate_coverage": 1}, r"candidate_coverage must be a number in \[0, 1\)"),
    ],
)
def test_per_call_errors_name_the_value(engine, documents, options, message):
    with pytest.raises(ValueError, match=message):
        engine.retrieve(documents, QUESTION, **options)


def _contains(sequence: list[int], part: list[int]) -> bool:
    return any(sequence[i : i + len(part)] == part for i in range(len(sequence) - len(part) + 1))


# ------------------------------------------------------------------------------ the benchmark command
def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "infiniretri_integrations.benchmark_cascade", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
        check=False,
    )


def test_benchmark_command_writes_cascade_and_full_rows(tiny_llama_folder, tmp_path):
    out = tmp_path / "bench.json"
    run = _bench(
        "--model", str(tiny_llama_folder), "--lengths", "3K", "--full-up-to", "3K", "--candidate-tokens", "1024",
        "--chunk-sizes", "default,512", "--needles", "2", "--no-answer", "--json", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == ["cascade", "cascade[chunk=512]", "full"]
    cascade, small, full = rows
    assert cascade["tokens_read"] <= 1024 < full["tokens_read"] == full["input_tokens"]
    assert small["chunks"] > cascade["chunks"]
    assert set(cascade["stage_shares"]) == {"segment", "lexical", "similarity", "candidates", "passes"}
    assert "full/cascade" in run.stdout


def test_benchmark_command_refuses_a_bad_length():
    run = _bench("--lengths", "lots")
    assert run.returncode != 0
    assert "got 'lots'" in run.stderr
