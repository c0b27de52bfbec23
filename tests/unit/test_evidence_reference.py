"""The one runner of the authors' package (``evaluation/reference.py``) and its three callers: the
speed benchmark, the evidence benchmark and the QA evaluation.

``infini-retri`` is not a dependency of the test suite, so a stand-in ``infini_retri.pipline``
module with the real package's interface takes its place: its ``Pipline`` refuses a model that
does not run eager attention (as the real one does) and builds its prompt around a fixed kept text.
The model is the tiny Llama (real transformers weights, one torch thread).
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from typing import Any, ClassVar

import pytest

from infiniretri_integrations.core.config import DEFAULT_PROMPT_TEMPLATE, RetrievalConfig
from infiniretri_integrations.evaluation.reference import (
    INSTALL_HINT,
    eager_attention,
    reference_keep,
    reference_kept_text,
    reference_options,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEPT = "Mount Fuji is 3776 metres high. It last erupted in 1707."


class FakePipline:
    """``infini_retri.pipline.Pipline`` (0.0.3) as far as the callers use it."""

    made: ClassVar[list[FakePipline]] = []

    def __init__(self, config: dict[str, Any] | None = None, model: Any = None, tokenizer: Any = None) -> None:
        assert model.config._attn_implementation == "eager", "Please set attn_implementation='eager'"
        self.config, self.model, self.tokenizer = dict(config or {}), model, tokenizer
        self.calls: list[dict[str, Any]] = []
        FakePipline.made.append(self)

    def generate2(
        self,
        data_dict: dict[str, str],
        prompt: str,
        gen_name: str,
        sample_id: int = 0,
        topk: int | None = None,
        phrase_token_num: int | None = None,
        retri_split_pattern: str | None = None,
        chunk_size: int | None = None,
        temperature: float = 0.1,
        max_new_tokens: int = 128,
    ) -> tuple[str, dict[str, Any]]:
        assert self.model.config._attn_implementation == "eager"
        self.calls.append({"data": dict(data_dict), "gen_name": gen_name, "max_new_tokens": max_new_tokens})
        input_text = prompt.format(context=KEPT, question=data_dict["question"])
        length = len(self.tokenizer(input_text, add_special_tokens=False)["input_ids"])
        return " 3776 metres", {"input_text": input_text, "input_token_length": length}


@pytest.fixture
def fake_reference(monkeypatch: pytest.MonkeyPatch) -> type[FakePipline]:
    package = types.ModuleType("infini_retri")
    module = types.ModuleType("infini_retri.pipline")
    package.__spec__ = importlib.machinery.ModuleSpec("infini_retri", None, is_package=True)
    module.__spec__ = importlib.machinery.ModuleSpec("infini_retri.pipline", None)
    module.Pipline = FakePipline  # type: ignore[attr-defined]
    package.pipline = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "infini_retri", package)
    monkeypatch.setitem(sys.modules, "infini_retri.pipline", module)
    FakePipline.made = []
    return FakePipline


def test_reference_options_are_the_resolved_engine_settings() -> None:
    config = RetrievalConfig(tokens_per_pass=64, chunk_size=512, phrase_window=3)
    assert reference_options(config) == {"topk": 64, "phrase_token_num": 3, "chunk_size": 512}
    defaults = reference_options(RetrievalConfig())
    assert defaults["topk"] > 0 and defaults["chunk_size"] > 0
    assert "infini-retri==0.0.3" in INSTALL_HINT


def test_reference_kept_text_is_the_context_part_of_the_prompt() -> None:
    prompt = DEFAULT_PROMPT_TEMPLATE.format(context=KEPT, question="How high is Mount Fuji?")
    assert reference_kept_text(prompt, DEFAULT_PROMPT_TEMPLATE) == KEPT
    assert reference_kept_text("no template here", "Read: {context}\nQ: {question}") == "no template here"


def test_eager_attention_switches_for_the_block_and_restores_also_on_error(tiny_llama) -> None:
    import torch

    model = tiny_llama.model
    assert model.config._attn_implementation == "sdpa"
    ids = torch.tensor([[1, 2, 3, 4]])
    with eager_attention(model) as inside:
        assert inside is model and model.config._attn_implementation == "eager"
        with torch.no_grad():
            attentions = model(ids, output_attentions=True).attentions
        assert attentions is not None and attentions[0].shape == (1, 4, 4, 4)  # (batch, heads, query, key)
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError, match="boom"), eager_attention(model):
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_reference_keep_runs_the_pipeline_with_the_engine_options(tiny_llama, fake_reference) -> None:
    config = RetrievalConfig(tokens_per_pass=32, chunk_size=256, phrase_window=4)
    kept = reference_keep(tiny_llama, "Long text. " * 20, "How high is Mount Fuji?", config, gen_name="evidence")
    assert kept == KEPT
    (pipeline,) = fake_reference.made
    assert pipeline.config == {"topk": 32, "phrase_token_num": 4, "chunk_size": 256}
    assert pipeline.calls == [
        {
            "data": {"context": "Long text. " * 20, "question": "How high is Mount Fuji?"},
            "gen_name": "evidence",
            "max_new_tokens": 1,
        }
    ]
    assert tiny_llama.model.config._attn_implementation == "sdpa"


def test_the_evidence_benchmark_locates_the_reference_text(tiny_llama, fake_reference) -> None:
    from infiniretri_integrations.evaluation.evidence import METHODS, EvidenceBench
    from infiniretri_integrations.evaluation.evidence_data import EvidenceSample

    text = f"Passage 1:\nRivers\nThe Danube crosses ten countries. {KEPT} Rome is warm."
    sample = EvidenceSample("leval", "q1", "How high is Mount Fuji?", ("3776 metres",), text, "test")
    bench = EvidenceBench(tiny_llama, engine_options={"chunk_size": 96, "tokens_per_pass": 8})
    assert bench.unavailable(METHODS["reference"]) is None
    selections = METHODS["reference"].run(bench, sample, [12, 64], {})
    start = text.index(KEPT)
    assert selections[None].spans == [(start, start + 31), (start + 32, start + len(KEPT))]
    assert selections[None].extra["located_chars"] == len(KEPT) - 1  # the two sentences, not the space
    kept_64 = "".join(text[s:e] for s, e in selections[64].spans)
    assert "3776" in kept_64 and "1707" in kept_64 and "Danube" not in kept_64
    assert selections[12].kept_tokens <= 12 and selections[12].units <= 1
    assert tiny_llama.model.config._attn_implementation == "sdpa"


def test_the_speed_benchmark_measures_the_reference(tiny_llama, fake_reference) -> None:
    from infiniretri_integrations.benchmark import run_reference

    config = RetrievalConfig(tokens_per_pass=16, chunk_size=128)
    measurement, kept = run_reference(tiny_llama, "Some text. " * 30, "How high?", config, "3776 metres", 99)
    assert kept == KEPT and measurement.needle_found is True
    assert measurement.kept_tokens == len(tiny_llama.tokenizer(KEPT, add_special_tokens=False)["input_ids"])
    assert measurement.method == "reference" and measurement.seconds > 0 and measurement.input_tokens == 99
    assert fake_reference.made[0].calls[0]["gen_name"] == "bench"
    assert tiny_llama.model.config._attn_implementation == "sdpa"


def test_the_qa_evaluation_answers_through_an_eager_copy(tiny_llama, tiny_llama_folder, fake_reference) -> None:
    from infiniretri_integrations.evaluation import qa
    from infiniretri_integrations.evaluation.datasets import QASample

    runner = qa.QARunner(
        tiny_llama, ["reference"], tokens_per_pass=24, chunk_size=200, reference_model_path=str(tiny_llama_folder)
    )
    assert runner.available("reference"), runner.skipped
    (pipeline,) = fake_reference.made
    assert pipeline.model is not tiny_llama.model  # a separate eager-attention copy of the weights
    assert pipeline.config == {"topk": 24, "phrase_token_num": runner.engine.config.phrase_window, "chunk_size": 200}
    sample = QASample("d", "s1", "How high is Mount Fuji?", ("3776 metres",), ("Some text. " * 30,))
    record = runner.run("reference", sample)
    assert record["prediction"] == "3776 metres" and record["f1"] == 1.0
    empty = DEFAULT_PROMPT_TEMPLATE.format(context="", question=sample.question)
    tokens = tiny_llama.tokenizer
    prompt = DEFAULT_PROMPT_TEMPLATE.format(context=KEPT, question=sample.question)
    expected = len(tokens(prompt, add_special_tokens=False)["input_ids"])
    assert record["context_tokens"] == expected - len(tokens.encode(empty, add_special_tokens=False))
    assert pipeline.calls[0]["max_new_tokens"] == runner.max_new_tokens
    assert tiny_llama.model.config._attn_implementation == "sdpa"
