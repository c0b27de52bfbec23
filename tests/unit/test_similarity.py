"""The similarity signal (core/similarity.py): its arithmetic, the hidden states the passes record,
the options, and its place in the final fusion (tiny models, fast)."""

from __future__ import annotations

import pytest
import torch
from test_selection import PASSAGES  # tests/unit is on the path (rootdir conftest, rootless test folders)

from infiniretri_integrations import InfiniRetriEngine, RetrievalConfig
from infiniretri_integrations.core.attention import capturing_states, hidden_states_at, question_attention
from infiniretri_integrations.core.selection import Kept, final_selection
from infiniretri_integrations.core.similarity import (
    SentenceVectors,
    TokenWeights,
    embedding_vectors,
    question_token_ids,
    similarity_layer,
)
from infiniretri_integrations.core.types import Sentence

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sentence(index: int, ids: tuple[int, ...]) -> Sentence:
    return Sentence(0, index, index * 10, index * 10 + 5, f"s{index}.", ids)


def test_scores_are_cosines_of_weighted_standardised_means():
    sentences = [_sentence(0, (1, 2)), _sentence(1, (3,)), _sentence(2, (4, 5, 6))]
    states = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = TokenWeights(torch.tensor([1.0, 0.5, 2.0, 1.0, 0.25, 1.0, 3.0], dtype=torch.float64))
    vectors = SentenceVectors(weights)
    vectors.add(sentences, states)
    question_ids, question_states = [2, 6], torch.randn(2, 4, generator=torch.Generator().manual_seed(1))

    mean, std = states.mean(dim=0), states.std(dim=0, unbiased=False)
    z = (states - mean) / std
    w = weights.of_ids([1, 2, 3, 4, 5, 6])
    expected_vectors = [w[0:2] @ z[0:2], w[2:3] @ z[2:3], w[3:6] @ z[3:6]]
    question = weights.of_ids(question_ids) @ ((question_states.double() - mean) / std)
    expected = [torch.nn.functional.cosine_similarity(v, question, dim=0).item() for v in expected_vectors]
    assert vectors.scores(sentences, question_ids, question_states) == pytest.approx(expected, abs=1e-6)


def test_a_sentence_read_again_counts_once_and_unread_ones_score_zero():
    first, second = _sentence(0, (1,)), _sentence(1, (2,))
    vectors = SentenceVectors(TokenWeights.uniform())
    vectors.add([first, second], torch.tensor([[1.0, 2.0], [3.0, 1.0]]))
    vectors.add([first], torch.tensor([[100.0, 100.0]]))
    assert vectors.tokens == 2
    unread = _sentence(2, (3,))
    scores = vectors.scores([first, unread], [1], torch.tensor([[1.0, 2.0]]))
    assert scores[1] == 0.0 and scores[0] == pytest.approx(1.0)


def test_no_states_recorded_gives_zeros_and_a_clear_error_for_the_statistics():
    vectors = SentenceVectors(TokenWeights.uniform())
    assert vectors.scores([_sentence(0, (1,))], [1], torch.ones(1, 3)) == [0.0]
    with pytest.raises(ValueError, match="no sentence states were recorded"):
        vectors.standardisation()


def test_smooth_inverse_frequency_weights_fall_with_frequency():
    weights = TokenWeights.of([_sentence(0, (7, 7, 7, 8)), _sentence(1, (7, 9))])
    seven, eight, unseen = weights.of_ids([7, 8, 12345]).tolist()
    assert seven < eight < 1.0 and unseen == 1.0


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gemma"])
@pytest.mark.parametrize("layer", [0, 2])
def test_captured_states_equal_the_models_hidden_states(request, fixture, layer):
    lm = request.getfixturevalue(fixture)
    ids = torch.tensor([list(range(5, 45))])
    expected = lm.model(ids, output_hidden_states=True).hidden_states[layer][0]
    with capturing_states(lm, layer) as states:
        question_attention(lm, ids, 30, [3])
    assert len(states.calls) == 1
    torch.testing.assert_close(states.calls[0][0], expected.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hidden_states_at(lm, ids, layer), expected.float(), rtol=1e-5, atol=1e-5)


