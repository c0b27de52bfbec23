"""The question's similarity to each sentence in the scoring model's own representations.

Attention finds what the question's words point at; it rarely bridges a question to evidence
that shares none of its words ("Which character has been to Rome?" against "Liesel tossed a
coin into the Trevi Fountain."), which is why people run embedding models. The scoring model
already holds that association in its hidden states. This signal reads it without any other
model or index:

1. every context token's hidden state entering ``similarity_layer`` is captured during the
   scoring pass that first reads its sentence (the pass runs through that layer anyway);
2. the states are standardised per dimension with the mean and standard deviation of all
   context tokens read in the call (so that the directions every token shares, and the few
   dimensions with huge activations, do not dominate);
3. a sentence's vector is the mean of its standardised token states; the question's is the mean
   of its tokens' states from one short forward of the question alone (before any context);
4. the score is their cosine.

Registered as :data:`SIMILARITY_SIGNALS` (``RetrievalConfig(similarity=...)``): ``"hidden"``
(the above) and ``"embeddings"`` (the same with the model's input embeddings, which needs no
forward pass: the cascade's cheap first stage uses it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from infiniretri_integrations.core.config import SIMILARITY_DEPTH, RetrievalConfig
from infiniretri_integrations.core.config import SIMILARITY_SIGNALS as SIMILARITY_SIGNALS
from infiniretri_integrations.core.types import Sentence

if TYPE_CHECKING:
    from infiniretri_integrations.core.models import LocalModel


STD_FLOOR = 1e-6

SIF_SMOOTHING = 1e-3
"""``a`` of the smooth inverse frequency weight ``a / (a + p(token))`` (Arora et al., 2017)."""


@dataclass(frozen=True)
class TokenWeights:
    """Smooth inverse frequency weights of token ids, ``a / (a + p)`` with ``p`` the token's share of
    the input (frequent tokens, "the" or ".", weigh little; a token absent from the input weighs 1).

    Example:
        >>> weights = TokenWeights.of([Sentence(0, 0, 0, 0, "", (5, 5, 5, 7))])
        >>> [round(w, 4) for w in weights.of_ids([5, 7, 9]).tolist()]
        [0.0013, 0.004, 1.0]
    """

    table: torch.Tensor
    """``[vocabulary seen]`` weight per token id."""

    @classmethod
    def of(cls, sentences: Sequence[Sentence], smoothing: float = SIF_SMOOTHING) -> TokenWeights:
        ids = torch.tensor([t for s in sentences for t in s.token_ids], dtype=torch.long)
        if not ids.numel():
            return cls(torch.ones(0, dtype=torch.float64))
        share = torch.bincount(ids).to(torch.float64) / ids.numel()
        return cls(smoothing / (smoothing + share))

    @classmethod
    def uniform(cls) -> TokenWeights:
        """Every token weighs 1."""
        return cls(torch.ones(0, dtype=torch.float64))

    def of_ids(self, ids: Sequence[int]) -> torch.Tensor:
        """``[len(ids)]`` float64 weights."""
        index = torch.tensor(list(ids), dtype=torch.long)
        known = index < self.table.numel()
        weights = torch.ones(len(index), dtype=torch.float64)
        weights[known] = self.table[index[known]]
        return weights


@dataclass
class SentenceVectors:
    """Per sentence, the weighted sum of its tokens' states at the similarity layer, and running
    sums of every token's state and squared state (for the standardisation), accumulated as
    sentences are read. Each sentence counts once: a sentence read again (the working set) is
    skipped.

    Example:
        >>> s = Sentence(0, 0, 0, 2, "Hi.", (1, 2))
        >>> vectors = SentenceVectors(TokenWeights.uniform())
        >>> vectors.add([s], torch.tensor([[1.0, 0.0], [3.0, 2.0]]))
        >>> vectors.add([s], torch.tensor([[9.0, 9.0], [9.0, 9.0]]))  # read again: ignored
        >>> vectors.tokens, vectors.sums[s][0].tolist(), vectors.sums[s][1]
        (2, [4.0, 2.0], 2.0)
    """

    weights: TokenWeights
    sums: dict[Sentence, tuple[torch.Tensor, float]] = field(default_factory=dict)
    """Per sentence: ``(sum of weight x state [hidden], sum of weights)``."""
    tokens: int = 0
    total: torch.Tensor | None = None
    squares: torch.Tensor | None = None

    def add(self, sentences: Sequence[Sentence], states: torch.Tensor) -> None:
        """Record ``sentences`` (consecutive, in the order of ``states``) not seen before.

        Args:
            states: ``[sum of the sentences' token counts, hidden]`` their tokens' states.
        """
        counts = torch.tensor([s.token_count for s in sentences], dtype=torch.long)
        fresh = [i for i, s in enumerate(sentences) if s.token_count and s not in self.sums]
        if not fresh:
            return
        owner = torch.repeat_interleave(torch.arange(len(sentences)), counts)
        slot = torch.full((len(sentences),), -1, dtype=torch.long)
        slot[fresh] = torch.arange(len(fresh))
        keep = slot[owner] >= 0
        rows = states[keep].to(torch.float64)
        ids = [t for i in fresh for t in sentences[i].token_ids]
        weights = self.weights.of_ids(ids)
        target = slot[owner][keep]
        weighted = torch.zeros(len(fresh), rows.shape[1], dtype=torch.float64).index_add_(
            0, target, rows * weights[:, None]
        )
        totals = torch.zeros(len(fresh), dtype=torch.float64).index_add_(0, target, weights)
        for j, i in enumerate(fresh):
            self.sums[sentences[i]] = (weighted[j].float(), float(totals[j]))
        self.tokens += rows.shape[0]
        total, squares = rows.sum(dim=0), (rows * rows).sum(dim=0)
        self.total = total if self.total is None else self.total + total
        self.squares = squares if self.squares is None else self.squares + squares

    def standardisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)``, each ``[hidden]``, over every token recorded."""
        if self.total is None or self.squares is None or not self.tokens:
            msg = "no sentence states were recorded"
            raise ValueError(msg)
        mean = self.total / self.tokens
        variance = (self.squares / self.tokens - mean * mean).clamp_min(0.0)
        return mean, variance.sqrt().clamp_min(STD_FLOOR)

    def scores(
        self, sentences: Sequence[Sentence], question_ids: Sequence[int], question_states: torch.Tensor
    ) -> list[float]:
        """Cosine of each sentence's weighted mean standardised state with the question's (0.0
        for a sentence never recorded).

        Args:
            question_ids: the question's token ids (their weights).
            question_states: ``[question tokens, hidden]``.
        """
        if not self.sums:
            return [0.0] * len(sentences)
        mean, std = self.standardisation()
        weights = self.weights.of_ids(question_ids)
        question = weights @ ((question_states.to(torch.float64) - mean) / std)
        known = [s for s in sentences if s in self.sums]
        if not known:
            return [0.0] * len(sentences)
        weighted = torch.stack([self.sums[s][0] for s in known])
        totals = torch.tensor([self.sums[s][1] for s in known], dtype=torch.float32)
        vectors = (weighted - totals[:, None] * mean.float()) / std.float()
        cosines = torch.nn.functional.cosine_similarity(vectors, question.float()[None, :], dim=-1)
        by_sentence = dict(zip(known, cosines.tolist(), strict=True))
        return [by_sentence.get(s, 0.0) for s in sentences]


def embedding_vectors(lm: LocalModel, sentences: Sequence[Sentence], weights: TokenWeights) -> SentenceVectors:
    """:class:`SentenceVectors` of ``sentences`` from the model's input embeddings (no forward
    pass): each sentence's weighted sum of its tokens' rows by ``torch.nn.functional.embedding_bag``,
    and the standardisation's sums from each distinct token's count, in float64 over the rows of the
    tokens the input uses (the same figures as :meth:`SentenceVectors.add` over the looked-up rows,
    without materialising a row per token).

    Example:
        >>> from types import SimpleNamespace
        >>> table = torch.nn.Embedding(4, 2)
        >>> _ = table.weight.data.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 2.0], [5.0, 1.0]]))
        >>> lm = SimpleNamespace(model=SimpleNamespace(get_input_embeddings=lambda: table))
        >>> vectors = embedding_vectors(lm, [Sentence(0, 0, 0, 2, "Hi.", (1, 2))], TokenWeights.uniform())
        >>> vectors.tokens, vectors.sums[Sentence(0, 0, 0, 2, "Hi.", (1, 2))][0].tolist()
        (2, [4.0, 2.0])
    """
    vectors = SentenceVectors(weights)
    fresh = [s for s in dict.fromkeys(sentences) if s.token_count]
    if not fresh:
        return vectors
    table = _embedding_table(lm)
    ids = torch.tensor([t for s in fresh for t in s.token_ids], dtype=torch.long)
    used, position = torch.unique(ids, return_inverse=True)
    with torch.inference_mode():
        rows = table[used.to(table.device)].to(device="cpu", dtype=torch.float64)
    counts = torch.tensor([s.token_count for s in fresh], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)[:-1]])
    token_weights = weights.of_ids(ids.tolist())
    weighted = torch.nn.functional.embedding_bag(
        position, rows, offsets, mode="sum", per_sample_weights=token_weights
    ).float()
    totals = torch.zeros(len(fresh), dtype=torch.float64).index_add_(
        0, torch.repeat_interleave(torch.arange(len(fresh)), counts), token_weights
    )
    vectors.sums = {sentence: (weighted[j], float(totals[j])) for j, sentence in enumerate(fresh)}
    occurrences = torch.bincount(position, minlength=len(used)).to(torch.float64)
    vectors.tokens = int(ids.numel())
    vectors.total = occurrences @ rows
    vectors.squares = occurrences @ (rows * rows)
    return vectors


