"""Budgeted selection, fusion with a lexical signal, and the forward hook (tiny model, fast)."""

from __future__ import annotations

import pytest
import torch

from infiniretri_integrations import InfiniRetriEngine, RetrievalConfig
from infiniretri_integrations.core.attention import forward_through, question_attention, shared_prefix_attention
from infiniretri_integrations.core.lexical import bm25_passage_scores, passage_leads
from infiniretri_integrations.core.scoring import content_free_scores, context_scores, fill_budget, rank_fusion
from infiniretri_integrations.core.segmentation import segment_documents
from infiniretri_integrations.core.types import ForwardPass

PASSAGES = "\n\n".join(
    f"Passage {n}:\n{title}\n{body}"
    for n, (title, body) in enumerate(
        [
            ("Thames", "The river flows through London. It is 346 km long. Boats carry tourists daily."),
            ("Fuji", "The mountain is in Japan. Its height is 3776 metres. Snow covers it in winter."),
            ("Nile", "The river flows north. It crosses eleven countries. Farmers depend on its floods."),
            ("Alps", "The range spans eight countries. Its highest peak is Mont Blanc. Glaciers are shrinking."),
        ]
        * 4,
        start=1,
    )
)


@pytest.fixture
def engine(tiny_llama):
    return InfiniRetriEngine(tiny_llama, chunk_size=96, tokens_per_pass=8, max_sentence_tokens=48)


@pytest.fixture
def budgeted(tiny_llama):
    """The same engine without the top-k rule (a token budget keeps by score instead)."""
    return InfiniRetriEngine(tiny_llama, chunk_size=96, max_sentence_tokens=48)


@pytest.mark.parametrize("budget", [20, 64, 150])
def test_token_budget_is_exact_and_in_document_order(budgeted, budget):
    result = budgeted.retrieve([PASSAGES, PASSAGES[::-1]], "How high is Mount Fuji?", token_budget=budget)
    assert 0 < result.stats.kept_tokens <= budget
    keys = [(s.document_index, s.sentence_index) for s in result.sentences]
    assert keys == sorted(keys)
    # filled: no sentence left out of the final pass would still have fitted
    smallest = min(s.token_count for s in result.sentences)
    assert result.stats.kept_tokens + smallest > budget or budget >= result.stats.input_tokens


def test_token_budget_takes_the_best_scores(budgeted):
    wide = budgeted.retrieve(PASSAGES, "How high is Mount Fuji?", token_budget=400, working_set_tokens=400)
    narrow = budgeted.retrieve(PASSAGES, "How high is Mount Fuji?", token_budget=60, working_set_tokens=400)
    # same passes (the working cache is the same), so the narrow result is the top of the wide one
    ranked = sorted(wide.sentences, key=lambda s: -s.score)
    expected = fill_budget([s.score for s in ranked], [s.token_count for s in ranked], 60)
    assert {(s.document_index, s.sentence_index) for s in narrow.sentences} == {
        (ranked[i].document_index, ranked[i].sentence_index) for i in expected
    }


def test_budget_bigger_than_input_keeps_everything(budgeted):
    result = budgeted.retrieve("Short text. Two sentences.", "What?", token_budget=10_000)
    assert result.stats.kept_tokens == result.stats.input_tokens


def test_fill_budget_rule():
    assert fill_budget([0.9, 0.5, 0.8, 0.1], [6, 2, 5, 1], 8) == [0, 1]
    assert fill_budget(torch.tensor([0.1, 0.2]), [3, 3], 2) == []
    assert fill_budget([1.0, 1.0, 1.0], [1, 1, 1], 2) == [0, 1]  # ties: earlier first


def test_rank_fusion_is_rank_based_and_weighted():
    attention = torch.tensor([10.0, 9.0, 1.0])
    lexical = torch.tensor([0.0, 0.0, 7.0])
    assert rank_fusion(attention, lexical, weight=0.0).argmax().item() == 0
    assert rank_fusion(attention, lexical * 1000, weight=1.0).tolist() == rank_fusion(attention, lexical).tolist()
    assert rank_fusion(attention, lexical, weight=5.0).argmax().item() == 2


