"""The QA loaders on the real shared evaluation files (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infiniretri_integrations.evaluation.datasets import load_hotpotqa, load_leval


@pytest.mark.data
def test_real_shared_files(shared_data: Path) -> None:
    hotpot = load_hotpotqa(shared_data / "hotpotqa" / "camera_ready_nd8_dev_sample100.json")
    assert len(hotpot) == 100
    assert all(s.question and s.answers[0] for s in hotpot)
    assert sum(len(s.documents) == 10 for s in hotpot) >= 95
    first = hotpot[0]
    assert any(doc.startswith(first.metadata["gold_titles"][0] + "\n") for doc in first.documents)
    leval = load_leval(shared_data / "leval" / "scientific_qa.jsonl", questions_per_document=None)
    assert len(leval) > 100
    assert all(len(s.documents[0]) > 1000 for s in leval)
