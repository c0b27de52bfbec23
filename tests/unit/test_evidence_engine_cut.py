"""The evidence benchmark runs the engine once per question for every budget up to its working set:
each budget's cut of that run must equal a run at that budget (tiny model, fast)."""

from __future__ import annotations

import pytest
from test_selection import PASSAGES  # tests/unit is on the path (rootdir conftest, rootless test folders)

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.evaluation.evidence import cut_to_budgets

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a tiny model: threads only fight for the cores


@pytest.mark.parametrize("question", ["How high is Mount Fuji?", "Which river crosses eleven countries?"])
@pytest.mark.parametrize("fusion", [None, "bm25"])
def test_cuts_of_one_run_equal_runs_at_each_budget(tiny_llama, question, fusion):
    engine = InfiniRetriEngine(tiny_llama, chunk_size=96, tokens_per_pass=8, max_sentence_tokens=48, fusion=fusion)
    documents = [PASSAGES, PASSAGES[::-1]]
    largest = engine.retrieve(documents, question, token_budget=600)
    for budget, kept in cut_to_budgets(largest.sentences, [50, 120, 256, 600]).items():
        alone = engine.retrieve(documents, question, token_budget=budget)
        assert [(s.document_index, s.sentence_index) for s in kept] == [
            (s.document_index, s.sentence_index) for s in alone.sentences
        ]
        assert sum(s.token_count for s in kept) <= budget


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
