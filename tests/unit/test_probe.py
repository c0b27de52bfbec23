"""The attention probe: per-head features captured in the passes, the logistic regression, the
probe file, and the probe ranking the final cut."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from test_selection import PASSAGES  # tests/unit is on the path (rootdir conftest, rootless test folders)

from infiniretri_integrations import InfiniRetriEngine, RetrievalConfig
from infiniretri_integrations.core.attention import capture_question_rows, capturing_heads, question_attention
from infiniretri_integrations.core.probe import (
    AttentionProbe,
    ProbeFileError,
    fit_probe,
    head_features,
    probe_for,
    resolve_probe,
)

ENGINE_OPTIONS = {"chunk_size": 96, "max_sentence_tokens": 48, "similarity": None, "fusion": None}
QUESTION = "Which river crosses eleven countries?"


def _ids(lm, text: str) -> tuple[torch.Tensor, int]:
    context = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    question = lm.tokenizer(" " + QUESTION, add_special_tokens=False)["input_ids"]
    return torch.tensor([context + question]), len(context)


def test_head_features_are_log_densities_per_sentence():
    rows = torch.tensor([[[1.0, 1.0, 2.0, 4.0]], [[0.0, 2.0, 2.0, 4.0]]])  # 2 layers, 1 head, 4 tokens
    features = head_features(rows, [1, 3]).exp() - 1e-3
    # layer 0: mean 2.0 -> densities 0.5, 0.5, 1, 2; layer 1: mean 2.0 -> 0, 1, 1, 2
    expected_means = [[0.5, 0.0], [3.5 / 3, 4 / 3]]
    expected_best = [[0.5, 0.0], [2.0, 2.0]]
    assert torch.allclose(features[:, :2], torch.tensor(expected_means), atol=1e-5)
    assert torch.allclose(features[:, 2:], torch.tensor(expected_best), atol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gemma"])
def test_captured_heads_sum_to_the_scoring_rows(request, fixture):
    """Every head's rows, averaged over the question rows, summed over the heads of the scoring
    layer, equal the scoring layer's own question rows averaged (the same probabilities)."""
    lm = request.getfixturevalue(fixture)
    ids, start = _ids(lm, PASSAGES[:300])
    deepest = lm.num_layers - 2
    with capturing_heads(range(deepest + 1)) as heads:
        rows = question_attention(lm, ids, start, [deepest])
    stacked = heads.stacked()
    assert stacked.shape == (deepest + 1, lm.num_heads, ids.shape[1])
    assert torch.allclose(stacked[deepest].sum(dim=0), rows.mean(dim=0), atol=1e-5)
    per_head = capture_question_rows(lm, ids, start, [1], keep_heads=True)[1]
    assert torch.allclose(stacked[1], per_head.mean(dim=1), atol=1e-5)


def test_layers_past_the_forward_are_named(tiny_llama):
    ids, start = _ids(tiny_llama, PASSAGES[:200])
    with capturing_heads(range(4)) as heads:
        question_attention(tiny_llama, ids, start, [1])
    with pytest.raises(RuntimeError, match=r"layer\(s\) \[2, 3\]"):
        heads.stacked()


def test_fit_probe_separates_and_rejects_one_class():
    torch.manual_seed(0)
    labels = (torch.rand(400) < 0.1).float()
    features = torch.randn(400, 3)
    features[:, 1] += 3.0 * labels  # only feature 1 carries the label
    _, _, weights, _ = fit_probe(features, labels, l2=0.01)
    assert weights.abs().argmax().item() == 1 and weights[1] > 0
    probe = AttentionProbe("m", "f", 1, 1, (0.0,) * 2, (1.0,) * 2, (0.0,) * 2, 0.0)
    assert probe.feature_count == 2
    with pytest.raises(ValueError, match="both classes, got 0 positives among 400"):
        fit_probe(features, torch.zeros(400))


def _probe_file(lm, tmp_path: Path, layers: int, weights: torch.Tensor) -> Path:
    blank = AttentionProbe.blank(lm, layers)
    probe = dataclasses.replace(blank, weights=tuple(weights.tolist()))
    return probe.save(tmp_path / "probe.json")