def test_passage_leads_and_bm25_use_the_passage_title(tokenizer):
    (sentences,) = segment_documents([PASSAGES], tokenizer, 48)
    leads = passage_leads(sentences)
    assert leads[0] == 0 and all(leads[i] <= i for i in range(len(leads)))
    assert "Fuji" in sentences[leads[next(i for i, s in enumerate(sentences) if "3776" in s.text)]].text
    scores = bm25_passage_scores(sentences, "Which mountain is called Fuji?")
    height = [i for i, s in enumerate(sentences) if "3776" in s.text]
    thames = [i for i, s in enumerate(sentences) if "346 km" in s.text]
    # "Its height is 3776 metres." never names Fuji; its passage title does
    assert min(scores[i] for i in height) > max(scores[i] for i in thames)


def test_fusion_changes_the_choice_towards_lexical_matches(budgeted):
    question = "What is the height of Fuji in metres?"
    plain = budgeted.retrieve(PASSAGES, question, token_budget=40, fusion=None)
    fused = budgeted.retrieve(PASSAGES, question, token_budget=40, fusion="bm25", fusion_weight=3.0)
    assert any("3776" in s.text for s in fused.sentences)
    assert [s.text for s in plain.sentences] != [s.text for s in fused.sentences]
    assert fused.stats.kept_tokens <= 40


def test_fusion_without_budget_keeps_as_many_tokens_as_the_top_k_rule(engine):
    plain = engine.retrieve(PASSAGES, "How long is the Thames?", fusion=None)
    fused = engine.retrieve(PASSAGES, "How long is the Thames?", fusion="bm25")
    assert 0 < fused.stats.kept_tokens <= plain.stats.kept_tokens + max(s.token_count for s in plain.sentences)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"token_budget": 0}, "token_budget must be a positive integer, got 0"),
        ({"fusion": "tfidf"}, "fusion must be None or one of \\['bm25'\\], got 'tfidf'"),
        ({"fusion_weight": -1}, "fusion_weight must be a finite number > 0, got -1"),
        ({"fusion_weight": 0}, "fusion_weight must be a finite number > 0, got 0; fusion=None switches fusion off"),
        ({"fusion": None, "fusion_weight": 2.0}, "fusion_weight=2.0 applies only with fusion"),
        ({"fusion": None, "fusion_stage": "pass"}, "fusion_stage='pass' applies only with fusion"),
        ({"token_budget": 64, "tokens_per_pass": 8}, "tokens_per_pass=8 does nothing with token_budget=64"),
    ],
)
def test_bad_selection_options_name_the_value(options, match):
    with pytest.raises(ValueError, match=match):
        RetrievalConfig(**options)


def test_on_forward_sees_exactly_what_is_fed(tiny_llama):
    seen: list[ForwardPass] = []
    engine = InfiniRetriEngine(
        tiny_llama, chunk_size=96, tokens_per_pass=8, max_sentence_tokens=48, on_forward=seen.append
    )
    result = engine.retrieve(PASSAGES, "How high is Mount Fuji?")
    assert [p.chunk_index for p in seen] == list(range(result.stats.chunks))
    for forward in seen:
        assert forward.input_ids.shape[1] % 64 == 0 and forward.length <= forward.input_ids.shape[1]
        assert forward.layers == result.stats.scoring_layers
        assert forward.question_start < forward.length
    per_call: list[ForwardPass] = []
    engine.retrieve(PASSAGES, "How high is Mount Fuji?", on_forward=per_call.append)
    assert len(per_call) == result.stats.chunks and len(seen) == result.stats.chunks


def test_forward_through_stops_at_the_layer(tiny_llama):
    reached: list[int] = []
    handles = [
        layer.register_forward_pre_hook(lambda module, args, index=index: reached.append(index))
        for index, layer in enumerate(tiny_llama.model.model.layers)
    ]
    try:
        forward_through(tiny_llama, torch.tensor([[1, 2, 3, 4, 5]]), 1)
        assert reached == [0, 1]
        reached.clear()
        rows = question_attention(tiny_llama, torch.tensor([[1, 2, 3, 4, 5]]), 3, [2])
        assert reached == [0, 1, 2] and rows.shape == (2, 5)
    finally:
        for handle in handles:
            handle.remove()
    assert tiny_llama.model.config._attn_implementation == "sdpa"  # restored after each pass


@pytest.mark.parametrize(("kind", "layers"), [("tiny_llama", [1, 2]), ("tiny_gemma", [3, 5])])
def test_shared_prefix_attention_equals_full_forwards(kind, layers, request):
    lm = request.getfixturevalue(kind)
    generator = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, 1000, (1, 150), generator=generator)
    questions = [torch.randint(0, 1000, (1, n), generator=generator) for n in (9, 5)]
    shared = shared_prefix_attention(lm, prefix, questions, layers, heads=[0, 1])
    for rows, question in zip(shared, questions, strict=True):
        full = question_attention(lm, torch.cat([prefix, question], dim=1), 150, layers, heads=[0, 1])
        torch.testing.assert_close(rows, full, atol=1e-6, rtol=1e-5)  # sliding-window layer 3 included


