"""Engine variants that differ only in the final fusion share ONE chunk loop.

With ``fusion_stage`` final (the default) the passes choose their working sets by attention
alone: the lexical signal and the similarity enter only in the final cut
(:func:`~infiniretri_integrations.core.selection.final_selection`). So the evidence benchmark
runs the chunk loop once per sample and options that shape the passes, recording every signal
(attention, BM25, the hidden-state and the embedding similarity), and computes each variant's
final selection from that record, exactly as ``engine.retrieve`` would (tested equal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from infiniretri_integrations.core.config import RetrievalConfig, option_names
from infiniretri_integrations.core.types import RetrievedSentence, Sentence

FINAL_OPTIONS = ("fusion", "fusion_weight", "similarity", "similarity_weight")
"""Options that change only the final cut (with ``fusion_stage`` final): variants differing in
them share a chunk loop."""


@dataclass
class SignalRun:
    """One chunk loop's record: every sentence read with its attention score (the last pass's),
    its lexical score and both similarities; the last working set; the loop's seconds."""

    engine: Any
    prepared: Any
    run: Any
    similarity: dict[str, dict[Sentence, float]]
    seconds: float

    def serves(self, cfg: RetrievalConfig) -> bool:
        """Whether ``cfg``'s result can be computed from this record (its hidden similarity, if
        any, reads the recorded layer)."""
        from infiniretri_integrations.core.similarity import similarity_layer

        if cfg.similarity != "hidden":
            return True
        lm = self.prepared.scorer.lm
        return similarity_layer(cfg, lm.num_layers, self.prepared.scorer.layers) == self.prepared.scorer.states_layer

    def select(self, cfg: RetrievalConfig) -> list[RetrievedSentence]:
        """The result ``engine.retrieve`` gives with ``cfg`` (its final options may differ from
        the recorded run's)."""
        from infiniretri_integrations.core.engine import _retrieved
        from infiniretri_integrations.core.selection import final_selection

        run, scorer = self.run, self.prepared.scorer
        lexical = run.lexical if cfg.fusion is not None else {}
        similarity = self.similarity[cfg.similarity] if cfg.similarity is not None else None
        kept = final_selection(run.working_set, run.attention, lexical, cfg, scorer.reader, similarity)
        return [_retrieved(k, self.prepared.docs, scorer.reader(k.sentence)) for k in kept]


def shares_passes(cfg: RetrievalConfig) -> bool:
    """Whether ``cfg``'s final options can be applied to a recorded chunk loop."""
    return cfg.fusion_stage != "pass"


def loop_key(cfg: RetrievalConfig) -> str:
    """What decides the passes of ``cfg``: its options but the final ones, with a ``token_budget``
    up to the budgeted pass floor counted as the floor (such budgets run the same passes)."""
    from infiniretri_integrations.core.selection import budgeted_pass_floor

    budget = cfg.token_budget
    if budget is not None:
        budget = max(budget, budgeted_pass_floor(cfg))
    return repr(cfg.replace(fusion="bm25", fusion_weight=None, similarity=None, token_budget=budget))


def recording_config(cfg: RetrievalConfig) -> RetrievalConfig:
    """``cfg`` as a recorded chunk loop runs it: BM25 scored, the hidden states recorded at
    ``cfg``'s similarity layer (the default one when ``cfg`` reads none)."""
    layer = cfg.similarity_layer if cfg.similarity == "hidden" else None
    return cfg.replace(
        fusion="bm25", fusion_weight=None, similarity="hidden", similarity_layer=layer, similarity_weight=None
    )


def record_signals(engine: Any, text: str, question: str, cfg: RetrievalConfig) -> SignalRun:
    """Run the chunk loop of ``cfg`` once over ``text``, recording every signal."""
    from infiniretri_integrations.core.engine import RunSpec
    from infiniretri_integrations.core.similarity import (
        TokenWeights,
        embedding_vectors,
        sentence_similarity,
    )

    recording = recording_config(cfg)
    spec = RunSpec({name: getattr(recording, name) for name in option_names()}, batch_size=1)
    started = time.perf_counter()
    prepared = engine._prepare([text], [question], spec)
    engine._loop(prepared, spec)
    (run,) = prepared.runs
    scorer = prepared.scorer
    pool = list(run.attention)
    lm = scorer.lm
    similarity = {
        "hidden": sentence_similarity(lm, run.vectors, question, scorer.states_layer, pool),
        "embeddings": sentence_similarity(
            lm, embedding_vectors(lm, prepared.sentences, TokenWeights.uniform()), question, None, pool
        ),
    }
    return SignalRun(engine, prepared, run, similarity, time.perf_counter() - started)
