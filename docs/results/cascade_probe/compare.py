"""The cascade (``candidate_tokens``) against the full read, both with the current defaults (the
shipped attention probe fused with BM25 and the similarity), paired on the same test questions.

Each side is one recorded chunk loop per question (docs/results/probe/scripts/record.py, the
cascade's with ``--engine-options '{"candidate_tokens": N}'``); the defaults' final selection at
every budget is computed from the recorded signals as ``engine.retrieve`` does.

    python docs/results/cascade_probe/compare.py --data ../shared/data --split test \\
        --datasets lexgap --lengths 16k --full lex16k_test.pt --cascade lex16k_test_c4k.pt \\
        --json docs/results/cascade_probe/lexgap_16k_c4k.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from infiniretri_integrations.core.models import default_model
from infiniretri_integrations.core.probe import resolve_probe
from infiniretri_integrations.core.scoring import fill_budget, rank_fusion_many
from infiniretri_integrations.evaluation.evidence.cli import configure_parser
from infiniretri_integrations.evaluation.evidence.data import load_samples
from infiniretri_integrations.evaluation.evidence.fusion_sweep import sample_key
from infiniretri_integrations.evaluation.evidence.metrics import bootstrap_ci, evidence_metrics, merge_spans

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
configure_parser(parser)
parser.add_argument("--full", type=Path, required=True, help="recorded loops of the full read")
parser.add_argument("--cascade", type=Path, required=True, help="recorded loops of the cascade")
parser.add_argument("--json", type=Path, help="write the per-question recalls and the paired figures here")
args = parser.parse_args()
lm = default_model()
probe = resolve_probe("auto", lm)
samples = {sample_key(s): s for s in load_samples(args, lm.tokenizer)}


def recalls(entry: dict) -> dict[int, float | None]:
    sample = samples[entry["key"]]
    scores = rank_fusion_many(
        probe.score(entry["features"].float()).double(),
        [(entry["lexical"].double(), probe.fusion_weight), (entry["hidden"].double(), probe.similarity_weight)],
    )
    result: dict[int, float | None] = {}
    for budget in args.budgets:
        chosen = fill_budget(scores, entry["tokens"], budget)
        metrics = evidence_metrics(sample, merge_spans([tuple(entry["spans"][i]) for i in chosen]))
        result[budget] = (
            metrics["supporting_recall"] if metrics["supporting_recall"] is not None else metrics["answer_recall"]
        )
    return result


full = {e["key"]: recalls(e) for e in torch.load(args.full) if e["key"] in samples}
cascade = {e["key"]: recalls(e) for e in torch.load(args.cascade) if e["key"] in samples}
paired = sorted(set(full) & set(cascade))
report: dict[str, object] = {"questions": len(paired), "budgets": {}}
for budget in args.budgets:
    pairs = [(full[k][budget], cascade[k][budget]) for k in paired if full[k][budget] is not None]
    differences = [c - f for f, c in pairs]
    low, high = bootstrap_ci(differences)
    figures = {
        "n": len(pairs),
        "full_read": sum(f for f, _ in pairs) / len(pairs),
        "cascade": sum(c for _, c in pairs) / len(pairs),
        "difference": sum(differences) / len(differences),
        "ci": [low, high],
    }
    report["budgets"][str(budget)] = figures  # type: ignore[index]
    print(
        f"@{budget}: full read {figures['full_read']:.3f}, cascade {figures['cascade']:.3f}, "
        f"cascade - full {figures['difference']:+.3f} [{low:+.3f}, {high:+.3f}] (n={len(pairs)})"
    )
report["per_question"] = {k: {"full_read": full[k], "cascade": cascade[k]} for k in paired}
if args.json:
    args.json.write_text(json.dumps(report, indent=1))
