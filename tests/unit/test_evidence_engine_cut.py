"""The evidence benchmark runs the engine once per question for every budget up to its working set:
each budget's cut of that run must equal a run at that budget (tiny model, fast)."""

from __future__ import annotations

import pytest
from test_selection import PASSAGES  # tests/unit is on the path (rootdir conftest, rootless test folders)

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.evaluation.evidence import cut_to_budgets


@pytest.mark.parametrize("question", ["How high is Mount Fuji?", "Which river crosses eleven countries?"])
@pytest.mark.parametrize("fusion", [None, "bm25"])
def test_cuts_of_one_run_equal_runs_at_each_budget(tiny_llama, question, fusion):
    engine = InfiniRetriEngine(tiny_llama, chunk_size=96, top_k=8, max_sentence_tokens=48, fusion=fusion)
    documents = [PASSAGES, PASSAGES[::-1]]
    largest = engine.retrieve(documents, question, token_budget=600)
    for budget, kept in cut_to_budgets(largest.sentences, [50, 120, 256, 600]).items():
        alone = engine.retrieve(documents, question, token_budget=budget)
        assert [(s.document_index, s.sentence_index) for s in kept] == [
            (s.document_index, s.sentence_index) for s in alone.sentences
        ]
        assert sum(s.token_count for s in kept) <= budget
