"""QA runner pieces: chunking for the RAG/BM25 baselines, BM25 ranking, the results table."""

from __future__ import annotations

import pytest

from infiniretri_integrations.evaluation import qa
from infiniretri_integrations.evaluation.datasets import QASample


def test_chunks_split_sentences_longer_than_a_chunk(tiny_llama) -> None:
    long_sentence = " ".join(f"word{i}" for i in range(300))  # no punctuation: one giant "sentence"
    sample = QASample("s", "t", "q?", ("a",), (long_sentence, "Short one. Another short one."))
    runner = qa.QARunner(tiny_llama, ["bm25"], rag_chunk_tokens=32)
    chunks = runner._chunks(sample)
    assert len(chunks) > 3
    assert all(len(tiny_llama.tokenizer(c, add_special_tokens=False)["input_ids"]) <= 40 for c in chunks)
    assert chunks[-1] == "Short one. Another short one."  # never across documents


def test_bm25_ranks_the_matching_chunk_first(tiny_llama) -> None:
    runner = qa.QARunner(tiny_llama, ["bm25"], rag_chunks=1)
    assert runner.available("bm25")
    chunks = ["Cats sleep all day.", "The violin is played by Dave every evening.", "Rome is warm."]
    assert runner._top_chunks("bm25", chunks, "Who plays the violin?") == [1]


def test_unknown_method_rejected(tiny_llama) -> None:
    with pytest.raises(ValueError, match="unknown"):
        qa.QARunner(tiny_llama, ["magic"])


def test_summarize_and_table() -> None:
    records = [
        {"dataset": "d", "method": "full", "f1": 1.0, "context_tokens": 100, "input_tokens": 100, "seconds": 2.0},
        {"dataset": "d", "method": "full", "f1": 0.0, "context_tokens": 300, "input_tokens": 300, "seconds": 4.0},
        {"dataset": "d", "method": "infiniretri", "f1": 0.5, "context_tokens": 10, "input_tokens": 100, "seconds": 1.0},
    ]
    rows = qa.summarize({"records": records})
    by = {(r["dataset"], r["method"]): r for r in rows}
    assert by[("d", "full")] == {
        "dataset": "d",
        "method": "full",
        "n": 2,
        "f1": 50.0,
        "context_tokens": 200,
        "input_tokens": 200,
        "seconds_per_question": 3.0,
    }
    assert by[("all", "infiniretri")]["f1"] == 50.0
    assert [r["method"] for r in rows[:2]] == ["infiniretri", "full"]  # METHODS order, datasets before "all"
    table = qa.markdown_table(rows)
    assert "| d | full | 2 | 50.00 | 200 | 200 | 3.0 |" in table
