"""One rule for a document's score: the best score of its kept sentences (core, LangChain, LlamaIndex)."""

from __future__ import annotations

import pytest

from infiniretri_integrations.core.outputs import best_score_per_document, keep_best, select_outputs
from infiniretri_integrations.core.types import RetrievedSentence


def _sentence(document_index: int, sentence_index: int, score: float) -> RetrievedSentence:
    text = f" d{document_index}s{sentence_index}."
    start = 10 * sentence_index
    return RetrievedSentence(
        text, score, document_index, f"doc{document_index}", sentence_index, start, start + len(text), 3
    )


SENTENCES = [
    _sentence(0, 0, 0.5),
    _sentence(0, 3, 2.0),
    _sentence(1, 1, -1.0),  # negative scores happen (content-free differences)
    _sentence(1, 2, -3.0),
    _sentence(2, 0, 1.5),
    _sentence(2, 5, 1.5),
]


def test_best_score_per_document_is_the_max_of_each_documents_sentences():
    best = best_score_per_document(SENTENCES)
    assert best == {0: 2.0, 1: -1.0, 2: 1.5}
    assert list(best) == [0, 1, 2]  # first appearance


def test_best_score_per_document_keys_follow_first_appearance_and_skip_absent_documents():
    mixed = [_sentence(3, 0, 1.0), _sentence(1, 0, 5.0), _sentence(3, 1, 7.0)]
    assert list(best_score_per_document(mixed).items()) == [(3, 7.0), (1, 5.0)]
    assert best_score_per_document([]) == {}
    only_negative = [_sentence(0, 0, -2.0), _sentence(0, 1, -0.5)]
    assert best_score_per_document(only_negative) == {0: -0.5}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_keep_best_by_document_ranks_documents_by_their_best_score(k):
    best = best_score_per_document(SENTENCES)
    ranked = sorted(best, key=lambda d: (-best[d], d))[:k]
    kept = keep_best(SENTENCES, k, "document")
    assert {s.document_index for s in kept} == set(ranked)
    assert kept == [s for s in SENTENCES if s.document_index in ranked]  # every sentence, document order


def test_select_outputs_by_document_after_threshold_uses_the_remaining_best():
    # document 0's best (2.0) is cut by the threshold: its score is then its best remaining sentence
    kept, _ = select_outputs(SENTENCES, 1, "document", score_threshold=0.4)
    remaining = [s for s in SENTENCES if s.score >= 0.4]
    assert best_score_per_document(remaining) == {0: 2.0, 2: 1.5}
    assert {s.document_index for s in kept} == {0}


def test_langchain_grouped_document_scores_with_the_same_rule():
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from infiniretri_integrations.langchain._documents import build_documents

    sources = [Document(page_content="x" * 80, id=f"doc{i}") for i in range(3)]
    grouped = build_documents(SENTENCES, sources, "document")
    best = best_score_per_document(SENTENCES)
    assert [d.metadata["attention_score"] for d in grouped] == [best[0], best[1], best[2]]
    assert [d.metadata["source_index"] for d in grouped] == [0, 1, 2]
    scaled = build_documents(SENTENCES, sources, "document", scale=lambda score: score / 10)
    assert [d.metadata["relevance_score"] for d in scaled] == [best[0] / 10, best[1] / 10, best[2] / 10]


def test_langchain_sentences_event_carries_to_dict():
    pytest.importorskip("langchain_core")
    from infiniretri_integrations.core.types import RetrievalResult, RetrievalStats
    from infiniretri_integrations.langchain._reporting import sentences_payload

    kept = [
        RetrievedSentence(" Bob lives in Rome.", 2.5, 1, "bob", 0, 0, 19, 6, {"page": 3}),
        RetrievedSentence("\nCarol has cats. ", -0.5, 2, None, 4, 40, 57, 5),
    ]
    payload = sentences_payload(RetrievalResult("Where?", kept, RetrievalStats(documents=3)))
    assert payload["question"] == "Where?" and payload["stats"]["documents"] == 3
    assert payload["sentences"] == [s.to_dict() for s in kept]
    first, second = payload["sentences"]
    assert (first["text"], first["start"], first["end"], first["token_count"]) == ("Bob lives in Rome.", 1, 19, 6)
    assert first["metadata"] == {"page": 3} and second["metadata"] == {}
    assert (second["text"], second["start"], second["end"]) == ("Carol has cats.", 41, 56)
