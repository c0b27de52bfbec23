"""Chunk 1,024 vs 4,096 on the calibration halves (HotpotQA-long 8K, lexical gap 4K), from recorded
chunk loops (docs/results/probe/scripts/record.py, once per chunk size): the defaults' signals,
with probes fitted by 5-fold cross-validation on each chunk size's own features, and the shipped
probe. Experiment script; prints mean recall at 256 / 512 / 1,024.

    python docs/results/probe/levers/chunk_calibration.py --data ../shared/data \\
        --c4096 hp8k_cal.pt lex4k_cal.pt --c1024 hp8k_cal_c1024.pt lex4k_cal_c1024.pt
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import torch

from infiniretri_integrations.core.models import default_model
from infiniretri_integrations.core.probe import resolve_probe
from infiniretri_integrations.core.scoring import fill_budget, rank_fusion_many
from infiniretri_integrations.evaluation.evidence.cli import configure_parser
from infiniretri_integrations.evaluation.evidence.data import load_samples
from infiniretri_integrations.evaluation.evidence.fusion_sweep import sample_key
from infiniretri_integrations.evaluation.evidence.metrics import evidence_metrics, merge_spans
from infiniretri_integrations.evaluation.evidence.probe import DEFAULT_L2, PROBE_FUSION_WEIGHTS, fit_records

BUDGETS = (256, 512, 1024)
SETTINGS = (("hotpotqa-long", "8k"), ("lexgap", "4k"))


def calibration_samples(data: str, tokenizer: Any) -> dict[str, Any]:
    """The calibration halves of :data:`SETTINGS`, by the recorded loops' key."""
    samples: dict[str, Any] = {}
    for dataset, length in SETTINGS:
        sample_parser = argparse.ArgumentParser()
        configure_parser(sample_parser)
        sample_args = sample_parser.parse_args(
            ["--data", data, "--datasets", dataset, "--lengths", length, "--split", "calibration"]
        )
        samples.update({sample_key(s): s for s in load_samples(sample_args, tokenizer)})
    return samples


def cv_folds(keys: list[str]) -> list[set[str]]:
    """Five folds of ``keys``, shuffled once with seed 0 (every lever script uses the same folds)."""
    random.seed(0)
    order = keys[:]
    random.shuffle(order)
    return [set(order[i::5]) for i in range(5)]


def supporting_recall(sample: Any, record: dict[str, Any], ranking: torch.Tensor, budget: int) -> float:
    """The sample's evidence recall when the record's sentences are kept by ``ranking`` up to ``budget`` tokens."""
    chosen = fill_budget(ranking, record["tokens"], budget)
    kept = merge_spans([tuple(record["spans"][i]) for i in chosen])
    return float(evidence_metrics(sample, kept)["supporting_recall"] or 0.0)


Recalls = dict[tuple[str, str, int], list[float]]
"""Per ``(dataset, variant, budget)``, one recall per calibration question (the lever scripts' results)."""


def add_recalls(results: Recalls, sample: Any, record: dict[str, Any], variants: dict[str, torch.Tensor]) -> None:
    """Each variant's recall of ``record`` at every budget of :data:`BUDGETS`, appended to ``results``."""
    dataset = record["key"].split("|")[0]
    for variant, ranking in variants.items():
        for budget in BUDGETS:
            results.setdefault((dataset, variant, budget), []).append(
                supporting_recall(sample, record, ranking, budget)
            )


def print_means(results: Recalls, width: int) -> None:
    """One line per dataset and variant: mean recall at each budget, and the number of questions."""
    for dataset, _ in SETTINGS:
        for variant in sorted({k[1] for k in results}):
            cells = [results[(dataset, variant, b)] for b in BUDGETS]
            print(dataset, f"{variant:{width}s}", " / ".join(f"{sum(c) / len(c):.3f}" for c in cells), len(cells[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--c4096", nargs="+", required=True, help="recorded loops at chunk 4,096")
    parser.add_argument("--c1024", nargs="+", required=True, help="recorded loops at chunk 1,024")
    args = parser.parse_args()
    lm = default_model()
    shipped = resolve_probe("auto", lm)
    assert shipped is not None
    samples = calibration_samples(args.data, lm.tokenizer)
    loops = {
        name: {r["key"]: r for path in paths for r in torch.load(path) if r["key"] in samples}
        for name, paths in (("c4096", args.c4096), ("c1024", args.c1024))
    }
    keys = sorted(set(loops["c4096"]) & set(loops["c1024"]))
    folds = cv_folds(keys)
    lexical_weight, similarity_weight = PROBE_FUSION_WEIGHTS
    results: dict[tuple[str, str, str, int], list[float]] = {}
    for name, by_key in loops.items():
        for fold in folds:
            train = [by_key[k] for k in keys if k not in fold]
            fold_probe = fit_records(train, lm, shipped.layers, DEFAULT_L2, {"fold": sorted(fold)})

            for key in fold:
                r = by_key[key]
                lexical, hidden, attention = (r[x].double() for x in ("lexical", "hidden", "attention"))
                fitted, bundled = (p.score(r["features"].float()).double() for p in (fold_probe, shipped))
                variants = {
                    "default (cv probe)": rank_fusion_many(
                        fitted, [(lexical, lexical_weight), (hidden, similarity_weight)]
                    ),
                    "default (shipped probe)": rank_fusion_many(
                        bundled, [(lexical, lexical_weight), (hidden, similarity_weight)]
                    ),
                    "model's own signals (cv)": rank_fusion_many(fitted, [(hidden, similarity_weight)]),
                    "probe alone (cv)": fitted,
                    "probe=None": rank_fusion_many(attention, [(lexical, 2.5), (hidden, 1.5)]),
                    "bm25": lexical,
                }
                for variant, ranking in variants.items():
                    for budget in BUDGETS:
                        recall = supporting_recall(samples[key], r, ranking, budget)
                        results.setdefault((key.split("|")[0], variant, name, budget), []).append(recall)
    for dataset, _ in SETTINGS:
        for variant in sorted({k[1] for k in results}):
            for name in loops:
                cells = [results[(dataset, variant, name, b)] for b in BUDGETS]
                print(
                    dataset, name, f"{variant:26s}", " / ".join(f"{sum(c) / len(c):.3f}" for c in cells), len(cells[0])
                )


if __name__ == "__main__":
    main()