def test_content_free_scores_cancel_what_every_question_attends_to():
    # columns: [sink, a, b]; the question looks at b, the neutral question at the sink
    rows = torch.tensor([[0.6, 0.1, 0.3], [0.6, 0.1, 0.3]])
    neutral = torch.tensor([[0.6, 0.2, 0.2]])
    scores = content_free_scores(rows, neutral, 0, 3, None, window=1)
    assert scores.tolist() == pytest.approx([0.0, -0.1, 0.1])
    plain = context_scores(rows, 0, 3, None, window=1)
    assert plain.argmax().item() == 0 and scores.argmax().item() == 2


def test_content_free_engine_one_pass_per_chunk_and_a_different_choice(tiny_llama):
    seen: list[ForwardPass] = []
    engine = InfiniRetriEngine(tiny_llama, chunk_size=96, max_sentence_tokens=48)
    plain = engine.retrieve(PASSAGES, "How high is Mount Fuji?", token_budget=60, fusion=None)
    calibrated = engine.retrieve(
        PASSAGES, "How high is Mount Fuji?", token_budget=60, fusion=None, content_free=True, on_forward=seen.append
    )
    assert len(seen) == calibrated.stats.chunks
    assert 0 < calibrated.stats.kept_tokens <= 60
    assert [s.text for s in plain.sentences] != [s.text for s in calibrated.sentences]


def _whitespace_tokenizer(text: str):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(sorted(set(text.split())))}}
    backend = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_separate_scoring_model_scores_and_the_budget_counts_reader_tokens(tiny_llama, tiny_gemma):
    from infiniretri_integrations import LocalModel

    reader = LocalModel(model=tiny_gemma.model, tokenizer=_whitespace_tokenizer(PASSAGES), name="whitespace-reader")
    seen: list[ForwardPass] = []
    engine = InfiniRetriEngine(
        reader, scoring_model=tiny_llama, chunk_size=96, max_sentence_tokens=48, on_forward=seen.append
    )
    assert engine.scoring_local_model is tiny_llama and engine.local_model is reader
    result = engine.retrieve(PASSAGES, "How high is Mount Fuji?", token_budget=40)
    assert seen and all(p.layers == (tiny_llama.num_layers - 1,) for p in seen)  # the scorer's own default layer
    for sentence in result.sentences:
        assert sentence.token_count == len(reader.tokenizer(sentence.text, add_special_tokens=False)["input_ids"])
    assert 0 < result.stats.kept_tokens <= 40
    same = InfiniRetriEngine(tiny_llama, chunk_size=96, tokens_per_pass=8, max_sentence_tokens=48)
    assert same.scoring_local_model is same.local_model


def test_small_chunk_lowers_the_default_sentence_cap_but_not_an_explicit_one():
    assert RetrievalConfig(chunk_size=128).max_sentence_tokens is None  # unset: follows the chunk
    assert RetrievalConfig(chunk_size=128).effective_max_sentence_tokens(128) == 128
    assert RetrievalConfig(max_sentence_tokens=100).effective_max_sentence_tokens(128) == 100
    with pytest.raises(ValueError, match=r"max_sentence_tokens \(300\) must not exceed chunk_size \(128\)"):
        RetrievalConfig(chunk_size=128, max_sentence_tokens=300)


def test_default_chunk_fits_a_small_window_but_an_explicit_one_is_checked(tiny_llama):
    small = InfiniRetriEngine(tiny_llama, max_context_tokens=1024)
    seen: list[ForwardPass] = []
    result = small.retrieve(PASSAGES * 3, "How high is Mount Fuji?", on_forward=seen.append)
    assert result.stats.chunks > 1 and max(p.length for p in seen) <= 1024
    with pytest.raises(ValueError, match=r"chunk_size \(4000\) plus the question and template"):
        InfiniRetriEngine(tiny_llama, max_context_tokens=1024, chunk_size=4000).retrieve(PASSAGES, "Where?")


def test_fusion_over_text_without_any_word_gives_attention_order(budgeted):
    result = budgeted.retrieve("... !!! ??? --- ... ;;; ...", "What?", token_budget=10_000)
    assert result.stats.kept_tokens == result.stats.input_tokens
