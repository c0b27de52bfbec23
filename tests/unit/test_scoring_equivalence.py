"""The captured question-row attention equals eager attention's probabilities, and the same
sentences are selected as with a reference computation from ``output_attentions``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infiniretri_integrations import InfiniRetriEngine, RetrievalConfig
from infiniretri_integrations.core.attention import question_attention
from infiniretri_integrations.core.prompting import build_layout
from infiniretri_integrations.core.scoring import context_scores, question_weights, select_sentences

scipy_signal = pytest.importorskip("scipy.signal")

TEXT = (
    "The harbour town was quiet in winter. Fishing boats rested on the gravel. "
    "Mara kept the lighthouse lamp burning every night. The secret code for the vault is 4172. "
    "Gulls circled above the pier at dawn. Tourists arrived only in July. "
) * 3


def _eager_rows(lm, ids: list[int], row_start: int, layer: int) -> torch.Tensor:
    """Reference: the full eager attention matrix of ``layer``, heads summed, question rows."""
    model = lm.model
    previous = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids]), output_attentions=True, use_cache=False)
    finally:
        model.config._attn_implementation = previous
    return out.attentions[layer][0].sum(dim=0)[row_start:].float()


def _reference_scores(full: torch.Tensor, context_start: int, context_end: int, question_start: int, window: int):
    """The authors' arithmetic with numpy/scipy: convolve2d 'same', squared question weights."""
    attention = full.numpy()
    q2c = attention[:, context_start:context_end]
    q2c = scipy_signal.convolve2d(q2c, np.ones((1, window)), mode="same", boundary="fill", fillvalue=0)
    weights = attention[:, question_start:].sum(axis=1, keepdims=True)
    return (weights * weights * q2c).sum(axis=0)


@pytest.mark.parametrize("fixture_name", ["tiny_llama", "tiny_gemma"])
@pytest.mark.parametrize("layer_from_end", [1, 2])
def test_captured_rows_equal_eager_attention(request, fixture_name, layer_from_end):
    lm = request.getfixturevalue(fixture_name)
    layer = lm.num_layers - layer_from_end
    layout = build_layout(lm.tokenizer, RetrievalConfig(), "What is the secret code for the vault?")
    context = lm.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    ids, context_start, context_end, question_start = layout.assemble(context)
    captured = question_attention(lm, torch.tensor([ids]), question_start, [layer])
    reference = _eager_rows(lm, ids, question_start, layer)
    assert captured.shape == reference.shape == (len(ids) - question_start, len(ids))
    torch.testing.assert_close(captured, reference, atol=1e-5, rtol=1e-5)

    ours = context_scores(captured, context_start, context_end, question_weights(captured, question_start), 8)
    theirs = _reference_scores(reference, context_start, context_end, question_start, 8)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fixture_name", ["tiny_llama", "tiny_gemma"])
def test_same_sentences_selected_as_reference(request, fixture_name):
    lm = request.getfixturevalue(fixture_name)
    layer = lm.num_layers - 1
    engine = InfiniRetriEngine(
        lm,
        chunk_size=128,
        tokens_per_pass=20,
        scoring_layer=layer,
        max_sentence_tokens=64,
        fusion=None,
        similarity=None,
    )  # the paper's method: attention alone
    question = "What is the secret code for the vault?"
    result = engine.retrieve([TEXT], question)

    # Reference loop: same chunks and cache, scores from eager output_attentions and scipy.
    from infiniretri_integrations.core.chunking import pack_chunks
    from infiniretri_integrations.core.segmentation import segment_documents

    sentences = segment_documents([TEXT], lm.tokenizer, 64)[0]
    layout = build_layout(lm.tokenizer, engine.config, question)
    cache: list = []
    weights = None
    for chunk in pack_chunks(sentences, 128):
        candidates = cache + chunk
        ids, cs, ce, qs = layout.assemble([t for s in candidates for t in s.token_ids])
        full = _eager_rows(lm, ids, qs, layer).numpy()
        q2c = scipy_signal.convolve2d(full[:, cs:ce], np.ones((1, 8)), mode="same")
        if weights is None:
            weights = full[:, qs:].sum(axis=1, keepdims=True)
        scores = (weights * weights * q2c).sum(axis=0)
        top = np.argsort(scores)[-20:]
        owner = np.repeat(np.arange(len(candidates)), [s.token_count for s in candidates])
        cache = [candidates[i] for i in sorted(set(owner[top].tolist()))]
    assert [(s.document_index, s.sentence_index) for s in cache] == [
        (s.document_index, s.sentence_index) for s in result.sentences
    ]
    assert len(result.sentences) < len(sentences)


def test_select_sentences_keeps_whole_sentences():
    scores = torch.tensor([0.1, 0.9, 0.2, 0.0, 0.05, 0.8])
    owner = torch.tensor([0, 0, 1, 1, 2, 2])
    kept, best = select_sentences(scores, owner, top_k=2)
    assert kept.tolist() == [0, 2]
    torch.testing.assert_close(best, torch.tensor([0.9, 0.2, 0.8]))


def test_forward_stops_at_scoring_layer(tiny_llama):
    """Layers after the scoring layer never run."""
    ran: list[int] = []
    hooks = [
        layer.register_forward_pre_hook(lambda m, a, i=i: ran.append(i))
        for i, layer in enumerate(tiny_llama.model.model.layers)
    ]
    try:
        question_attention(tiny_llama, torch.tensor([[1, 2, 3, 4, 5, 6]]), 3, [1])
    finally:
        for hook in hooks:
            hook.remove()
    assert ran == [0, 1]
    assert tiny_llama.model.config._attn_implementation == "sdpa"
