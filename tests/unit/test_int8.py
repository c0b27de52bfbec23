"""int8 dynamic quantisation of the linear layers (core.models.quantize_int8): a cheaper full read
on CPUs, an option with its own figures (its scores differ slightly from the float model's)."""

from __future__ import annotations

import pytest
import torch

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.core.attention import question_attention
from infiniretri_integrations.core.models import quantize_int8

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_int8_copy_quantises_the_linear_layers_and_leaves_the_original(tiny_llama):
    quantized = quantize_int8(tiny_llama)
    kinds = {type(m).__module__ + "." + type(m).__name__ for m in quantized.model.model.layers.modules()}
    assert any("quantized" in kind and kind.endswith("Linear") for kind in kinds), kinds
    assert all(type(m) is not torch.nn.Linear for m in quantized.model.model.layers.modules()), kinds
    assert any(type(m) is torch.nn.Linear for m in tiny_llama.model.modules())  # the original is untouched
    assert quantized.name == tiny_llama.name and quantized.tokenizer is tiny_llama.tokenizer


def test_int8_attention_rows_stay_close_to_float32(tiny_llama):
    ids = torch.tensor([list(range(20, 120))])
    exact = question_attention(tiny_llama, ids, 90, [3])
    approximate = question_attention(quantize_int8(tiny_llama), ids, 90, [3])
    assert approximate.dtype == torch.float32
    assert torch.allclose(approximate.sum(-1), exact.sum(-1), atol=1e-4)  # still probabilities per head sum
    correlation = torch.corrcoef(torch.stack([exact.flatten(), approximate.flatten()]))[0, 1]
    assert correlation > 0.98


def test_an_engine_runs_on_the_int8_model(tiny_llama):
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(60))
    engine = InfiniRetriEngine(quantize_int8(tiny_llama), chunk_size=128, token_budget=64)
    result = engine.retrieve([text], "Which sentence talks about topic 3?")
    assert result.sentences and sum(s.token_count for s in result.sentences) <= 64


def test_benchmark_counts_the_int8_packed_weights(tiny_llama):
    from infiniretri_integrations.benchmark import weights_mb

    full = weights_mb(tiny_llama)  # float32
    quantized = quantize_int8(tiny_llama)
    linear = sum(m.weight.numel() for m in tiny_llama.model.modules() if type(m) is torch.nn.Linear)  # with the LM head
    rest = full - 4 * linear / 2**20  # the embeddings and norms: what the parameters alone would show
    assert rest + 0.9 * linear / 2**20 < weights_mb(quantized) < rest + 1.2 * linear / 2**20  # a byte per weight
