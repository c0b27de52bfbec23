"""Which sentences a pass keeps, and which make the result: the top-k rule, token budgets and
fusion with a lexical signal. Pure functions of scores and sentences (no model)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from infiniretri_integrations.core.config import DEFAULT_WORKING_SET_TOKENS, RetrievalConfig
from infiniretri_integrations.core.scoring import (
    fill_budget,
    rank_fusion,
    rank_fusion_many,
    select_sentences,
    sentence_maxima,
    token_sentence_index,
)
from infiniretri_integrations.core.types import Sentence

SentenceSize = Callable[[Sentence], int]
"""A sentence's size in some tokenizer's tokens."""


def scoring_tokens(sentence: Sentence) -> int:
    """A sentence's size in the scoring model's tokens (what a pass reads)."""
    return sentence.token_count


@dataclass
class Kept:
    """A kept sentence and the score it was kept with."""

    sentence: Sentence
    score: float


@dataclass(frozen=True)
class Carry:
    """How much of a pass's selection goes on to the next pass, in two units: ``room`` tokens of
    the scoring model (what the window leaves beside the chunk and the prompt) and, when set,
    ``working_set`` tokens of the answering model (``working_set_tokens``)."""

    room: int
    working_set: int | None = None

    def shared(self, ways: int) -> Carry:
        """An equal share of this room among ``ways`` questions (``share_context``)."""
        return Carry(self.room // ways, None if self.working_set is None else self.working_set // ways)

    def cut(self, kept: list[Kept], reader: SentenceSize) -> list[Kept]:
        """The best-scoring of ``kept`` that fit in both units (document order kept)."""
        limits = [([reader(k.sentence) for k in kept], self.working_set)] if self.working_set is not None else []
        return fit_budget(kept, self.room, scoring_tokens, limits)


def fit_budget(
    kept: list[Kept],
    budget: int,
    size: SentenceSize = scoring_tokens,
    limits: Sequence[tuple[Sequence[int], int]] = (),
) -> list[Kept]:
    """The best-scoring of ``kept`` that fit in ``budget`` tokens (and ``limits``), in their order."""
    sizes = [size(k.sentence) for k in kept]
    if sum(sizes) <= budget and all(sum(s) <= cap for s, cap in limits):
        return kept
    chosen = fill_budget([k.score for k in kept], sizes, budget, limits)
    return [kept[i] for i in chosen]


def budgeted_pass_floor(cfg: RetrievalConfig) -> int:
    """With ``token_budget``, the fewest tokens each pass keeps for the next:
    ``working_set_tokens``, else :data:`DEFAULT_WORKING_SET_TOKENS`. Budgets up to this size run
    the very same passes and differ only in the final cut (the evidence benchmark relies on it)."""
    return cfg.working_set_tokens or DEFAULT_WORKING_SET_TOKENS


def keep_pass(
    candidates: Sequence[Sentence],
    token_scores: torch.Tensor,
    lexical: Mapping[Sentence, float],
    cfg: RetrievalConfig,
    attention: dict[Sentence, float],
    reader: SentenceSize = scoring_tokens,
) -> list[Kept]:
    """One pass's selection among ``candidates`` (working set + chunk), in document order.

    Each candidate's attention score (its best token's) is recorded in ``attention``. Without a
    budget or per-pass fusion this is the method's rule: every sentence holding one of the
    ``tokens_per_pass`` best tokens. With per-pass fusion (``lexical`` given), the top-k rule
    decides how many tokens to keep and the fused score decides which sentences; with
    ``token_budget``, sentences are taken by score up to ``max(token_budget, working_set_tokens
    or 1,024)`` tokens of the answering model (``reader``).

    Args:
        token_scores: ``[context tokens]`` phrase scores of the candidates' tokens, in order.
    """
    token_sentence = token_sentence_index([s.token_count for s in candidates])
    top_k = cfg.effective_tokens_per_pass
    if top_k is None:
        kept, best = None, sentence_maxima(token_scores, token_sentence)
    else:
        kept, best = select_sentences(token_scores, token_sentence, top_k)
    attention.update(zip(candidates, best.tolist(), strict=True))
    scores = best
    if lexical:
        other = torch.tensor([lexical[s] for s in candidates], dtype=torch.float64)
        weight = cfg.effective_fusion_weight
        assert weight is not None  # lexical scores exist only with fusion
        scores = rank_fusion(best.to(torch.float64), other, weight).to(best.dtype)
    if kept is None:
        amount = max(cfg.token_budget or 0, budgeted_pass_floor(cfg))
        chosen = fill_budget(scores, [reader(s) for s in candidates], amount)
    elif lexical:
        sizes = [s.token_count for s in candidates]
        chosen = fill_budget(scores, sizes, sum(sizes[i] for i in kept.tolist()))
    else:
        chosen = kept.tolist()
    return [Kept(candidates[i], float(scores[i])) for i in chosen]


def fuse_final(
    attention: Mapping[Sentence, float],
    signals: Sequence[tuple[Mapping[Sentence, float], float]],
    budget: int,
    reader: SentenceSize = scoring_tokens,
) -> list[Kept]:
    """Late fusion over every sentence of the input: each sentence's attention score from the
    last pass that scored it, fused by reciprocal rank with the other ``signals`` (``(scores,
    weight)`` pairs: the lexical signal, the similarity); taken by fused score until ``budget``
    tokens of ``reader``, in document order."""
    pool = list(attention)
    fused = rank_fusion_many(
        torch.tensor([attention[s] for s in pool], dtype=torch.float64),
        [(torch.tensor([scores[s] for s in pool], dtype=torch.float64), weight) for scores, weight in signals],
    )
    chosen = fill_budget(fused, [reader(s) for s in pool], budget)
    ordered = sorted(chosen, key=lambda i: (pool[i].document_index, pool[i].sentence_index))
    return [Kept(pool[i], float(fused[i])) for i in ordered]


def final_selection(
    working_set: list[Kept],
    attention: Mapping[Sentence, float],
    lexical: Mapping[Sentence, float],
    cfg: RetrievalConfig,
    reader: SentenceSize = scoring_tokens,
    similarity: Mapping[Sentence, float] | None = None,
    probe: ProbeRanking | None = None,
) -> list[Kept]:
    """The result after the last pass: late fusion over the whole input of attention (or, with
    ``probe``, the probe's score of every sentence read, in its place) with the lexical signal
    (``fusion_stage`` final) and the similarity (``similarity``, whatever the stage), then the cut
    to ``token_budget`` tokens of the answering model."""
    kept = working_set
    signals: list[tuple[Mapping[Sentence, float], float]] = []
    lexical_weight = cfg.effective_fusion_weight
    similarity_weight = cfg.effective_similarity_weight
    if probe is not None:
        lexical_weight = probe.fusion_weight if cfg.fusion_weight is None and cfg.fusion else lexical_weight
        similarity_weight = (
            probe.similarity_weight if cfg.similarity_weight is None and cfg.similarity else similarity_weight
        )
    reranked = similarity or probe is not None  # the final cut ranks every sentence read again
    if lexical and lexical_weight is not None and (reranked or not cfg.fuses_every_pass):
        signals.append((lexical, lexical_weight))
    if similarity and similarity_weight is not None:
        signals.append((similarity, similarity_weight))
    if signals or probe is not None:
        amount = cfg.token_budget or sum(reader(k.sentence) for k in kept)
        kept = fuse_final(attention if probe is None else probe.scores, signals, amount, reader)
    if cfg.token_budget is not None:
        kept = fit_budget(kept, cfg.token_budget, reader)
    return kept


@dataclass(frozen=True)
class ProbeRanking:
    """The probe's score of every sentence read, ranking in attention's place in the final cut,
    and the weights of the other signals' reciprocal ranks relative to it where the options leave
    them unset (the probe's own, chosen with it)."""

    scores: Mapping[Sentence, float]
    fusion_weight: float
    similarity_weight: float