def test_probe_file_round_trip_and_refusals(tiny_llama, tiny_gemma, tmp_path):
    path = _probe_file(tiny_llama, tmp_path, 2, torch.arange(16, dtype=torch.float32))
    loaded = AttentionProbe.load(path, tiny_llama)
    assert loaded.weights == tuple(float(v) for v in range(16)) and loaded.layers == 2
    with pytest.raises(ProbeFileError, match="made for another model"):
        AttentionProbe.load(path, tiny_gemma)
    data = json.loads(path.read_text())
    data["bias"] = 1.0
    path.write_text(json.dumps(data))
    with pytest.raises(ProbeFileError, match="checksum mismatch"):
        AttentionProbe.load(path)
    with pytest.raises(ProbeFileError, match="unreadable"):
        AttentionProbe.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match=r"needs 16 values each"):
        AttentionProbe("m", "f", 2, 4, (0.0,), (1.0,), (0.0,), 0.0)


def test_probe_ranks_the_final_cut(tiny_llama, tmp_path):
    """With a probe that reads one feature (the mean density under head 3 of layer 1), the kept
    sentences are the best by that feature, whatever attention says."""
    layers, heads = 2, tiny_llama.num_heads
    weights = torch.zeros(2 * layers * heads)
    weights[1 * heads + 3] = 1.0
    path = _probe_file(tiny_llama, tmp_path, layers, weights)
    engine = InfiniRetriEngine(tiny_llama, token_budget=60, scoring_layer=2, **ENGINE_OPTIONS)

    from infiniretri_integrations.evaluation.evidence.probe import record_features
    from infiniretri_integrations.evaluation.evidence_data import EvidenceSample

    sample = EvidenceSample("x", "1", QUESTION, ("a",), PASSAGES, "test")
    record = record_features(engine, sample, layers, 60)
    feature = record["features"].float()[:, 1 * heads + 3]
    result = engine.retrieve([PASSAGES], QUESTION, probe=str(path))
    plain = engine.retrieve([PASSAGES], QUESTION)
    kept = [(s.start, s.end) for s in result.sentences]
    assert kept != [(s.start, s.end) for s in plain.sentences]
    best = max(range(len(feature)), key=lambda i: (feature[i].item(), -i))
    # the scores are reciprocal ranks of the probe's: its best sentence is kept, with the top score
    assert max(result.sentences, key=lambda s: s.score).start == record["spans"][best][0]


def test_retrieve_many_equals_retrieve_with_a_probe(tiny_llama, tmp_path):
    torch.manual_seed(1)
    path = _probe_file(tiny_llama, tmp_path, 3, torch.randn(2 * 3 * tiny_llama.num_heads))
    engine = InfiniRetriEngine(tiny_llama, token_budget=64, scoring_layer=2, probe=str(path), **ENGINE_OPTIONS)
    questions = [QUESTION, "How high is Mount Fuji?", "Where do boats carry tourists?"]
    many = engine.retrieve_many([PASSAGES], questions, batch_size=2)
    for question, result in zip(questions, many, strict=True):
        alone = engine.retrieve([PASSAGES], question)
        assert [(s.start, s.score) for s in result.sentences] == [(s.start, s.score) for s in alone.sentences]


def test_fusion_in_every_pass_still_fuses_the_lexical_signal_with_the_probe():
    """With ``fusion_stage="pass"`` the final cut re-ranks every sentence by the probe: BM25 must
    still count there (as it does with the similarity)."""
    from infiniretri_integrations.core.selection import ProbeRanking, final_selection
    from infiniretri_integrations.core.types import Sentence

    sentences = [Sentence(0, i, i * 10, i * 10 + 9, f"s{i}", (i + 1,)) for i in range(4)]
    probe = ProbeRanking({s: float(-i) for i, s in enumerate(sentences)}, 1.25, 0.25)
    lexical = {s: float(i) for i, s in enumerate(sentences)}  # the reverse order
    cfg = RetrievalConfig(fusion_stage="pass", token_budget=1, similarity=None, tokens_per_pass=None)
    alone = final_selection([], {}, {}, cfg, probe=probe)
    fused = final_selection([], {}, lexical, cfg.replace(fusion_weight=5.0), probe=probe)
    assert [k.sentence for k in alone] == [sentences[0]]
    assert [k.sentence for k in fused] == [sentences[3]]


