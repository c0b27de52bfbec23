"""QA loaders on tiny temporary files (the real shared files: tests/integration/test_eval_shared_data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infiniretri_integrations.evaluation.datasets import QASample, load_hotpotqa, load_leval, load_longbench_jsonl

HOTPOT_RECORD = {
    "_id": "q1",
    "title_a": "Alpha",
    "title_b": "Beta",
    "para_a": ["Alpha is a town.", " It has a river."],
    "para_b": ["Beta is a city."],
    "question": "What do Alpha and Beta have in common?",
    "answer": "places",
    "supporting_facts": [[0], [0]],
    "distractors": [["Gamma", ["Gamma is a dog."], 12.5], ["Delta", ["Delta is a cat."], 3.0]],
}


def test_load_hotpotqa_builds_titled_documents(tmp_path: Path) -> None:
    path = tmp_path / "hotpot.json"
    path.write_text(json.dumps([HOTPOT_RECORD, {**HOTPOT_RECORD, "_id": "q2"}]), encoding="utf-8")
    samples = load_hotpotqa(path)
    assert len(samples) == 2
    sample = samples[0]
    assert isinstance(sample, QASample)
    assert sample.question == HOTPOT_RECORD["question"]
    assert sample.answers == ("places",)
    assert sorted(sample.documents) == sorted(
        [
            "Alpha\nAlpha is a town. It has a river.",
            "Beta\nBeta is a city.",
            "Gamma\nGamma is a dog.",
            "Delta\nDelta is a cat.",
        ]
    )
    assert sample.documents == load_hotpotqa(path)[0].documents  # deterministic order
    assert "Beta\nBeta is a city." in sample.context
    assert len(load_hotpotqa(path, limit=1)) == 1


def test_load_hotpotqa_rejects_other_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"question": "q"}]), encoding="utf-8")
    with pytest.raises(ValueError, match="HotpotQA"):
        load_hotpotqa(path)
    path.write_text(json.dumps({"not": "a list"}), encoding="utf-8")
    with pytest.raises(ValueError, match="list"):
        load_hotpotqa(path)
    with pytest.raises(FileNotFoundError):
        load_hotpotqa(tmp_path / "missing.json")


def test_load_leval_questions_per_document(tmp_path: Path) -> None:
    path = tmp_path / "task.jsonl"
    lines = [
        {"instructions": ["Q1?", "Q2?"], "outputs": ["A1", "A2"], "input": "Doc one.", "evaluation": "f1"},
        {"instructions": ["Q3?"], "outputs": ["A3"], "input": "Doc two.", "evaluation": "f1"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    first = load_leval(path)
    assert [s.question for s in first] == ["Q1?", "Q3?"]
    assert first[0].dataset == "leval/task" and first[0].documents == ("Doc one.",)
    every = load_leval(path, questions_per_document=None)
    assert [s.answers for s in every] == [("A1",), ("A2",), ("A3",)]
    assert len(load_leval(path, limit=2, questions_per_document=None)) == 2


def test_load_longbench_jsonl_accepts_field_variants(tmp_path: Path) -> None:
    path = tmp_path / "lb.jsonl"
    records = [
        {"context": "Bob lives in Rome.", "input": "Where does Bob live?", "answers": ["Rome"], "_id": "a"},
        {"context": "Ann is 30.", "question": "How old is Ann?", "answer": "30"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    samples = load_longbench_jsonl(path)
    assert [(s.id, s.question, s.answers) for s in samples] == [
        ("a", "Where does Bob live?", ("Rome",)),
        ("1", "How old is Ann?", ("30",)),
    ]
    # the other loaders take LongBench-style records too
    assert load_leval(path)[0].answers == ("Rome",)
    assert load_hotpotqa(path)[1].documents == ("Ann is 30.",)


def test_load_longbench_jsonl_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"context": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="answers"):
        load_longbench_jsonl(path)
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        load_longbench_jsonl(path)