def _embedding_table(lm: LocalModel) -> torch.Tensor:
    """``[vocabulary, hidden]`` the model's input embedding matrix."""
    weight = lm.model.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor)
    return weight


def question_embeddings(lm: LocalModel, question_ids: Sequence[int]) -> torch.Tensor:
    """``[question tokens, hidden]`` input embeddings of the question's tokens."""
    table = _embedding_table(lm)
    with torch.inference_mode():
        return table[torch.tensor(list(question_ids), dtype=torch.long, device=table.device)].float().cpu()


def question_token_ids(lm: LocalModel, question: str) -> list[int]:
    """The question alone, tokenized without special tokens (what the question's vector reads)."""
    ids = lm.tokenizer(question, add_special_tokens=False)["input_ids"]
    eos = lm.tokenizer.eos_token_id
    return list(ids) or [eos if isinstance(eos, int) else 0]


def similarity_layer(cfg: RetrievalConfig, num_layers: int, scoring_layers: Sequence[int]) -> int | None:
    """The layer whose incoming hidden states ``similarity="hidden"`` reads (``None`` for another
    signal or none): ``similarity_layer`` (negative counts from the end), or
    :data:`~infiniretri_integrations.core.config.SIMILARITY_DEPTH` of the depth, at most the deepest
    scoring layer (the passes stop there).

    Example:
        >>> similarity_layer(RetrievalConfig(), 30, [18]), similarity_layer(RetrievalConfig(), 30, [5])
        (9, 5)
        >>> similarity_layer(RetrievalConfig(similarity_layer=20), 30, [18])
        Traceback (most recent call last):
        ...
        ValueError: similarity_layer=20 is deeper than the deepest scoring layer (18), where every pass stops; choose a layer <= 18
    """
    if cfg.similarity != "hidden":
        return None
    deepest = max(scoring_layers)
    if cfg.similarity_layer is None:
        return min(round(SIMILARITY_DEPTH * num_layers), deepest)
    layer = cfg.similarity_layer + num_layers if cfg.similarity_layer < 0 else cfg.similarity_layer
    if not 0 <= layer < num_layers:
        msg = f"similarity_layer={cfg.similarity_layer!r} is out of range for a model with {num_layers} layers"
        raise ValueError(msg)
    if layer > deepest:
        msg = (
            f"similarity_layer={cfg.similarity_layer!r} is deeper than the deepest scoring layer ({deepest}), "
            f"where every pass stops; choose a layer <= {deepest}"
        )
        raise ValueError(msg)
    return layer


def question_states(lm: LocalModel, question_ids: Sequence[int], layer: int | None) -> torch.Tensor:
    """``[question tokens, hidden]``: the question alone through the model up to ``layer`` (the
    hidden states entering it), or its input embeddings when ``layer`` is ``None``."""
    if layer is None:
        return question_embeddings(lm, question_ids)
    from infiniretri_integrations.core.attention import hidden_states_at

    return hidden_states_at(lm, torch.tensor([list(question_ids)]), layer)


def sentence_similarity(
    lm: LocalModel, vectors: SentenceVectors, question: str, layer: int | None, sentences: Sequence[Sentence]
) -> dict[Sentence, float]:
    """Each of ``sentences``' similarity to ``question`` (:meth:`SentenceVectors.scores`)."""
    ids = question_token_ids(lm, question)
    scores = vectors.scores(sentences, ids, question_states(lm, ids, layer))
    return dict(zip(sentences, scores, strict=True))
