"""Fit the attention probe (:mod:`~infiniretri_integrations.core.probe`) on the evidence
benchmark's calibration halves: the chunk loop of the engine's options runs once per sample,
recording every sentence's per-head features into one ``--features`` file; each sentence is
labelled evidence when it holds a gold supporting fact (HotpotQA-long) or the needle (lexical
gap); with ``--probe-out``, a class-balanced logistic regression is fitted on every record of
the file and written as a probe file.

Example (the shipped probe of SmolLM2-135M-Instruct)::

    python -m infiniretri_integrations.evaluation.evidence.probe --data ../shared/data \\
        --datasets hotpotqa-long --lengths 8k --split calibration --features probe_features.pt
    python -m infiniretri_integrations.evaluation.evidence.probe --data ../shared/data \\
        --datasets lexgap --lengths 4k --split calibration --features probe_features.pt --probe-out probe.json

For another scoring model, name it with ``--scoring-model`` (budgets stay in the reader's
tokens, ``--model``); the probe is made for the scoring model and loads only with it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from infiniretri_integrations.evaluation.evidence_data import EvidenceSample, span_covered

DEFAULT_L2 = 0.01
"""The L2 penalty of the shipped probe (chosen by grouped cross-validation on the calibration halves)."""

PROBE_FUSION_WEIGHTS = (1.25, 0.25)
"""The shipped probe's lexical and similarity weights relative to it (chosen with it on the
calibration halves, grouped cross-validation; attention's are 2.5 and 1.5)."""


def sentence_labels(sample: EvidenceSample, spans: Sequence[tuple[int, int]]) -> list[float]:
    """1.0 for each sentence span holding gold evidence of ``sample`` (its supporting facts; on the
    lexical gap the needle), else 0.0: the sentence covers a gold span, or a gold span covers it (a
    gold fact split over several sentences), each by :func:`span_covered`'s rule.

    Example:
        >>> sample = EvidenceSample("x", "1", "q", ("a",), "One. Two three. Four.", "test", supporting=((5, 15, 0),))
        >>> sentence_labels(sample, [(0, 4), (5, 15), (16, 21)])
        [0.0, 1.0, 0.0]
    """
    gold = [(start, end) for start, end, *_ in sample.supporting]
    return [float(any(span_covered(g, [sentence]) or span_covered(sentence, [g]) for g in gold)) for sentence in spans]


def record_features(engine: Any, sample: EvidenceSample, layers: int, budget: int) -> dict[str, Any]:
    """One chunk loop over ``sample`` with the engine's options and ``token_budget=budget``,
    recording the per-head features of the first ``layers`` layers of every sentence read (from
    the last pass that read it)."""
    import dataclasses

    from infiniretri_integrations.core.engine import RunSpec
    from infiniretri_integrations.core.probe import AttentionProbe

    spec = RunSpec({"probe": None, "token_budget": budget}, batch_size=1)
    started = time.perf_counter()
    prepared = engine._prepare([sample.text], [sample.question], spec)
    lm = prepared.scorer.lm
    prepared.scorer = dataclasses.replace(prepared.scorer, probe=AttentionProbe.blank(lm, layers))
    engine._loop(prepared, spec)
    (run,) = prepared.runs
    pool = list(run.attention)
    spans = [(s.start, s.end) for s in pool]
    return {
        "key": f"{sample.dataset}|{sample.target_tokens}|{sample.id}",
        "spans": spans,
        "features": torch.stack([run.head_features[s] for s in pool]).half() if pool else torch.zeros(0, 0),
        "labels": torch.tensor(sentence_labels(sample, spans)),
        "seconds": time.perf_counter() - started,
    }


def fit_records(
    records: Sequence[dict[str, Any]],
    lm: Any,
    layers: int,
    l2: float,
    about: dict[str, Any],
    weights: tuple[float, float] = PROBE_FUSION_WEIGHTS,
) -> Any:
    """The probe fitted on every recorded sentence of ``records`` (``weights``: its fusion and
    similarity weights)."""
    from infiniretri_integrations.core.probe import AttentionProbe, fit_probe

    features = torch.cat([r["features"].float() for r in records if len(r["spans"])])
    labels = torch.cat([r["labels"] for r in records if len(r["spans"])])
    center, scale, coefficients, bias = fit_probe(features, labels, l2)
    fitted_on = {
        **about,
        "samples": len(records),
        "sentences": len(labels),
        "evidence_sentences": int(labels.sum()),
        "l2": l2,
    }
    return AttentionProbe(
        model=lm.name,
        fingerprint=lm.fingerprint(),
        layers=layers,
        heads=lm.num_heads,
        center=tuple(center.tolist()),
        scale=tuple(scale.tolist()),
        weights=tuple(coefficients.tolist()),
        bias=bias,
        fusion_weight=weights[0],
        similarity_weight=weights[1],
        fitted_on=fitted_on,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from infiniretri_integrations.evaluation.evidence.cli import configure_parser
    from infiniretri_integrations.evaluation.evidence.data import load_samples

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    configure_parser(parser)
    parser.add_argument(
        "--features", required=True, type=Path, help="feature records (torch file; finished samples skipped)"
    )
    parser.add_argument("--probe-out", type=Path, help="write the fitted probe here (JSON)")
    parser.add_argument("--l2", type=float, default=DEFAULT_L2, help=f"L2 penalty (default {DEFAULT_L2})")
    parser.add_argument(
        "--fusion-weights",
        type=lambda text: tuple(float(v) for v in text.split(",")),
        default=PROBE_FUSION_WEIGHTS,
        metavar="LEXICAL,SIMILARITY",
        help="the probe's fusion and similarity weights (default %(default)s)",
    )
    parser.add_argument(
        "--loop-budget", type=int, default=1024, help="token_budget of the recorded loops (default 1024)"
    )
    parser.add_argument("--probe-layers", type=int, help="layers read (default: through the deepest scoring layer)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from infiniretri_integrations.core.engine import InfiniRetriEngine
    from infiniretri_integrations.core.scoring_setup import scoring_setup
    from infiniretri_integrations.evaluation.evidence.cli import load_reader

    reader = load_reader(args)
    engine = InfiniRetriEngine(reader, scoring_model=args.scoring_model, show_progress=False, **args.engine_options)
    lm = engine.scoring_local_model
    layers = args.probe_layers or max(scoring_setup(lm, engine.config)[0]) + 1
    samples = load_samples(args, reader.tokenizer)
    records: list[dict[str, Any]] = torch.load(args.features) if args.features.exists() else []
    done = {r["key"] for r in records}
    for number, sample in enumerate(samples, 1):
        if f"{sample.dataset}|{sample.target_tokens}|{sample.id}" in done:
            continue
        records.append(record_features(engine, sample, layers, args.loop_budget))
        torch.save(records, args.features)
        if not args.quiet:
            print(f"[{number}/{len(samples)}] {records[-1]['key']} {records[-1]['seconds']:.1f}s", file=sys.stderr)
    if args.probe_out is not None:
        about = {
            "settings": sorted({"|".join(r["key"].split("|")[:2]) for r in records}),
            "split": args.split,
            "seed": args.seed,
            "loop_budget": args.loop_budget,
            "engine_options": args.engine_options,
        }
        probe = fit_records(records, lm, layers, args.l2, about, args.fusion_weights)
        probe.save(args.probe_out)
        print(f"probe of {layers} layers fitted on {len(records)} samples -> {args.probe_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
