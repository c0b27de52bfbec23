"""The passage's first sentence's signals fused as one more ranking (fourth look, 2026-12-05; calibration halves,
5-fold cross-validation with chunk_calibration.py's samples, folds and recall): the probe score and the similarity of
each sentence's passage lead (``+lead probe W`` / ``+lead similarity W``) beside the sentence's own, with
``fusion=None`` (``model_only``) and fused as the default fuses. Experiment script; prints mean recall at
256 / 512 / 1,024.

    python docs/results/probe/levers/cv_passage_signals.py --data ../shared/data hp8k_cal.pt lex4k_cal.pt
"""

from __future__ import annotations

import argparse

import torch
from chunk_calibration import Recalls, add_recalls, calibration_samples, cv_folds, print_means
from cv_passage_features import span_passage_leads

from infiniretri_integrations.core.models import default_model
from infiniretri_integrations.core.probe import fit_probe
from infiniretri_integrations.core.scoring import rank_fusion_many
from infiniretri_integrations.evaluation.evidence.probe import DEFAULT_L2, PROBE_FUSION_WEIGHTS

LEAD_WEIGHTS = (0.1, 0.25, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("records", nargs="+", help="recorded loops of the calibration halves")
    args = parser.parse_args()
    lm = default_model()
    samples = calibration_samples(args.data, lm.tokenizer)
    records = {r["key"]: r for path in args.records for r in torch.load(path) if r["key"] in samples and r["spans"]}
    keys = sorted(records)
    lexical_weight, similarity_weight = PROBE_FUSION_WEIGHTS
    results: Recalls = {}
    for fold in cv_folds(keys):
        train = [records[k] for k in keys if k not in fold]
        center, scale, weights, _ = fit_probe(
            torch.cat([r["features"].float() for r in train]), torch.cat([r["labels"] for r in train]), DEFAULT_L2
        )
        for key in fold:
            record = records[key]
            probe = ((record["features"].double() - center) / scale) @ weights.double()
            hidden, lexical = record["hidden"].double(), record["lexical"].double()
            leads = torch.tensor(span_passage_leads(samples[key].text, record["spans"]))
            variants = {
                "bm25": lexical,
                "model_only": rank_fusion_many(probe, [(hidden, similarity_weight)]),
                "fused": rank_fusion_many(probe, [(lexical, lexical_weight), (hidden, similarity_weight)]),
            }
            for weight in LEAD_WEIGHTS:
                variants[f"model_only +lead similarity {weight}"] = rank_fusion_many(
                    probe, [(hidden, similarity_weight), (hidden[leads], weight)]
                )
                variants[f"model_only +lead probe {weight}"] = rank_fusion_many(
                    probe, [(hidden, similarity_weight), (probe[leads], weight)]
                )
                variants[f"fused +lead similarity {weight}"] = rank_fusion_many(
                    probe, [(lexical, lexical_weight), (hidden, similarity_weight), (hidden[leads], weight)]
                )
            add_recalls(results, samples[key], record, variants)
    print_means(results, 34)


if __name__ == "__main__":
    main()
