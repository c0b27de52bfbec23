"""Query-focused heads: ``(layer, head)`` pairs as ``scoring_heads``, and choosing them on labelled
examples (QRHead). Tiny random models; the packaged model in tests/integration/test_real_model.py."""

from __future__ import annotations

import pytest
import torch

from infiniretri_integrations import InfiniRetriEngine, RetrievalConfig
from infiniretri_integrations.core.attention import (
    batched_question_attention,
    capture_question_rows,
    heads_by_layer,
    question_attention,
    shared_prefix_attention,
)
from infiniretri_integrations.core.calibration import EvidenceExample, HeadRanking, evidence_share, query_focused_heads
from infiniretri_integrations.core.calibration.heads import evidence_tokens
from infiniretri_integrations.core.config import normalize_heads
from infiniretri_integrations.core.types import ForwardPass

PAIRS = ((2, 1), (0, 3), (2, 0))
TEXT = (
    "The harbour opened in 1850. Fishing boats left every morning. "
    "The lighthouse keeper was named Ada Byrne. She kept the lamp lit for forty years. "
    "Tourists now visit the museum near the pier. "
) * 3


def _ids(lm, length: int = 120, seed: int = 3) -> torch.Tensor:
    return torch.randint(0, 1000, (1, length), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ the spec
def test_config_accepts_pairs_and_indices():
    assert RetrievalConfig(scoring_heads=[[18, 3], [15, 0]]).scoring_heads == ((18, 3), (15, 0))
    assert RetrievalConfig(scoring_heads=[3, 0]).scoring_heads == (3, 0)
    assert RetrievalConfig(scoring_heads=[(-1, 2)]).scoring_heads == ((-1, 2),)


@pytest.mark.parametrize("bad", [[], [-1], [(1, 2, 3)], [(1, -2)], [(1, 2), 3], ["a"], [True], "12"])
def test_config_rejects_bad_heads_naming_the_value(bad):
    with pytest.raises(ValueError, match="scoring_heads must be") as error:
        RetrievalConfig(scoring_heads=bad)
    assert repr(bad) in str(error.value)
    with pytest.raises(ValueError):
        normalize_heads(bad)


def test_heads_by_layer_checks_layers_and_range():
    assert heads_by_layer(None, [1, 2], 4) is None
    with pytest.raises(ValueError, match=r"layers without a head: \[1\]"):
        heads_by_layer([(2, 0)], [1, 2], 4)
    with pytest.raises(ValueError, match=r"heads outside them: \[5\]"):
        heads_by_layer([(2, 0), (5, 1)], [2], 4)
    with pytest.raises(ValueError, match=r"scoring_heads \[4\] out of range for a model with 4 heads"):
        heads_by_layer([(2, 4)], [2], 4)


@pytest.mark.parametrize("kind", ["tiny_llama", "tiny_gemma"])
def test_pairs_sum_exactly_the_chosen_heads_of_each_layer(kind, request):
    lm = request.getfixturevalue(kind)
    ids, start = _ids(lm), 110
    per_head = capture_question_rows(lm, ids, start, [0, 2], keep_heads=True)
    expected = per_head[2][1] + per_head[0][3] + per_head[2][0]
    torch.testing.assert_close(question_attention(lm, ids, start, [0, 2], PAIRS), expected)
    (batched,) = batched_question_attention(lm, ids, [(start, ids.shape[1])], [0, 2], PAIRS)
    torch.testing.assert_close(batched, expected)
    (shared,) = shared_prefix_attention(lm, ids[:, :start], [ids[:, start:]], [0, 2], PAIRS)
    torch.testing.assert_close(shared, expected, atol=1e-6, rtol=1e-5)
    all_heads = question_attention(lm, ids, start, [0, 2])
    assert not torch.allclose(all_heads, expected)


def test_engine_scores_with_the_pairs_layers(tiny_llama, monkeypatch):
    engine = InfiniRetriEngine(tiny_llama, chunk_size=96, tokens_per_pass=8, scoring_heads=[(2, 1), (-4, 3)])
    assert engine.scoring_setup() == ((0, 2), ((2, 1), (0, 3)))
    seen: list[tuple[object, ...]] = []
    import infiniretri_integrations.core.passes as engine_module

    original = engine_module.question_attention

    def spy(lm, input_ids, row_start, layers, heads=None):
        seen.append((tuple(layers), heads))
        return original(lm, input_ids, row_start, layers, heads)

    monkeypatch.setattr(engine_module, "question_attention", spy)
    forwards: list[ForwardPass] = []
    result = engine.retrieve(TEXT, "Who kept the lighthouse?", on_forward=forwards.append)
    assert result.sentences
    assert seen and all(call == ((0, 2), ((2, 1), (0, 3))) for call in seen)
    assert all(f.layers == (0, 2) for f in forwards)


def test_engine_rejects_pairs_that_contradict_scoring_layer(tiny_llama):
    engine = InfiniRetriEngine(tiny_llama, scoring_layer=1, scoring_heads=[(2, 0)])
    with pytest.raises(ValueError, match=r"score layers \[2\], but scoring_layer is 1"):
        engine.retrieve(TEXT, "Who kept the lighthouse?")
    agreeing = InfiniRetriEngine(tiny_llama, scoring_layer=2, scoring_heads=[(2, 0)])
    assert agreeing.scoring_setup() == ((2,), ((2, 0),))


def test_auto_applies_calibrated_head_pairs(tiny_llama, monkeypatch):
    import infiniretri_integrations.core.calibration as calibration

    monkeypatch.setattr(calibration, "calibrated_scoring", lambda lm: (1, ((2, 1), (1, 0))))
    engine = InfiniRetriEngine(tiny_llama, scoring_layer="auto")
    assert engine.scoring_setup() == ((1, 2), ((2, 1), (1, 0)))


# ------------------------------------------------------------------------------ choosing heads
def test_evidence_share_on_a_hand_made_case():
    # 2 heads, 1 question row, keys: [prompt, ctx0, ctx1, ctx2, question]
    rows = torch.tensor([[[0.5, 0.1, 0.3, 0.1, 0.0]], [[0.0, 0.25, 0.25, 0.5, 0.0]]])
    evidence = torch.tensor([False, True, False])
    share = evidence_share(rows, slice(1, 4), evidence)
    assert share.tolist() == pytest.approx([0.6, 0.25])


def test_evidence_tokens_marks_overlapping_tokens():
    assert evidence_tokens([(0, 3), (3, 7), (7, 9)], [(4, 5)]).tolist() == [False, True, False]
    assert evidence_tokens([(0, 3), (3, 7)], [(0, 3), (7, 9)]).tolist() == [True, False]


def test_query_focused_heads_matches_a_manual_share(tiny_llama):
    start = TEXT.index("The lighthouse")
    example = EvidenceExample(TEXT, "Who kept the lighthouse?", ((start, TEXT.index("She kept")),))
    ranking = query_focused_heads(tiny_llama, [example, example], layers=[0, 2])
    assert ranking.layers == (0, 2) and ranking.examples == 2
    assert len(ranking.scores) == 2 and all(len(row) == tiny_llama.num_heads for row in ranking.scores)
    assert 0 < ranking.uniform < 1
    # the same share, computed by hand for layer 2 head 1
    from infiniretri_integrations.core.prompting import build_layout

    encoded = tiny_llama.tokenizer(TEXT, add_special_tokens=False, return_offsets_mapping=True)
    layout = build_layout(tiny_llama.tokenizer, RetrievalConfig(), example.question)
    ids, context_start, context_end, question_start = layout.assemble(list(encoded["input_ids"]))
    rows = capture_question_rows(tiny_llama, torch.tensor([ids]), question_start, [2], keep_heads=True)[2][1]
    mask = evidence_tokens(encoded["offset_mapping"], example.evidence)
    context = rows[:, context_start:context_end]
    manual = float((context[:, mask].sum(-1) / context.sum(-1)).mean())
    assert ranking.scores[1][1] == pytest.approx(manual, abs=1e-5)


def test_head_ranking_top_and_round_trip():
    ranking = HeadRanking(
        model="m", layers=(3, 7), scores=((0.1, 0.5, 0.2), (0.4, 0.05, 0.3)), uniform=0.02, examples=4
    )
    assert ranking.ranked()[:2] == [(3, 1, 0.5), (7, 0, 0.4)]
    assert ranking.top(3) == ((3, 1), (7, 0), (7, 2))
    assert ranking.top(2, max_layer=3) == ((3, 1), (3, 2))
    with pytest.raises(ValueError, match=r"count must be an integer in 1..3 .* got 4"):
        ranking.top(4, max_layer=3)
    assert HeadRanking.from_dict(ranking.to_dict()) == ranking
    assert "| 1 | 3 | 1 | 0.500 |" in ranking.to_markdown()
    engine_config = RetrievalConfig(scoring_heads=ranking.top(3))
    assert engine_config.scoring_heads == ((3, 1), (7, 0), (7, 2))


def test_query_focused_heads_bad_inputs(tiny_llama):
    with pytest.raises(ValueError, match="at least one EvidenceExample"):
        query_focused_heads(tiny_llama, [])
    with pytest.raises(ValueError, match=r"evidence must be non-empty \(start, end\) spans inside the text"):
        EvidenceExample("short text", "q?", ((5, 50),))
    with pytest.raises(ValueError, match="non-empty text and question"):
        EvidenceExample("text", "  ", ((0, 2),))
    long = EvidenceExample("word " * (tiny_llama.context_window + 10), "q?", ((0, 4),))
    with pytest.raises(ValueError, match="exceeds the model's window"):
        query_focused_heads(tiny_llama, [long], layers=[0])