def test_the_passes_record_each_sentence_from_its_first_read(tiny_llama):
    """Every sentence read gets a vector equal to its tokens' states in the pass that first read it
    (chunk sentences; the working set's sentences are not recorded again)."""
    engine = InfiniRetriEngine(tiny_llama, chunk_size=96, max_sentence_tokens=48, tokens_per_pass=8, similarity_layer=2)
    seen: list = []
    prepared_holder: dict = {}
    original_prepare = engine._prepare

    def prepare(*args, **kwargs):
        prepared = original_prepare(*args, **kwargs)
        prepared_holder["p"] = prepared
        return prepared

    engine._prepare = prepare  # type: ignore[method-assign]
    engine.retrieve([PASSAGES], "Which river crosses eleven countries?", on_forward=seen.append)
    (run,) = prepared_holder["p"].runs
    assert run.vectors is not None
    assert set(run.vectors.sums) == set(run.attention)  # every sentence read, once
    assert run.vectors.tokens == sum(s.token_count for s in run.attention)
    first = seen[0]
    states = tiny_llama.model(first.input_ids[:, : first.length], output_hidden_states=True).hidden_states[2][0]
    chunk = [s for s in prepared_holder["p"].groups[0].chunks[0]]
    offset = first.question_start - sum(s.token_count for s in chunk)
    offset -= len(run.layout.middle)
    sentence = chunk[1]
    start = offset + chunk[0].token_count
    rows = states[start : start + sentence.token_count].double()
    weights = run.vectors.weights.of_ids(sentence.token_ids)
    torch.testing.assert_close(run.vectors.sums[sentence][0], (weights @ rows).float(), rtol=1e-4, atol=1e-4)


def test_similarity_moves_a_needle_into_the_final_cut():
    """The final fusion: a sentence that attention and BM25 rank last but the similarity ranks
    first enters the cut once the similarity weighs enough."""
    sentences = [_sentence(i, (i + 1,)) for i in range(6)]
    working = [Kept(s, 1.0) for s in sentences[:2]]
    attention = {s: 6.0 - i for i, s in enumerate(sentences)}
    lexical = {s: 6.0 - i for i, s in enumerate(sentences)}
    similarity = {s: float(i) for i, s in enumerate(sentences)}
    cfg = RetrievalConfig(token_budget=2, similarity_weight=4.0)
    kept = final_selection(working, attention, lexical, cfg, similarity=similarity)
    assert sentences[5] in [k.sentence for k in kept]
    without = final_selection(working, attention, lexical, RetrievalConfig(token_budget=2, similarity=None))
    assert sentences[5] not in [k.sentence for k in without]


@pytest.mark.parametrize("signal", ["hidden", "embeddings"])
def test_retrieve_many_equals_retrieve_with_similarity(tiny_llama, signal):
    engine = InfiniRetriEngine(tiny_llama, chunk_size=96, max_sentence_tokens=48, token_budget=64, similarity=signal)
    questions = ["Which river crosses eleven countries?", "How high is Mount Fuji?"]
    many = engine.retrieve_many([PASSAGES], questions)
    for question, result in zip(questions, many, strict=True):
        alone = engine.retrieve([PASSAGES], question)
        assert [(s.start, s.score) for s in result.sentences] == [(s.start, s.score) for s in alone.sentences]


def test_similarity_changes_only_the_final_cut(tiny_llama):
    """The passes are the same with and without the similarity (same forwards fed)."""
    fed: dict[str, list] = {"on": [], "off": []}
    engine = InfiniRetriEngine(tiny_llama, chunk_size=96, max_sentence_tokens=48, token_budget=64)
    engine.retrieve([PASSAGES], "Where is the Thames?", on_forward=fed["on"].append)
    engine.retrieve([PASSAGES], "Where is the Thames?", on_forward=fed["off"].append, similarity=None)
    assert [f.input_ids.tolist() for f in fed["on"]] == [f.input_ids.tolist() for f in fed["off"]]


