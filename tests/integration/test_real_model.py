"""Capabilities on the real packaged model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from infiniretri_integrations import InfiniRetriEngine, SourceDocument
from infiniretri_integrations.core.scoring_setup import default_scoring_layer
from infiniretri_integrations.evaluation.niah import answer_has_facts, build_case, load_haystack, needle_retrieved

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def haystack(request) -> str:
    """The Paul Graham essays when the shared data is present, else stdlib docstrings."""
    from tests.conftest import SHARED_DATA

    essays = SHARED_DATA / "niah_paulgraham" / "PaulGrahamEssays"
    return load_haystack(essays if essays.is_dir() else None)


@pytest.fixture(scope="module")
def engine(real_lm):
    return InfiniRetriEngine(real_lm)


def test_default_model_facts(real_lm):
    assert real_lm.num_layers == 30
    assert real_lm.default_scoring_layer is None, "the wrapper holds no calibration"
    assert default_scoring_layer(real_lm) == 18, "the bundled calibration gives the packaged default its layer"
    assert real_lm.device.type == "cpu"
    assert real_lm.context_window == 8192


NIH_DEPTHS = [0, 50, 100]
"""16K tokens take about four 4096-token passes: the needle in the first pass, an interior one, the last
(depths 25 and 75 are interior passes too, as 50 is: the same case, at 30 s each on CI)."""


@pytest.mark.parametrize("depth", NIH_DEPTHS)
def test_needle_retrieved_and_answered_16k(engine, real_lm, haystack, depth):
    case = build_case(haystack, real_lm.tokenizer, 16_000, depth)
    answer = engine.answer([SourceDocument(case.text, id="hay")], case.question)
    kept = [s.text for s in answer.retrieval.sentences]
    assert needle_retrieved(kept, case.needle), f"needle lost at depth {depth}"
    needle_hits = [s for s in answer.retrieval.sentences if "Dolores Park" in s.text]
    assert needle_hits and needle_hits[0].start <= case.needle_start + len(case.needle)
    assert answer.retrieval.stats.kept_tokens < 0.15 * answer.retrieval.stats.input_tokens
    assert answer_has_facts(answer.text), answer.text


def test_streaming_matches_blocking_answer(engine):
    docs = ["Marie Curie won two Nobel Prizes. She was born in Warsaw in 1867. She worked in Paris."]
    result = engine.retrieve(docs, "Where was Marie Curie born?")
    pieces = list(engine.stream_from(result, max_new_tokens=32))  # the birthplace comes early: 32 of 128 tokens
    assert len(pieces) > 1
    assert "".join(pieces) == engine.answer_from(result, max_new_tokens=32).text
    assert "Warsaw" in "".join(pieces)


def test_stream_answer_carries_retrieval(engine):
    stream = engine.stream_answer(["The vault code is 4172. The weather is mild."], "What is the vault code?")
    text = "".join(stream)
    assert text == stream.text and "4172" in text
    assert any("4172" in s.text for s in stream.retrieval.sentences)


def test_concurrent_calls_on_one_engine_equal_sequential(engine, haystack, real_lm):
    # 1500 tokens: one pass each, still more than the 1024-token working set (a selection)
    cases = [build_case(haystack, real_lm.tokenizer, 1500, depth) for depth in (10, 90)]
    jobs = [(c.text, q) for c in cases for q in (c.question, "What did the author learn?")]

    def run(job):
        return [(s.start, s.end, round(s.score, 4)) for s in engine.retrieve([job[0]], job[1])]

    sequential = [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(run, jobs))
    assert parallel == sequential


def test_stream_early_close_releases_model(engine):
    result = engine.retrieve(["Paris is the capital of France. Rome is in Italy."], "What is the capital of France?")
    stream = engine.stream_from(result, max_new_tokens=64)
    next(stream)
    stream.close()
    assert engine.local_model.lock.acquire(timeout=30)
    engine.local_model.lock.release()


def test_cjk_and_code_documents(engine):
    cjk = "北京是中国的首都。上海是最大的城市。长城很长。" * 20
    code = "\n".join(f"def handler_{i}(request):\n    return route(request, {i})" for i in range(80))
    result = engine.retrieve([cjk, code], "中国的首都是哪里?")
    assert result.sentences
    assert all([cjk, code][s.document_index][s.start : s.end] == s.text for s in result.sentences)


def test_gguf_weights_cached_for_fast_reload(real_lm, monkeypatch):
    """The second load reads the de-quantised safetensors, not the GGUF file."""
    import transformers

    from infiniretri_integrations.core.models import _converted_gguf_dir, default_model_path, load_model

    converted = _converted_gguf_dir(default_model_path())
    assert (converted / "config.json").is_file()
    calls = []
    original = transformers.AutoModelForCausalLM.from_pretrained

    def spy(source, *args, **kwargs):
        calls.append((str(source), kwargs.get("gguf_file")))
        return original(source, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    reloaded = load_model(None, dtype="float32")
    assert calls == [(str(converted), None)]
    assert reloaded.dtype == torch.float32
    assert reloaded.fingerprint() == real_lm.fingerprint()
    assert "quantization_config" not in reloaded.model.config.to_dict()


def test_query_focused_heads_chosen_on_needles_find_the_needle(real_lm, haystack):
    from infiniretri_integrations.core.calibration import EvidenceExample, query_focused_heads

    cases = [build_case(haystack, real_lm.tokenizer, 2_000, depth) for depth in (20, 60, 90)]
    examples = [EvidenceExample(c.text, c.question, (c.needle_span,)) for c in cases]
    ranking = query_focused_heads(real_lm, examples, layers=range(19))
    best_share = ranking.ranked()[0][2]
    assert best_share > 10 * ranking.uniform, ranking.to_markdown(8)
    heads = ranking.top(8)
    assert len(heads) == 8 and all(layer <= 18 for layer, _ in heads)
    engine = InfiniRetriEngine(real_lm, scoring_heads=heads, fusion=None)
    case = build_case(haystack, real_lm.tokenizer, 6_000, 40)
    result = engine.retrieve([case.text], case.question)
    assert needle_retrieved([s.text for s in result.sentences], case.needle)


LEXGAP_PAIRS = ("places-01", "foods-01", "jobs-05", "conditions-05")
"""Calibration-half pairs of the lexical-gap set (no content word of the question in its needle)."""


def test_similarity_finds_evidence_that_shares_no_word_with_the_question(real_lm, stdlib_haystack):
    """The default engine (attention + BM25 + the model's hidden-state similarity) keeps needles
    like "Lorenzo took a selfie beneath the Eiffel Tower ..." for "Which character has been to
    Paris?" among 4K tokens with hard negatives that name Paris; without the similarity (and the
    probe) it keeps (almost) none. One recorded chunk loop per pair serves both configurations."""
    from infiniretri_integrations.evaluation.evidence.signals import record_signals
    from infiniretri_integrations.evaluation.lexgap import build_sample, load_pairs, needle_kept, pair_halves

    pool = load_pairs()
    halves = pair_halves(pool, seed=0)
    engine = InfiniRetriEngine(real_lm, show_progress=False)
    kept = {"default": 0, "without": 0}
    for pair in (p for p in pool if p.id in LEXGAP_PAIRS):
        assert halves[pair.id] == "calibration"
        sample = build_sample(pair, pool, [stdlib_haystack], real_lm.tokenizer, 4000, 0, "calibration")
        cfg = engine.config.replace(token_budget=512)
        loop = record_signals(engine, sample.text, sample.question, cfg)
        for name, variant in (("default", cfg), ("without", cfg.replace(similarity=None, probe=None))):
            kept[name] += needle_kept(sample, [(s.start, s.end) for s in loop.select(variant)])
    assert kept["default"] >= 3, kept
    assert kept["without"] <= kept["default"] - 2, kept


PROBE_TEST_PAIRS = ("places-02", "foods-03", "jobs-04", "music-06")
"""Test-half pairs of the lexical-gap set (the shipped probe was fitted on the calibration half)."""


def test_shipped_probe_finds_evidence_that_shares_no_word_with_the_question(real_lm, stdlib_haystack):
    """The probe shipped for the packaged model reads every head's attention: alone (no BM25, no
    similarity), it keeps lexical-gap needles in a haystack it was not fitted on (Python's
    docstrings) that the scoring layer's attention alone misses."""
    from infiniretri_integrations.core.probe import probe_for
    from infiniretri_integrations.evaluation.evidence.signals import record_signals
    from infiniretri_integrations.evaluation.lexgap import build_sample, load_pairs, needle_kept, pair_halves

    engine = InfiniRetriEngine(real_lm, show_progress=False)
    probe = probe_for("auto", real_lm, [default_scoring_layer(real_lm)], shared_context=False)
    assert probe is not None and (probe.layers, probe.heads) == (19, 9)
    assert probe.fitted_on["split"] == "calibration"
    pool = load_pairs()
    halves = pair_halves(pool, seed=0)
    kept = {"probe": 0, "attention": 0}
    for pair in (p for p in pool if p.id in PROBE_TEST_PAIRS):
        assert halves[pair.id] == "test"
        sample = build_sample(pair, pool, [stdlib_haystack], real_lm.tokenizer, 4000, 0, "test")
        cfg = engine.config.replace(token_budget=512, fusion=None, similarity=None)
        loop = record_signals(engine, sample.text, sample.question, cfg)
        for name, variant in (("probe", cfg), ("attention", cfg.replace(probe=None))):
            kept[name] += needle_kept(sample, [(s.start, s.end) for s in loop.select(variant)])
    assert kept["probe"] >= 3, kept
    assert kept["attention"] <= kept["probe"] - 2, kept


def test_trimmed_packaged_model_keeps_its_scores_with_fewer_weights(real_lm, stdlib_haystack):
    """The packaged model trimmed to its default scoring layer (18 of 30) holds ~29% fewer weights
    and scores a needle case exactly as the full model does."""
    from infiniretri_integrations.core.scoring_setup import trim_to_scoring

    trimmed = trim_to_scoring(real_lm)
    full_params = sum(p.numel() for p in real_lm.model.parameters())
    trimmed_params = sum(p.numel() for p in trimmed.model.parameters())
    assert trimmed_params < 0.75 * full_params, (trimmed_params, full_params)
    case = build_case(stdlib_haystack, real_lm.tokenizer, 3_000, 50)
    results = [
        InfiniRetriEngine(lm, show_progress=False, token_budget=256).retrieve([case.text], case.question)
        for lm in (real_lm, trimmed)
    ]
    assert [(s.text, s.score) for s in results[1].sentences] == [(s.text, s.score) for s in results[0].sentences]
    assert needle_retrieved([s.text for s in results[1].sentences], case.needle)
