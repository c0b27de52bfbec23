"""One scoring pass over a chunk: the forward pass(es), the question rows' scores, the selection.

Three ways to run a pass, registered in :data:`PASS_MODES`:

- ``"single"``: one forward per question (with ``content_free``, the content-free question shares
  the question's context encoding);
- ``"batched"``: the passes of several questions as ONE right-padded batched forward (identical
  scores to one forward per question);
- ``"shared"``: one context (the union of the questions' working sets and the chunk) encoded once,
  each question then run alone over that encoding (``share_context``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from infiniretri_integrations.core.attention import (
    HeadsCapture,
    StatesCapture,
    batched_question_attention,
    capturing_heads,
    capturing_states,
    question_attention,
    shared_prefix_attention,
)
from infiniretri_integrations.core.config import HeadSelection, RetrievalConfig
from infiniretri_integrations.core.models import LocalModel
from infiniretri_integrations.core.probe import AttentionProbe, head_features
from infiniretri_integrations.core.prompting import PromptLayout, build_layout
from infiniretri_integrations.core.scoring import content_free_scores, context_scores, question_weights
from infiniretri_integrations.core.selection import (
    Carry,
    Kept,
    ProbeRanking,
    SentenceSize,
    keep_pass,
    scoring_tokens,
)
from infiniretri_integrations.core.similarity import SentenceVectors
from infiniretri_integrations.core.types import ForwardHook, ForwardPass, Sentence

CONTENT_FREE_QUESTION = "N/A"
"""The content-free question of ``content_free`` scoring (as ICR uses)."""

SHAPE_BUCKET = 64
"""Scoring passes are right-padded to a multiple of this many tokens. Padding after the last real
token changes no score (attention is causal), and a few dozen distinct sequence lengths, instead
of one per chunk, keep the kernels' per-shape caches (oneDNN primitives, allocator blocks) small."""


@dataclass(frozen=True)
class Scorer:
    """What every pass of one call shares: the scoring model, its layers and heads, the options
    and the forward hook."""

    lm: LocalModel
    cfg: RetrievalConfig
    layers: tuple[int, ...]
    heads: HeadSelection
    hook: ForwardHook | None = None
    reader: SentenceSize = scoring_tokens
    """Sentence sizes in the answering model's tokens (the unit of every token budget)."""
    batch_size: int = 1
    """Questions per batched forward (``"batched"`` mode)."""
    states_layer: int | None = None
    """With ``similarity="hidden"``: the layer whose incoming hidden states each pass records."""
    probe: AttentionProbe | None = None
    """With ``probe``: the probe whose features (every head of its layers) each pass records."""

    @contextlib.contextmanager
    def states(self) -> Iterator[StatesCapture | None]:
        """Record the hidden states entering :attr:`states_layer` in the forwards of the block
        (``None`` when no similarity reads them)."""
        if self.states_layer is None:
            yield None
            return
        with capturing_states(self.lm, self.states_layer) as capture:
            yield capture

    @contextlib.contextmanager
    def head_rows(self, length: int | None = None) -> Iterator[HeadsCapture | None]:
        """Record every head's question-row attention in the probe's layers in the forwards of
        the block (``None`` without a probe; ``length``: a single padded sequence's real length)."""
        if self.probe is None:
            yield None
            return
        with capturing_heads(range(self.probe.layers), length) as capture:
            yield capture

    @property
    def pad_id(self) -> int:
        tokenizer = self.lm.tokenizer
        for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
            if isinstance(candidate, int):
                return candidate
        return 0

    def neutral_suffix(self, layout: PromptLayout) -> torch.Tensor | None:
        """``[1, n]`` ids of the content-free question and the prompt's tail (``None`` without
        ``content_free``)."""
        if not self.cfg.content_free:
            return None
        neutral = build_layout(self.lm.tokenizer, self.cfg, CONTENT_FREE_QUESTION).question
        return torch.tensor([[*neutral, *layout.tail]])

    def report(self, index: int, fed: torch.Tensor, length: int, question_start: int) -> None:
        if self.hook is not None:
            self.hook(ForwardPass(index, fed, length, question_start, self.layers))


