"""Engine behaviour on the tiny model (fast): inputs, provenance, limits, threads, progress."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from infiniretri_integrations import InfiniRetriEngine, SourceDocument
from infiniretri_integrations.core.types import ForwardPass

DOCS = [
    SourceDocument(
        "The river Thames flows through London. It is 346 km long. Boats carry tourists daily.",
        id="thames",
        metadata={"kind": "river", "n": 1},
    ),
    SourceDocument("   \n  ", id="blank", metadata={"kind": "empty"}),
    SourceDocument(
        "Mount Fuji is in Japan. Its height is 3776 metres. Snow covers it in winter.",
        id="fuji",
        metadata={"kind": "mountain"},
    ),
]


@pytest.fixture
def engine(tiny_llama):
    return InfiniRetriEngine(tiny_llama, chunk_size=64, tokens_per_pass=8, max_sentence_tokens=32)


def test_provenance_ids_metadata_order_and_spans(engine):
    result = engine.retrieve(DOCS * 3, "How high is Mount Fuji?")
    assert result.stats.skipped_documents == [1, 4, 7]
    assert result.stats.documents == 9
    keys = [(s.document_index, s.sentence_index) for s in result.sentences]
    assert keys == sorted(keys), "document order"
    for s in result.sentences:
        source = DOCS[s.document_index % 3]
        assert s.document_id == source.id
        assert s.metadata == source.metadata
        assert source.text[s.start : s.end] == s.text
    assert result.stats.kept_tokens == sum(s.token_count for s in result.sentences)
    assert 0 < result.stats.kept_tokens < result.stats.input_tokens


def test_accepts_texts_and_mappings(engine):
    result = engine.retrieve(
        ["Plain text one. Two.", {"page_content": "Mapped text. More.", "id": 7, "metadata": {"a": 1}}], "What?"
    )
    assert {s.document_id for s in result.sentences} <= {None, "7"}
    assert all(s.metadata == {"a": 1} for s in result.sentences if s.document_index == 1)


@pytest.mark.parametrize(
    ("documents", "question", "error", "match"),
    [
        ([], "q?", ValueError, "documents is empty"),
        (["text."], "   ", ValueError, "question must be a non-empty string, got '   '"),
        (["text."], None, TypeError, "question must be a str"),
        ([b"bytes doc"], "q?", TypeError, "decode bytes first"),
        (b"bytes", "q?", TypeError, "got bytes"),
        ([{"title": "no text"}], "q?", TypeError, "document 0 must have a str 'text'"),
        ([3.5], "q?", TypeError, "document 0 must be a str"),
    ],
)
def test_bad_input_errors(engine, documents, question, error, match):
    with pytest.raises(error, match=match):
        engine.retrieve(documents, question)


def test_all_blank_documents_give_empty_result(engine):
    result = engine.retrieve(["", "  \n "], "Anything?")
    assert result.sentences == []
    assert result.stats.skipped_documents == [0, 1]
    assert result.stats.chunks == 0


def test_chunk_smaller_than_prompt_is_rejected(tiny_llama):
    engine = InfiniRetriEngine(tiny_llama, chunk_size=16, max_sentence_tokens=16)
    with pytest.raises(ValueError, match=r"chunk_size \(16\) must be larger than the question and prompt template"):
        engine.retrieve(["Some text."], "What is this about?")


def test_question_longer_than_window(tiny_llama):
    engine = InfiniRetriEngine(tiny_llama, max_context_tokens=2048)
    question = "why " * 3000 + "?"
    with pytest.raises(ValueError, match=r"does not fit the model window of 2048 tokens"):
        engine.retrieve(["Some text."], question)


def test_scoring_layer_out_of_range(tiny_llama):
    with pytest.raises(ValueError, match="scoring_layer 9 is out of range for a model with 4 layers"):
        InfiniRetriEngine(tiny_llama, scoring_layer=9).retrieve(["Text."], "Q?")


def test_nul_bytes_and_junk_are_read(engine):
    junk = "abc\x00def. " + bytes(range(1, 255)).decode("latin-1") + " The key is 42."
    result = engine.retrieve([junk], "What is the key?")
    assert result.stats.input_tokens > 0
    assert all(junk[s.start : s.end] == s.text for s in result.sentences)


def test_cache_cap_and_memory_bound(tiny_llama, stdlib_haystack):
    """Every forward pass holds at most one chunk plus the capped cache plus the prompt."""
    passes: list[ForwardPass] = []
    engine = InfiniRetriEngine(
        tiny_llama, chunk_size=256, tokens_per_pass=200, working_set_tokens=128, max_sentence_tokens=64
    )
    text = stdlib_haystack[:40_000]
    result = engine.retrieve([text], "What does the json module do?", on_forward=passes.append)
    lengths = [p.input_ids.shape[1] for p in passes]
    assert all(p.length <= p.input_ids.shape[1] for p in passes)
    assert result.stats.chunks == len(lengths) > 5
    assert result.stats.kept_tokens <= 128
    from infiniretri_integrations.core.prompting import build_layout

    fixed = build_layout(tiny_llama.tokenizer, engine.config, "What does the json module do?").fixed_tokens
    from infiniretri_integrations.core.passes import SHAPE_BUCKET

    bound = -(-(256 + 128 + fixed) // SHAPE_BUCKET) * SHAPE_BUCKET  # right-padding to the shape bucket
    assert max(lengths) <= bound
    assert all(length % SHAPE_BUCKET == 0 for length in lengths)


def test_progress_callback_reports_every_chunk(engine):
    seen = []
    result = engine.retrieve(
        [DOCS[0].text * 10], "How long is the Thames?", on_progress=lambda p, kept: seen.append((p, len(kept)))
    )
    assert [p.chunk_index for p, _ in seen] == list(range(result.stats.chunks))
    assert seen[-1][0].tokens_read == result.stats.input_tokens
    assert seen[-1][1] == len(result.sentences)


def test_concurrent_calls_match_sequential(engine):
    questions = [
        "How high is Mount Fuji?",
        "How long is the Thames?",
        "What covers Fuji in winter?",
        "Who rides boats?",
    ]
    docs = [DOCS[0].text * 4, DOCS[2].text * 4]
    sequential = [
        [(s.document_index, s.sentence_index, round(s.score, 5)) for s in engine.retrieve(docs, q)] for q in questions
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(
            pool.map(
                lambda q: [(s.document_index, s.sentence_index, round(s.score, 5)) for s in engine.retrieve(docs, q)],
                questions * 2,
            )
        )
    assert parallel == sequential * 2


def test_model_attention_is_restored_after_scoring(engine, tiny_llama):
    engine.retrieve(["A. B. C."], "Q?")
    assert tiny_llama.model.config._attn_implementation == "sdpa"


def test_lazy_model_loading_and_injection(tiny_llama):
    lazy = InfiniRetriEngine(tokens_per_pass=5)
    assert not lazy.model_loaded
    injected = InfiniRetriEngine(tiny_llama.model, tiny_llama.tokenizer)
    assert injected.model_loaded and injected.local_model.lock is tiny_llama.lock
    with pytest.raises(ValueError, match="tokenizer is required"):
        InfiniRetriEngine(tiny_llama.model)


def test_float64_and_bfloat16_models_run(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    from infiniretri_integrations import LocalModel

    for dtype in (torch.bfloat16, torch.float64):
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
            )
        ).to(dtype)
        result = InfiniRetriEngine(
            LocalModel(model=model, tokenizer=tokenizer), chunk_size=64, max_sentence_tokens=32, tokens_per_pass=4
        ).retrieve(["One two. Three four. Five six."], "Q?")
        assert result.sentences
