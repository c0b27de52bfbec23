"""The evidence benchmark runs the engine once per question for every budget up to its working set:
each budget's cut of that run must equal a run at that budget (tiny model, fast)."""

from __future__ import annotations

import pytest
from test_selection import PASSAGES  # tests/unit is on the path (rootdir conftest, rootless test folders)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a tiny model: threads only fight for the cores


@pytest.mark.parametrize("question", ["How high is Mount Fuji?", "Which river crosses eleven countries?"])
@pytest.mark.parametrize("fusion", [None, "bm25"])
@pytest.mark.parametrize("similarity", [None, "hidden"])
def test_one_recorded_loop_gives_each_budget_exactly(tiny_llama, question, fusion, similarity, monkeypatch):
    """Budgets up to the pass floor share one chunk loop; each budget's selection must equal a run
    at that budget (not a cut of the largest: the budget rule skips sentences that do not fit, so a
    smaller budget may take a sentence the largest one left out)."""
    from infiniretri_integrations.evaluation.evidence import EvidenceBench
    from infiniretri_integrations.evaluation.evidence.methods import _infiniretri
    from infiniretri_integrations.evaluation.evidence.signals import record_signals
    from infiniretri_integrations.evaluation.evidence_data import EvidenceSample

    options = {"chunk_size": 96, "tokens_per_pass": 8, "max_sentence_tokens": 48}
    bench = EvidenceBench(tiny_llama, engine_options=options)
    documents = PASSAGES + "\n\n" + PASSAGES[::-1]
    sample = EvidenceSample("leval", "doc", question, ("x",), documents, "test")
    loops: list[int] = []
    monkeypatch.setattr(
        "infiniretri_integrations.evaluation.evidence.signals.record_signals",
        lambda *args: loops.append(1) or record_signals(*args),
    )
    budgets = [50, 120, 256, 600]
    selections = _infiniretri(bench, sample, budgets, {"fusion": fusion, "similarity": similarity})
    assert len(loops) == 1
    for budget in budgets:
        alone = bench.engine.retrieve([documents], question, token_budget=budget, fusion=fusion, similarity=similarity)
        assert selections[budget].spans == [(s.start, s.end) for s in alone.sentences]
        assert selections[budget].kept_tokens <= budget


def test_share_context_variant_runs_one_call_per_text_and_matches_retrieve_many(tiny_llama, monkeypatch):
    from infiniretri_integrations.evaluation.evidence import EvidenceBench
    from infiniretri_integrations.evaluation.evidence.methods import _infiniretri
    from infiniretri_integrations.evaluation.evidence_data import EvidenceSample

    questions = ["How high is Mount Fuji?", "Which river crosses eleven countries?", "Where is the Thames?"]
    samples = [EvidenceSample("leval", f"doc-{i}", q, ("x",), PASSAGES, "test") for i, q in enumerate(questions)] + [
        EvidenceSample("leval", "other", questions[0], ("x",), PASSAGES[::-1], "test")
    ]
    bench = EvidenceBench(
        tiny_llama, engine_options={"chunk_size": 96, "tokens_per_pass": 8, "max_sentence_tokens": 48}
    )
    bench.samples = samples
    calls: list[list[str]] = []
    original = bench.engine.retrieve_many

    def counting(documents, qs, **options):
        calls.append(list(qs))
        return original(documents, qs, **options)

    monkeypatch.setattr(bench.engine, "retrieve_many", counting)
    selections = [_infiniretri(bench, s, [128], {"share_context": True}) for s in samples]
    assert calls == [questions, [questions[0]]]  # one call for the three questions of the shared text
    expected = original([PASSAGES], questions, share_context=True, token_budget=128)
    for selection, result in zip(selections, expected, strict=False):
        assert selection[128].spans == [(s.start, s.end) for s in result.sentences]
        assert selection[128].extra["questions_sharing"] == 3


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"similarity": None},
        {"fusion": None},
        {"fusion": None, "similarity": None},
        {"similarity": "embeddings"},
        {"similarity_weight": 3.0, "fusion_weight": 0.5},
    ],
)
def test_variants_sharing_one_chunk_loop_equal_retrieve(tiny_llama, options):
    """Variants that differ only in their final options share one recorded chunk loop; each
    variant's kept sentences must equal ``engine.retrieve`` with its options."""
    from infiniretri_integrations.evaluation.evidence import EvidenceBench
    from infiniretri_integrations.evaluation.evidence_data import EvidenceSample

    engine_options = {"chunk_size": 96, "max_sentence_tokens": 48, "similarity_layer": 2}
    bench = EvidenceBench(tiny_llama, engine_options=engine_options)
    sample = EvidenceSample("leval", "doc", "Which river crosses eleven countries?", ("x",), PASSAGES, "test")
    bench.final_variant(sample, 120, {"similarity": None})  # records the loop another variant then reuses
    sentences, stats, _ = bench.final_variant(sample, 120, options)
    assert len(bench._loops) == 1
    expected = bench.engine.retrieve([PASSAGES], sample.question, token_budget=120, **options)
    assert [(s.start, s.end, s.score) for s in sentences] == [(s.start, s.end, s.score) for s in expected.sentences]
    assert stats.chunks == expected.stats.chunks
