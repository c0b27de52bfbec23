"""Benchmark plumbing on the tiny model: the floor replays exactly the engine's forward passes."""

from __future__ import annotations

import pytest

from infiniretri_integrations.benchmark import run_engine, run_floor, sentence_agreement
from infiniretri_integrations.core.config import RetrievalConfig
from infiniretri_integrations.core.passes import SHAPE_BUCKET
from infiniretri_integrations.evaluation.niah import build_case

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a tiny model: threads only fight for the cores


def test_floor_replays_the_recorded_passes(tiny_llama, stdlib_haystack) -> None:
    case = build_case(stdlib_haystack, tiny_llama.tokenizer, 600, 50)
    config = RetrievalConfig(chunk_size=128, tokens_per_pass=16, max_sentence_tokens=64, scoring_layer=2)
    engine, passes, kept = run_engine(tiny_llama, case.text, case.question, config, case.needle)
    assert engine.forward_passes == len(passes) > 2 and kept
    assert [p.chunk_index for p in passes] == list(range(len(passes)))
    assert all(p.layers == (2,) and p.input_ids.shape[1] % SHAPE_BUCKET == 0 for p in passes)
    floor = run_floor(tiny_llama, passes, engine.input_tokens)
    assert floor.forward_passes == len(passes) and floor.extra["through_layer"] == 2
    assert floor.seconds > 0 and floor.input_tokens == engine.input_tokens


def test_sentence_agreement() -> None:
    assert sentence_agreement(["Alice is here. Bob is there."], "Alice is here.  Bob is there.") == 1.0
    assert sentence_agreement(["Alice is here."], "Bob is there.") == 0.0
    assert sentence_agreement(["Alice is here. Carol left."], "Alice is here. Bob is there.") == 1 / 3


def test_variant_option_is_parsed_and_validated():
    from infiniretri_integrations.benchmark import _parse_variant

    assert _parse_variant('c1024={"chunk_size": 1024}') == ("c1024", {"chunk_size": 1024})
    with pytest.raises(ValueError, match="--variant must be NAME="):
        _parse_variant("c1024")
    with pytest.raises(ValueError, match="chunk_size must be a positive integer, got 0"):
        _parse_variant('bad={"chunk_size": 0}')