def test_probe_changes_only_the_final_cut(tiny_llama, tmp_path):
    path = _probe_file(tiny_llama, tmp_path, 2, torch.ones(2 * 2 * tiny_llama.num_heads))
    fed: dict[str, list] = {"on": [], "off": []}
    engine = InfiniRetriEngine(tiny_llama, token_budget=64, scoring_layer=2, **ENGINE_OPTIONS)
    engine.retrieve([PASSAGES], QUESTION, on_forward=fed["on"].append, probe=str(path))
    engine.retrieve([PASSAGES], QUESTION, on_forward=fed["off"].append)
    assert [f.input_ids.tolist() for f in fed["on"]] == [f.input_ids.tolist() for f in fed["off"]]


def test_a_probe_the_call_cannot_feed_is_named(tiny_llama, tmp_path):
    path = str(_probe_file(tiny_llama, tmp_path, 3, torch.ones(2 * 3 * tiny_llama.num_heads)))
    with pytest.raises(
        ValueError, match=r"reads layers 0..2, but the scoring passes stop at layer 1 \(use scoring_layer >= 2\)"
    ):
        probe_for(path, tiny_llama, [1], shared_context=False)
    with pytest.raises(ValueError, match="share_context=True"):
        probe_for(path, tiny_llama, [2], shared_context=True)
    with pytest.raises(ValueError, match="content_free=True"):
        probe_for(path, tiny_llama, [2], shared_context=False, content_free=True)
    engine = InfiniRetriEngine(tiny_llama, scoring_layer=1, **ENGINE_OPTIONS)
    with pytest.raises(ValueError, match="stop at layer 1"):
        engine.retrieve([PASSAGES], QUESTION, probe=path)


def test_auto_without_a_shipped_probe_is_attention_as_read(tiny_llama):
    assert resolve_probe("auto", tiny_llama) is None
    engine = InfiniRetriEngine(tiny_llama, token_budget=64, **ENGINE_OPTIONS)
    auto = engine.retrieve([PASSAGES], QUESTION, probe="auto")
    plain = engine.retrieve([PASSAGES], QUESTION)
    assert [(s.start, s.score) for s in auto.sentences] == [(s.start, s.score) for s in plain.sentences]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"probe": ""}, "probe must be None, 'auto' or the path of a probe file, got ''"),
        ({"probe": 3}, "probe must be None, 'auto' or the path of a probe file, got 3"),
        ({"probe": "p.json", "content_free": True}, "does not combine with content_free=True"),
    ],
)
def test_bad_probe_options_are_named(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RetrievalConfig(**options)


def test_auto_is_left_out_where_it_does_not_fit():
    assert RetrievalConfig(probe="auto", content_free=True).probe == "auto"


def test_a_path_object_is_taken(tmp_path):
    assert RetrievalConfig(probe=tmp_path / "p.json").probe == os.fspath(tmp_path / "p.json")


def test_recorded_loop_serves_probe_variants_exactly(tiny_llama, tmp_path):
    """The evidence benchmark's shared chunk loop gives a probe variant exactly what retrieve gives."""
    from infiniretri_integrations.evaluation.evidence import EvidenceBench
    from infiniretri_integrations.evaluation.evidence_data import EvidenceSample

    torch.manual_seed(2)
    path = str(_probe_file(tiny_llama, tmp_path, 3, torch.randn(2 * 3 * tiny_llama.num_heads)))
    options = {"chunk_size": 96, "max_sentence_tokens": 48, "similarity_layer": 2, "scoring_layer": 2}
    bench = EvidenceBench(tiny_llama, engine_options=options)
    sample = EvidenceSample("leval", "doc", QUESTION, ("x",), PASSAGES, "test")
    for variant in ({"probe": path}, {"probe": path, "fusion": None, "similarity": None}, {}):
        sentences, _, _ = bench.final_variant(sample, 120, variant)
        expected = bench.engine.retrieve([PASSAGES], sample.question, token_budget=120, **variant)
        assert [(s.start, s.end, s.score) for s in sentences] == [(s.start, s.end, s.score) for s in expected.sentences]
