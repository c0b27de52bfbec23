from __future__ import annotations

import itertools

import pytest

from infiniretri_integrations.core.chunking import pack_chunks
from infiniretri_integrations.core.segmentation import segment_documents, sentence_spans


def texts(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


@pytest.mark.parametrize(
    "text",
    [
        "One. Two! Three? Four",
        "  leading space. trailing space.   ",
        "Dr. Who met J. R. R. Tolkien in the U.S. last year. Then e.g. tea.",
        "第一句。第二句！第三句？",
        "line one\nline two\n\nparagraph two.",
        "def f(x):\n    return x.y.z\n",
        "\x00\x01binary\x00junk\ufffd.",
    ],
)
def test_spans_cover_text_exactly(text):
    spans = sentence_spans(text)
    assert "".join(text[s:e] for s, e in spans) == text
    assert all(text[s:e].strip() for s, e in spans)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


def test_sentence_rules():
    assert texts("Dr. Smith arrived. He sat down.") == ["Dr. Smith arrived.", " He sat down."]
    assert texts("J. Smith came. U.S. army is big.") == ["J. Smith came.", " U.S. army is big."]
    assert texts("Pi is 3.14 today. Yes.") == ["Pi is 3.14 today.", " Yes."]
    assert texts("accelerating.We wouldn't.") == ["accelerating.", "We wouldn't."]
    assert texts('He said "stop." Then left.') == ['He said "stop."', " Then left."]
    assert texts("天气很好。我们走吧！") == ["天气很好。", "我们走吧！"]
    assert texts("para one\n\npara two") == ["para one", "\n\npara two"]
    assert texts("hard\nwrapped line.") == ["hard\nwrapped line."]
    assert texts("   \n\t ") == []


def test_long_unpunctuated_text_is_split_within_budget(tokenizer):
    text = " ".join(f"word{i}" for i in range(3000))
    (sentences,) = segment_documents([text], tokenizer, max_sentence_tokens=64)
    assert len(sentences) > 10
    assert max(s.token_count for s in sentences) <= 64
    assert "".join(s.text for s in sentences) == text
    assert all(not s.text.startswith("word") or i == 0 for i, s in enumerate(sentences)), "cuts fall on spaces"


def test_code_splits_at_line_breaks_first(tokenizer):
    code = "\n".join(f"    value_{i} = compute(value_{i - 1}) + {i}" for i in range(200))
    (sentences,) = segment_documents([code], tokenizer, max_sentence_tokens=100)
    assert max(s.token_count for s in sentences) <= 100
    assert all(s.text.startswith("\n") for s in sentences[1:])
    assert "".join(s.text for s in sentences) == code


def test_no_whitespace_at_all_falls_back_to_token_cuts(tokenizer):
    junk = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(3000))  # CJK without punctuation
    (sentences,) = segment_documents([junk], tokenizer, max_sentence_tokens=50)
    assert max(s.token_count for s in sentences) <= 50
    assert "".join(s.text for s in sentences) == junk


def test_binary_junk_and_surrogates_keep_offsets(tokenizer):
    raw = bytes(range(256)) * 8
    text = raw.decode("utf-8", errors="surrogateescape") + " The end."
    (sentences,) = segment_documents([text], tokenizer, max_sentence_tokens=64)
    assert "".join(s.text for s in sentences) == text
    assert all(0 < s.token_count <= 64 for s in sentences)


def test_segments_are_tokenized_per_sentence(tokenizer):
    docs = ["Alpha beta. Gamma delta.", "", "Epsilon."]
    per_doc = segment_documents(docs, tokenizer, 64)
    assert [len(d) for d in per_doc] == [2, 0, 1]
    for doc_index, sentences in enumerate(per_doc):
        for s in sentences:
            assert s.document_index == doc_index
            assert list(s.token_ids) == tokenizer(s.text, add_special_tokens=False)["input_ids"]


def test_pack_chunks_never_splits_a_sentence(tokenizer):
    text = " ".join(f"Sentence number {i} is here." for i in range(300))
    (sentences,) = segment_documents([text], tokenizer, 64)
    chunks = pack_chunks(sentences, 100)
    assert [s for c in chunks for s in c] == sentences
    assert all(sum(s.token_count for s in c) <= 100 for c in chunks)
    assert all(sum(s.token_count for s in a) + b[0].token_count > 100 for a, b in itertools.pairwise(chunks))