def test_embedding_vectors_read_the_input_embeddings(tiny_llama):
    sentences = [_sentence(0, (11, 12)), _sentence(1, (13,))]
    vectors = embedding_vectors(tiny_llama, sentences, TokenWeights.uniform())
    table = tiny_llama.model.get_input_embeddings().weight.double()
    torch.testing.assert_close(vectors.sums[sentences[0]][0], (table[11] + table[12]).float())
    assert question_token_ids(tiny_llama, "") == [tiny_llama.tokenizer.eos_token_id]


@pytest.mark.parametrize("weighting", ["uniform", "sif"])
def test_embedding_vectors_equal_the_rows_read_one_by_one(tiny_llama, weighting):
    """The lookup by embedding_bag gives exactly what SentenceVectors.add gives over each token's row
    (repeated tokens, a sentence given twice, an empty one), so scores and rankings are unchanged."""
    ids = [(5, 9, 9, 31), (9,), (), (40, 5, 77, 9, 12, 5), (31, 31)]
    sentences = [_sentence(i, tokens) for i, tokens in enumerate(ids)]
    weights = TokenWeights.uniform() if weighting == "uniform" else TokenWeights.of(sentences)
    fast = embedding_vectors(tiny_llama, [*sentences, sentences[0]], weights)
    reference = SentenceVectors(weights)
    table = tiny_llama.model.get_input_embeddings().weight.detach().float()
    read = [s for s in sentences if s.token_count]
    reference.add(read, table[torch.tensor([t for s in read for t in s.token_ids])])
    assert fast.tokens == reference.tokens == sum(len(t) for t in ids)
    assert set(fast.sums) == set(reference.sums) == set(read)
    for sentence in read:
        assert torch.equal(fast.sums[sentence][0], reference.sums[sentence][0])
        assert fast.sums[sentence][1] == reference.sums[sentence][1]
    torch.testing.assert_close(fast.standardisation(), reference.standardisation(), rtol=1e-12, atol=1e-12)
    question = table[torch.tensor([9, 40])]
    assert fast.scores(sentences, [9, 40], question) == reference.scores(sentences, [9, 40], question)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"similarity": "cosine"}, "similarity must be None or one of \\['hidden', 'embeddings'\\], got 'cosine'"),
        ({"similarity": None, "similarity_weight": 2.0}, "similarity_weight=2.0 applies only with similarity"),
        (
            {"similarity": "embeddings", "similarity_layer": 3},
            "similarity_layer=3 applies only with similarity='hidden'",
        ),
        ({"similarity_weight": 0}, "similarity_weight must be a finite number > 0, got 0"),
        ({"similarity_layer": "9"}, "similarity_layer must be a layer index \\(int\\), got '9'"),
    ],
)
def test_bad_similarity_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        RetrievalConfig(**options)


def test_similarity_layer_defaults_and_bounds():
    assert similarity_layer(RetrievalConfig(), 30, [18]) == 9
    assert similarity_layer(RetrievalConfig(similarity_layer=-25), 30, [18]) == 5
    assert similarity_layer(RetrievalConfig(similarity="embeddings"), 30, [18]) is None
    with pytest.raises(ValueError, match="similarity_layer=30 is out of range for a model with 30 layers"):
        similarity_layer(RetrievalConfig(similarity_layer=30), 30, [18])


def test_switching_similarity_off_per_call_clears_the_engines_similarity_options():
    config = RetrievalConfig(similarity_layer=4, similarity_weight=3.0).replace(similarity=None)
    assert (config.similarity, config.similarity_layer, config.similarity_weight) == (None, None, None)
    assert RetrievalConfig(similarity_layer=4).replace(similarity="embeddings").similarity_layer is None
    assert RetrievalConfig(fusion_weight=1.0).replace(fusion=None).fusion_weight is None
