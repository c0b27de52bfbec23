"""Three more probe levers on the calibration halves (HotpotQA-long 8K, lexical gap 4K), 5-fold cross-validation
over the recorded chunk loops (docs/results/probe/scripts/record.py), with chunk_calibration.py's samples, folds and recall.
Experiment script (2026-12-05, third session); prints mean recall at 256 / 512 / 1,024 per variant:

* ``layers N``: a probe on the heads of layers 0..N-1 only (what a shallower ``scoring_layer`` could read: layer 9
  costs half the full read), fused with BM25 and the similarity as the default fuses;
* ``model_only sim W``: ``fusion=None`` (the probe and the similarity, no BM25) with similarity weight W;
* ``listwise``: a probe fitted with a softmax over each question's sentences instead of the pooled logistic
  regression.

    python docs/results/probe/levers/cv_third_look.py --data ../shared/data hp8k_cal.pt lex4k_cal.pt
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from chunk_calibration import Recalls, add_recalls, calibration_samples, cv_folds, print_means

from infiniretri_integrations.core.models import default_model
from infiniretri_integrations.core.scoring import rank_fusion_many
from infiniretri_integrations.evaluation.evidence.probe import DEFAULT_L2, PROBE_FUSION_WEIGHTS, fit_records

Score = Callable[[dict[str, Any]], torch.Tensor]


def layer_columns(layers: int, recorded_layers: int, heads: int) -> list[int]:
    """Feature columns of layers ``0..layers-1`` in :func:`~infiniretri_integrations.core.probe.head_features`'
    layout (log mean densities of every layer's heads, then log best densities)."""
    width = layers * heads
    return list(range(width)) + list(range(recorded_layers * heads, recorded_layers * heads + width))


def fit_listwise(train: list[dict[str, Any]], l2: float, iterations: int = 200) -> Score:
    """Linear weights on standardised features maximising each question's softmax likelihood of its evidence."""
    features = torch.cat([r["features"].double() for r in train])
    center, scale = features.mean(0), features.std(0).clamp_min(1e-6)
    data = [((r["features"].double() - center) / scale, r["labels"].double()) for r in train if r["labels"].sum()]
    weights = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=iterations, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = sum(-(torch.log_softmax(x @ weights, 0) * y).sum() / y.sum() for x, y in data)
        value = value / len(data) + l2 * (weights * weights).sum()
        value.backward()
        return value

    optimizer.step(loss)
    fitted = weights.detach()
    return lambda r: ((r["features"].double() - center) / scale) @ fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("records", nargs="+", help="recorded loops of the calibration halves")
    args = parser.parse_args()
    lm = default_model()
    samples = calibration_samples(args.data, lm.tokenizer)
    records = {r["key"]: r for path in args.records for r in torch.load(path) if r["key"] in samples and r["spans"]}
    keys = sorted(records)
    folds = cv_folds(keys)
    recorded_layers = records[keys[0]]["features"].shape[1] // (2 * lm.num_heads)
    lexical_weight, similarity_weight = PROBE_FUSION_WEIGHTS
    results: Recalls = {}
    for fold in folds:
        train = [records[k] for k in keys if k not in fold]
        probes: dict[str, tuple[Score, list[int] | None]] = {}
        for layers in (recorded_layers, 13, 10, 7):
            columns = layer_columns(layers, recorded_layers, lm.num_heads)
            sliced = [{**r, "features": r["features"].float()[:, columns]} for r in train]
            probe = fit_records(sliced, lm, layers, DEFAULT_L2, {})
            probes[f"layers {layers}"] = (lambda r, p=probe: p.score(r["features"]).double(), columns)
        probes["listwise"] = (fit_listwise(train, DEFAULT_L2), None)
        for key in fold:
            record = records[key]
            lexical, hidden = record["lexical"].double(), record["hidden"].double()
            variants: dict[str, torch.Tensor] = {"bm25": lexical}
            for name, (score, columns) in probes.items():
                view = record if columns is None else {**record, "features": record["features"].float()[:, columns]}
                probe_score = score(view)
                variants[f"{name}: probe alone"] = probe_score
                variants[f"{name}: fused"] = rank_fusion_many(
                    probe_score, [(lexical, lexical_weight), (hidden, similarity_weight)]
                )
                if name == f"layers {recorded_layers}":
                    for weight in (0.1, 0.25, 0.5, 1.0, 1.5):
                        variants[f"model_only sim {weight}"] = rank_fusion_many(probe_score, [(hidden, weight)])
            add_recalls(results, samples[key], record, variants)
    print_means(results, 28)


if __name__ == "__main__":
    main()
