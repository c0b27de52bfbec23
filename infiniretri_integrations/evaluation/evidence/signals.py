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

FINAL_OPTIONS = ("fusion", "fusion_weight", "similarity", "similarity_weight", "probe")
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
        any, reads the recorded layer; its probe, if any, reads the recorded heads)."""
        from infiniretri_integrations.core.similarity import similarity_layer

        scorer = self.prepared.scorer
        lm = scorer.lm
        if cfg.probe is not None:
            probe = self._probe(cfg)
            if probe is not None and (scorer.probe is None or scorer.probe.layers != probe.layers):
                return False
        if cfg.similarity != "hidden":
            return True
        return similarity_layer(cfg, lm.num_layers, scorer.layers) == scorer.states_layer

    def _probe(self, cfg: RetrievalConfig) -> Any:
        from infiniretri_integrations.core.probe import probe_for

        scorer = self.prepared.scorer
        return probe_for(cfg.probe, scorer.lm, scorer.layers, shared_context=False, content_free=cfg.content_free)

    def select(self, cfg: RetrievalConfig) -> list[RetrievedSentence]:
        """The result ``engine.retrieve`` gives with ``cfg`` (its final options may differ from
        the recorded run's)."""
        from infiniretri_integrations.core.engine import _retrieved
        from infiniretri_integrations.core.selection import final_selection

        run, scorer = self.run, self.prepared.scorer
        lexical = run.lexical if cfg.fusion is not None else {}
        similarity = self.similarity[cfg.similarity] if cfg.similarity is not None else None
        probe = run.probe_ranking(self._probe(cfg)) if cfg.probe is not None else None
        kept = final_selection(run.working_set, run.attention, lexical, cfg, scorer.reader, similarity, probe)
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
    return repr(cfg.replace(fusion="bm25", fusion_weight=None, similarity=None, probe=None, token_budget=budget))


def recording_config(cfg: RetrievalConfig) -> RetrievalConfig:
    """``cfg`` as a recorded chunk loop runs it: BM25 scored, the hidden states recorded at
    ``cfg``'s similarity layer (the default one when ``cfg`` reads none), the heads of ``cfg``'s
    probe recorded (of the shipped one when ``cfg`` reads none and ``content_free`` is off)."""
    layer = cfg.similarity_layer if cfg.similarity == "hidden" else None
    probe = cfg.probe if cfg.probe is not None or cfg.content_free else "auto"
    return cfg.replace(
        fusion="bm25",
        fusion_weight=None,
        similarity="hidden",
        similarity_layer=layer,
        similarity_weight=None,
        probe=probe,
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
