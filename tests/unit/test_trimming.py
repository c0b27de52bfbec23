"""A model trimmed to the layers scoring runs (core.scoring_setup.trim_to_scoring): the same
scores with fewer weights in memory; what it can no longer do fails with a clear error."""

from __future__ import annotations

import pytest
import torch

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.core.scoring_setup import TrimmedLayer, trim_to_scoring

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXT = " ".join(f"Sentence number {i} talks about topic {i % 7} and colour {i % 5}." for i in range(80))
QUESTION = "Which sentence talks about topic 3 and colour 2?"


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def retrieved(engine: InfiniRetriEngine) -> list[tuple[str, float]]:
    return [(s.text, s.score) for s in engine.retrieve([TEXT], QUESTION).sentences]


@pytest.mark.parametrize("kind", ["tiny_llama", "tiny_gemma"])
def test_trimmed_model_scores_exactly_as_the_full_one(kind, request):
    lm = request.getfixturevalue(kind)
    options = dict(chunk_size=128, token_budget=96, scoring_layer=1)
    trimmed = trim_to_scoring(lm, scoring_layer=1)
    layers = trimmed.model.model.layers
    assert not any(isinstance(layer, TrimmedLayer) for layer in layers[:2])
    assert all(isinstance(layer, TrimmedLayer) for layer in layers[2:])
    assert parameter_count(trimmed.model) < parameter_count(lm.model)
    assert not any(isinstance(layer, TrimmedLayer) for layer in lm.model.model.layers)  # a copy was trimmed
    assert retrieved(InfiniRetriEngine(trimmed, **options)) == retrieved(InfiniRetriEngine(lm, **options))


def test_untied_head_is_dropped_and_tied_head_kept(tiny_llama, tiny_gemma):
    assert isinstance(trim_to_scoring(tiny_llama, scoring_layer=1).model.lm_head, TrimmedLayer)  # untied
    gemma = trim_to_scoring(tiny_gemma, scoring_layer=1).model
    assert gemma.lm_head.weight is gemma.get_input_embeddings().weight  # tied: the embeddings stay anyway


def test_trimmed_layers_keep_their_attention_type(tiny_llama):
    """Some decoders read ``layer.attention_type`` in their layer loop before calling the layer."""
    import copy

    from infiniretri_integrations import LocalModel

    model = copy.deepcopy(tiny_llama.model)
    for index, layer in enumerate(model.model.layers):
        layer.attention_type = "sliding_attention" if index % 2 else "full_attention"
    trimmed = trim_to_scoring(LocalModel(model=model, tokenizer=tiny_llama.tokenizer), scoring_layer=0)
    assert [layer.attention_type for layer in trimmed.model.model.layers] == [
        "full_attention",
        "sliding_attention",
        "full_attention",
        "sliding_attention",
    ]


def test_scoring_deeper_or_generating_with_a_trimmed_model_fails_clearly(tiny_llama):
    trimmed = trim_to_scoring(tiny_llama, scoring_layer=1)
    with pytest.raises(RuntimeError, match=r"decoder layer 2 was removed by trim_to_scoring"):
        InfiniRetriEngine(trimmed, chunk_size=128, token_budget=64, scoring_layer=3).retrieve([TEXT], QUESTION)
    with pytest.raises(RuntimeError, match=r"removed by trim_to_scoring.*scoring_model=trimmed"):
        InfiniRetriEngine(trimmed, chunk_size=128, token_budget=64, scoring_layer=1).answer([TEXT], QUESTION)


def test_default_layer_is_kept_and_inplace_trims_the_given_model(tiny_llama):
    import copy

    from infiniretri_integrations import LocalModel

    lm = LocalModel(model=copy.deepcopy(tiny_llama.model), tokenizer=tiny_llama.tokenizer, default_scoring_layer=2)
    trimmed = trim_to_scoring(lm, inplace=True)
    assert trimmed.model is lm.model and trimmed.default_scoring_layer == 2
    assert [isinstance(layer, TrimmedLayer) for layer in lm.model.model.layers] == [False, False, False, True]


def test_benchmark_measures_the_trimmed_model_side_by_side(tiny_llama_folder, tmp_path):
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "infiniretri_integrations.benchmark", "--model", str(tiny_llama_folder)]
    command += ["--lengths", "1200", "--reference-lengths", "--no-last-layer", "--threads", "1"]
    command += ["--compare-trimmed", "--json", str(out)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    methods = {r["method"] for r in report["results"]}
    assert "engine[trimmed]" in methods and "engine" in methods, methods
    weights = report["weights_mb"]
    full = next(iter(weights.values()))  # the model as loaded, in its default dtype
    assert weights["trimmed"] < full, weights  # the tiny model's untied LM head is dropped
    assert "weights held (MB)" in done.stdout