@dataclass
class QuestionRun:
    """One question's state through the chunk loop: its prompt layout, its working set, the
    attention score of every sentence a pass has read, its frozen question weights."""

    question: str
    layout: PromptLayout
    carry: Carry
    lexical: Mapping[Sentence, float]
    working_set: list[Kept] = field(default_factory=list)
    attention: dict[Sentence, float] = field(default_factory=dict)
    weights: torch.Tensor | None = None
    vectors: SentenceVectors | None = None
    """With ``similarity``: the sentences' vectors (recorded by the passes for ``"hidden"``)."""
    head_features: dict[Sentence, torch.Tensor] = field(default_factory=dict)
    """With a probe: each sentence's per-head attention features from the last pass that read it."""

    def record_heads(
        self, candidates: Sequence[Sentence], capture: HeadsCapture | None, row: int, span: tuple[int, int]
    ) -> None:
        """Record the candidates' per-head features of this pass (``span``: the context's positions
        in batch row ``row``)."""
        if capture is None:
            return
        start, end = span
        features = head_features(capture.stacked(row)[:, :, start:end], [s.token_count for s in candidates])
        self.head_features.update(zip(candidates, features, strict=True))

    def record_states(
        self, candidates: Sequence[Sentence], capture: StatesCapture | None, row: int, span: tuple[int, int]
    ) -> None:
        """Record the states of the candidates first read in this pass (``span``: the context's
        positions in batch row ``row`` of the pass's first forward)."""
        if capture is None or self.vectors is None or not capture.calls:
            return
        start, end = span
        self.vectors.add(candidates, capture.calls[0][row, start:end])

    def probe_ranking(self, probe: AttentionProbe | None) -> ProbeRanking | None:
        """The probe's score of every sentence read, with its weights (``None`` without a probe)."""
        if probe is None:
            return None
        pool = list(self.attention)
        scores = probe.score(torch.stack([self.head_features[s] for s in pool])).tolist() if pool else []
        return ProbeRanking(dict(zip(pool, scores, strict=True)), probe.fusion_weight, probe.similarity_weight)

    def candidates(self, chunk: Sequence[Sentence]) -> list[Sentence]:
        return [*(k.sentence for k in self.working_set), *chunk]

    def score(
        self,
        rows: torch.Tensor,
        neutral_rows: torch.Tensor | None,
        spans: tuple[int, int, int],
        cfg: RetrievalConfig,
    ) -> torch.Tensor:
        """``[context tokens]`` scores of one pass from its question rows (``[rows, length]``):
        question-weighted attention, or its excess over the content-free question's rows. The
        question weights are computed on the first pass and then kept."""
        context_start, context_end, question_start = spans
        if self.weights is None and cfg.question_weights:
            self.weights = question_weights(rows, question_start)
        if neutral_rows is None:
            return context_scores(rows, context_start, context_end, self.weights, cfg.phrase_window)
        return content_free_scores(rows, neutral_rows, context_start, context_end, self.weights, cfg.phrase_window)

    def keep(self, candidates: Sequence[Sentence], scores: torch.Tensor, scorer: Scorer) -> None:
        """This pass's selection among ``candidates``, cut to what the next pass may carry."""
        pass_lexical = self.lexical if scorer.cfg.fuses_every_pass else {}
        kept = keep_pass(candidates, scores, pass_lexical, scorer.cfg, self.attention, scorer.reader)
        self.working_set = self.carry.cut(kept, scorer.reader)


PassMode = Callable[[Sequence[QuestionRun], int, Sequence[Sentence], Scorer], None]
"""``(runs, chunk index, chunk, scorer)``: one pass of every run over the chunk."""


def _ids(sentences: Sequence[Sentence]) -> list[int]:
    return [t for s in sentences for t in s.token_ids]


