"""Fusion weights and rules measured offline: every signal of every sentence recorded once per
sample, then any number of final fusions scored from the record in seconds.

With ``fusion_stage`` final the chunk loop does not depend on the fusion (see :mod:`.signals`), so
one recorded loop per sample gives the exact final selection of every fusion variant. Used to
choose ``fusion_weight`` / ``similarity_weight`` on the calibration halves only.

Example::

    python -m infiniretri_integrations.evaluation.evidence.fusion_sweep --data ../shared/data \\
        --datasets lexgap --lengths 4k --split calibration --signals lexgap4k_cal.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from infiniretri_integrations.core.scoring import fill_budget, rank_fusion_many
from infiniretri_integrations.evaluation.evidence.data import load_samples
from infiniretri_integrations.evaluation.evidence.metrics import bootstrap_ci, evidence_metrics, merge_spans

Variant = tuple[str, float, float, str]
"""``(rule, lexical weight, similarity weight, similarity signal)``; weight 0 leaves a signal out."""

DEFAULT_GRID: dict[str, Variant] = {
    "attention": ("sum", 0.0, 0.0, "hidden"),
    "today": ("sum", 2.5, 0.0, "hidden"),
    **{f"sum_l{lw}_s{sw}": ("sum", lw, sw, "hidden") for lw in (1.0, 2.5) for sw in (0.5, 1.0, 1.5, 2.0, 3.0)},
    **{f"max_l{lw}_s{sw}": ("max", lw, sw, "hidden") for lw in (1.0, 2.5) for sw in (1.0, 1.5, 2.0)},
    **{f"sum_l0_s{sw}": ("sum", 0.0, sw, "hidden") for sw in (0.5, 1.0, 2.0)},
    **{f"sumk{k}_l2.5_s{sw}": (f"sumk{k}", 2.5, sw, "hidden") for k in (10, 20) for sw in (1.0, 2.0, 3.0)},
    **{
        f"{r}_l2.5_s{sw}": (r, 2.5, sw, "hidden")
        for r in ("zerolex", "zerolexrank")
        for sw in (1.0, 2.0, 2.5, 3.0, 4.0)
    },
    **{f"sum_l{lw}_s{sw}": ("sum", lw, sw, "hidden") for lw in (2.0, 2.5, 3.0) for sw in (1.5, 2.0, 2.5)},
    **{f"emb_l2.5_s{sw}": ("sum", 2.5, sw, "embeddings") for sw in (1.0, 2.0)},
}


def record(engine: Any, sample: Any, budget: int) -> dict[str, Any]:
    """Every sentence the chunk loop read for ``sample`` with its four signals."""
    from infiniretri_integrations.evaluation.evidence.signals import record_signals

    cfg = engine.config.replace(token_budget=budget)
    signals = record_signals(engine, sample.text, sample.question, cfg)
    run, reader = signals.run, signals.prepared.scorer.reader
    pool = list(run.attention)
    return {
        "key": sample_key(sample),
        "setting": sample.setting,
        "half": sample.half,
        "seconds": signals.seconds,
        "spans": [[s.start, s.end] for s in pool],
        "tokens": [reader(s) for s in pool],
        "attention": [run.attention[s] for s in pool],
        "lexical": [run.lexical[s] for s in pool],
        "hidden": [signals.similarity["hidden"][s] for s in pool],
        "embeddings": [signals.similarity["embeddings"][s] for s in pool],
    }


def sample_key(sample: Any) -> str:
    return f"{sample.dataset}|{sample.target_tokens}|{sample.id}"


def fused_scores(entry: dict[str, Any], variant: Variant) -> torch.Tensor:
    """``[sentences]`` fused score of one record under ``variant``."""
    rule, lexical_weight, similarity_weight, signal = variant
    tensor = {name: torch.tensor(entry[name], dtype=torch.float64) for name in ("attention", "lexical", signal)}
    others = [(tensor["lexical"], lexical_weight), (tensor[signal], similarity_weight)]
    others = [(scores, weight) for scores, weight in others if weight > 0]
    if rule == "sum":
        return rank_fusion_many(tensor["attention"], others)
    if rule in ("zerolex", "zerolexrank"):  # the similarity counts only for sentences BM25 gives nothing
        fused = rank_fusion_many(
            tensor["attention"], [(tensor["lexical"], lexical_weight)] if lexical_weight > 0 else []
        )
        zero = tensor["lexical"] <= 0
        ranked = tensor[signal]
        if rule == "zerolexrank":  # ... ranked among those sentences only
            ranked = torch.where(zero, ranked, torch.full_like(ranked, -1e9))
        rescue = rank_fusion_many(ranked, []) * similarity_weight
        return fused + torch.where(zero, rescue, torch.zeros_like(rescue))
    if rule.startswith("sumk"):  # the similarity's ranks with their own constant k (peakier for small k)
        k = float(rule[4:])
        lexical = [(s, w) for s, w in others[:-1]] if similarity_weight > 0 else others
        fused = rank_fusion_many(tensor["attention"], lexical)
        if similarity_weight > 0:
            # normalised so that rank 1 gets what it gets with k = 60; lower ranks fall off faster
            fused = fused + rank_fusion_many(tensor[signal], [], k) * similarity_weight * (k + 1) / 61.0
        return fused
    parts = [rank_fusion_many(tensor["attention"], [])] + [rank_fusion_many(s, []) * w for s, w in others]
    stacked = torch.stack(parts)
    return stacked.max(dim=0).values + 1e-6 * stacked.sum(dim=0)


def kept_spans(entry: dict[str, Any], variant: Variant, budget: int) -> list[tuple[int, int]]:
    chosen = fill_budget(fused_scores(entry, variant), entry["tokens"], budget)
    return [tuple(entry["spans"][i]) for i in chosen]  # type: ignore[misc]


def sweep(
    entries: Sequence[dict[str, Any]], samples: dict[str, Any], grid: dict[str, Variant], budgets: Sequence[int]
) -> dict[str, dict[str, dict[int, list[float]]]]:
    """``{setting: {variant: {budget: [metric per sample]}}}`` (needle/supporting recall, else
    answer recall)."""
    table: dict[str, dict[str, dict[int, list[float]]]] = {}
    for entry in entries:
        sample = samples.get(entry["key"])
        if sample is None:
            continue
        for name, variant in grid.items():
            for budget in budgets:
                metrics = evidence_metrics(sample, merge_spans(kept_spans(entry, variant, budget)))
                value = metrics["supporting_recall"]
                value = metrics["answer_recall"] if value is None else value
                if value is not None:
                    table.setdefault(entry["setting"], {}).setdefault(name, {}).setdefault(budget, []).append(value)
    return table


def markdown(table: dict[str, dict[str, dict[int, list[float]]]], baseline: str = "today") -> str:
    lines = []
    for setting, variants in table.items():
        budgets = sorted(next(iter(variants.values())))
        lines += [f"### {setting}", "", "| variant | " + " | ".join(f"@{b} (vs {baseline})" for b in budgets) + " |"]
        lines.append("|---|" + "---|" * len(budgets))
        for name, per_budget in variants.items():
            cells = []
            for budget in budgets:
                values = per_budget[budget]
                base = variants.get(baseline, {}).get(budget)
                cell = f"{sum(values) / len(values):.2f}"
                if base is not None and name != baseline:
                    differences = [a - b for a, b in zip(values, base, strict=True)]
                    low, high = bootstrap_ci(differences)
                    cell += f" ({sum(differences) / len(differences):+.2f} [{low:+.2f}, {high:+.2f}])"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from infiniretri_integrations.evaluation.evidence.cli import configure_parser

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    configure_parser(parser)
    parser.add_argument("--signals", required=True, type=Path, help="record file (JSON; finished samples skipped)")
    parser.add_argument("--sweep-only", action="store_true", help="only score the grid on the records")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from infiniretri_integrations.core.engine import InfiniRetriEngine
    from infiniretri_integrations.core.models import default_model

    lm = default_model()
    samples = {sample_key(s): s for s in load_samples(args, lm.tokenizer)}
    entries: list[dict[str, Any]] = json.loads(args.signals.read_text()) if args.signals.exists() else []
    if not args.sweep_only:
        done = {e["key"] for e in entries}
        engine = InfiniRetriEngine(lm, show_progress=False, **args.engine_options)
        for number, (key, sample) in enumerate(samples.items(), 1):
            if key in done:
                continue
            entries.append(record(engine, sample, max(args.budgets)))
            args.signals.write_text(json.dumps(entries))
            print(f"[{number}/{len(samples)}] {key} {entries[-1]['seconds']:.1f}s", file=sys.stderr, flush=True)
    print(markdown(sweep(entries, samples, DEFAULT_GRID, args.budgets)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
