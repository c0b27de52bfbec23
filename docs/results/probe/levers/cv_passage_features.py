"""Passage features for the probe on the calibration halves (HotpotQA-long 8K, lexical gap 4K), 5-fold
cross-validation over the recorded chunk loops (docs/results/probe/scripts/record.py), with chunk_calibration.py's
samples, folds and recall. Experiment script (2026-12-05, fourth session); prints mean recall at 256 / 512 / 1,024.

BM25 indexes each sentence with its passage's first line (the title, on HotpotQA), which is much of its lead over the
attention on HotpotQA. Can the probe read the same thing from attention? Each sentence's features are extended with
those of its passage's first sentence (``lead``: all of them; ``lead_mean`` / ``lead_best``: its mean or best-token
densities only), or with those and its neighbours' in the passage (``lead_nb``), fitted at several L2 penalties, and
scored alone, with the similarity (``fusion=None``: the issue's "attention alone") and fused as the default fuses.

    python docs/results/probe/levers/cv_passage_features.py --data ../shared/data hp8k_cal.pt lex4k_cal.pt
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from chunk_calibration import Recalls, add_recalls, calibration_samples, cv_folds, print_means

from infiniretri_integrations.core.models import default_model
from infiniretri_integrations.core.probe import fit_probe
from infiniretri_integrations.core.scoring import rank_fusion_many
from infiniretri_integrations.evaluation.evidence.probe import DEFAULT_L2, PROBE_FUSION_WEIGHTS

PASSAGE_BREAK = re.compile(r"\n[ \t]*\n")
FEATURE_SETS = ("own", "lead", "lead_mean", "lead_best", "lead_nb")
PENALTIES = (DEFAULT_L2, 0.03, 0.1, 0.3, 1.0)

Score = Callable[[dict[str, Any]], torch.Tensor]


def span_passage_leads(text: str, spans: Sequence[Sequence[int]]) -> list[int]:
    """For each recorded sentence span, the index of its passage's first sentence (a blank line before a
    sentence, in the gap or its own leading whitespace, starts a passage; as ``core.lexical.passage_leads``)."""
    leads: list[int] = []
    lead = 0
    for index, (start, end) in enumerate(spans):
        gap = text[spans[index - 1][1] : start] if index else ""
        body = text[start:end]
        if index == 0 or PASSAGE_BREAK.search(gap + body[: len(body) - len(body.lstrip())]):
            lead = index
        leads.append(lead)
    return leads


def feature_sets(record: dict[str, Any], text: str) -> dict[str, torch.Tensor]:
    """The record's ``[sentences, features]`` under each of :data:`FEATURE_SETS`."""
    own = record["features"].float()
    leads = span_passage_leads(text, record["spans"])
    count, half = len(leads), own.shape[1] // 2
    previous = [i - 1 if i and leads[i - 1] == leads[i] else i for i in range(count)]
    following = [i + 1 if i + 1 < count and leads[i + 1] == leads[i] else i for i in range(count)]
    lead = own[leads]
    return {
        "own": own,
        "lead": torch.cat([own, lead], 1),
        "lead_mean": torch.cat([own, lead[:, :half]], 1),
        "lead_best": torch.cat([own, lead[:, half:]], 1),
        "lead_nb": torch.cat([own, lead, own[previous], own[following]], 1),
    }


def fit(train: list[dict[str, Any]], name: str, l2: float) -> Score:
    features = torch.cat([r["sets"][name] for r in train])
    center, scale, weights, bias = fit_probe(features, torch.cat([r["labels"] for r in train]), l2)
    return lambda r: ((r["sets"][name].double() - center) / scale) @ weights.double() + float(bias)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("records", nargs="+", help="recorded loops of the calibration halves")
    args = parser.parse_args()
    lm = default_model()
    samples = calibration_samples(args.data, lm.tokenizer)
    records = {r["key"]: r for path in args.records for r in torch.load(path) if r["key"] in samples and r["spans"]}
    for key, record in records.items():
        record["sets"] = feature_sets(record, samples[key].text)
    keys = sorted(records)
    lexical_weight, similarity_weight = PROBE_FUSION_WEIGHTS
    results: Recalls = {}
    for fold in cv_folds(keys):
        train = [records[k] for k in keys if k not in fold]
        probes = {f"{name} l2={l2}": fit(train, name, l2) for name in FEATURE_SETS for l2 in PENALTIES}
        for key in fold:
            record = records[key]
            lexical, hidden = record["lexical"].double(), record["hidden"].double()
            variants: dict[str, torch.Tensor] = {"bm25": lexical}
            for name, score in probes.items():
                probe_score = score(record)
                variants[f"{name}: probe alone"] = probe_score
                variants[f"{name}: fusion=None"] = rank_fusion_many(probe_score, [(hidden, similarity_weight)])
                variants[f"{name}: fused"] = rank_fusion_many(
                    probe_score, [(lexical, lexical_weight), (hidden, similarity_weight)]
                )
            add_recalls(results, samples[key], record, variants)
    print_means(results, 32)


if __name__ == "__main__":
    main()