def _padded(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """``[len(rows), width]``: the rows right-padded to one multiple of :data:`SHAPE_BUCKET`."""
    width = -(-max(len(ids) for ids in rows) // SHAPE_BUCKET) * SHAPE_BUCKET
    return torch.tensor([[*ids, *[pad_id] * (width - len(ids))] for ids in rows])


def single_pass(runs: Sequence[QuestionRun], index: int, chunk: Sequence[Sentence], scorer: Scorer) -> None:
    """One forward per question over its own working set and the chunk."""
    for run in runs:
        candidates = run.candidates(chunk)
        ids, context_start, context_end, question_start = run.layout.assemble(_ids(candidates))
        spans = (context_start, context_end, question_start)
        neutral = scorer.neutral_suffix(run.layout)
        with scorer.states() as states, scorer.head_rows(len(ids)) as head_rows:
            if neutral is None:
                fed = _padded([ids], scorer.pad_id)
                scorer.report(index, fed, len(ids), question_start)
                rows = question_attention(scorer.lm, fed, question_start, scorer.layers, scorer.heads)
                scores = run.score(rows[: len(ids) - question_start, : len(ids)].cpu(), None, spans, scorer.cfg)
            else:
                fed = torch.tensor([ids])
                scorer.report(index, fed, len(ids), question_start)
                rows, neutral_rows = (
                    r.cpu()
                    for r in shared_prefix_attention(
                        scorer.lm,
                        fed[:, :question_start],
                        [fed[:, question_start:], neutral],
                        scorer.layers,
                        scorer.heads,
                    )
                )
                scores = run.score(rows, neutral_rows, spans, scorer.cfg)
        run.record_states(candidates, states, 0, (context_start, context_end))
        run.record_heads(candidates, head_rows, 0, (context_start, context_end))
        run.keep(candidates, scores, scorer)


def _batched_group(runs: Sequence[QuestionRun], index: int, chunk: Sequence[Sentence], scorer: Scorer) -> None:
    """One pass of a group of questions as ONE right-padded batched forward."""
    candidates = [run.candidates(chunk) for run in runs]
    assembled = [run.layout.assemble(_ids(c)) for run, c in zip(runs, candidates, strict=True)]
    fed = _padded([ids for ids, *_ in assembled], scorer.pad_id)
    for row, (ids, _, _, question_start) in enumerate(assembled):
        scorer.report(index, fed[row : row + 1], len(ids), question_start)
    spans = [(question_start, len(ids)) for ids, _, _, question_start in assembled]
    with scorer.states() as states, scorer.head_rows() as head_rows:
        rows = batched_question_attention(scorer.lm, fed, spans, scorer.layers, scorer.heads)
    for row, (run, sentences, (_, *positions), question_rows) in enumerate(
        zip(runs, candidates, assembled, rows, strict=True)
    ):
        context_start, context_end, question_start = positions
        scores = run.score(question_rows.cpu(), None, (context_start, context_end, question_start), scorer.cfg)
        run.record_states(sentences, states, row, (context_start, context_end))
        run.record_heads(sentences, head_rows, row, (context_start, context_end))
        run.keep(sentences, scores, scorer)


def batched_pass(runs: Sequence[QuestionRun], index: int, chunk: Sequence[Sentence], scorer: Scorer) -> None:
    """One pass of several questions, each over its own working set and the chunk, as right-padded
    batched forwards of ``scorer.batch_size`` questions (identical scores to one forward per question)."""
    for start in range(0, len(runs), scorer.batch_size):
        _batched_group(runs[start : start + scorer.batch_size], index, chunk, scorer)


def shared_pass(runs: Sequence[QuestionRun], index: int, chunk: Sequence[Sentence], scorer: Scorer) -> None:
    """One pass of several questions over ONE shared context: the union of their working sets
    and the chunk, encoded once; each question (and, with ``content_free``, the content-free
    question) then runs alone over that encoding."""
    union = sorted(
        {k.sentence for run in runs for k in run.working_set}, key=lambda s: (s.document_index, s.sentence_index)
    )
    candidates = [*union, *chunk]
    layout = runs[0].layout
    ids, context_start, context_end, question_start = layout.assemble(_ids(candidates))
    prefix = torch.tensor([ids[:question_start]])
    suffixes = [torch.tensor([[*run.layout.question, *run.layout.tail]]) for run in runs]
    for suffix in suffixes:
        fed = torch.cat([prefix, suffix], dim=1)
        scorer.report(index, fed, fed.shape[1], question_start)
    neutral = scorer.neutral_suffix(layout)
    if neutral is not None:
        suffixes.append(neutral)
    with scorer.states() as states:
        rows = [r.cpu() for r in shared_prefix_attention(scorer.lm, prefix, suffixes, scorer.layers, scorer.heads)]
    neutral_rows = rows[len(runs)] if neutral is not None else None
    for run, question_rows in zip(runs, rows, strict=False):
        scores = run.score(question_rows, neutral_rows, (context_start, context_end, question_start), scorer.cfg)
        run.record_states(candidates, states, 0, (context_start, context_end))
        run.keep(candidates, scores, scorer)


PASS_MODES: dict[str, PassMode] = {"single": single_pass, "batched": batched_pass, "shared": shared_pass}
"""How a pass runs, by name (chosen per call by :func:`pass_mode`)."""


def pass_mode(share_context: bool, content_free: bool, batch_size: int) -> str:
    """The :data:`PASS_MODES` entry for a call's options.

    Example:
        >>> pass_mode(False, False, 4), pass_mode(False, False, 1), pass_mode(True, False, 1)
        ('batched', 'single', 'shared')
    """
    if share_context:
        return "shared"
    return "single" if content_free or batch_size == 1 else "batched"
