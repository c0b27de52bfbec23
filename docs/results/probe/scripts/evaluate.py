"""The probe variants' evidence records from recorded chunk loops (scripts/record.py), in the
evidence benchmark's record format, merged with the benchmark's own records of the other methods.

With ``fusion_stage`` final the chunk loop does not depend on the final options, so each
variant's selection is computed from the recorded signals exactly as ``engine.retrieve`` does
(checked: the recorded default without the probe and attention alone equal the benchmark's own
records of them on every question and budget; tests/unit/test_probe.py checks the engine side).

    python docs/results/probe/scripts/evaluate.py --data ../shared/data --split test \\
        --datasets hotpotqa-long --lengths 8k --record hp8k_test.pt --log record.log \\
        --probe infiniretri_integrations/core/calibration/bundled/probes/479377a704f2db16.json \\
        --previous docs/results/similarity/test_half.json --out docs/results/probe/test_half.json
"""

import argparse
import json
import re
from pathlib import Path

import torch

from infiniretri_integrations.core.models import default_model
from infiniretri_integrations.core.probe import AttentionProbe
from infiniretri_integrations.core.scoring import fill_budget, rank_fusion_many
from infiniretri_integrations.evaluation.evidence.cli import configure_parser
from infiniretri_integrations.evaluation.evidence.data import load_samples
from infiniretri_integrations.evaluation.evidence.fusion_sweep import sample_key
from infiniretri_integrations.evaluation.evidence.methods import Selection
from infiniretri_integrations.evaluation.evidence.runner import _record

RENAMED = {
    "infiniretri": "infiniretri[no_probe]",
    "infiniretri[today]": "infiniretri[before_similarity]",
    "infiniretri[attention]": "infiniretri[attention]",
}
KEPT = ("bm25_sentences", "minilm_sentences", "random_sentences", "bm25_chunks", "minilm_chunks")

parser = argparse.ArgumentParser()
configure_parser(parser)
parser.add_argument("--record", type=Path, required=True)
parser.add_argument("--log", type=Path, help="the recording log (loop seconds per sample)")
parser.add_argument("--probe", type=Path, required=True)
parser.add_argument("--previous", type=Path, required=True)
args = parser.parse_args()
lm = default_model()
samples = {sample_key(s): s for s in load_samples(args, lm.tokenizer)}
probe = AttentionProbe.load(args.probe, lm)
seconds = {}
if args.log:
    for line in args.log.read_text().splitlines():
        match = re.match(r"\[\d+/\d+\] (\S+) ([\d.]+)s", line)
        if match:
            seconds[match.group(1)] = float(match.group(2))


def variants(entry, probe_scores):
    attention, lexical, hidden = (entry[k].double() for k in ("attention", "lexical", "hidden"))
    return {
        "infiniretri": rank_fusion_many(
            probe_scores, [(lexical, probe.fusion_weight), (hidden, probe.similarity_weight)]
        ),
        "infiniretri[model_only]": rank_fusion_many(probe_scores, [(hidden, probe.similarity_weight)]),
        "infiniretri[probe_only]": rank_fusion_many(probe_scores, []),
        "check[no_probe]": rank_fusion_many(attention, [(lexical, 2.5), (hidden, 1.5)]),
    }


out = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {"meta": {}, "records": []}
settings = {s.setting for s in samples.values()}
out["records"] = [r for r in out["records"] if r["setting"] not in settings]
checks = []
for entry in torch.load(args.record):
    sample = samples.get(entry["key"])
    if sample is None:
        continue
    probe_scores = probe.score(entry["features"].float()).double()
    for method, scores in variants(entry, probe_scores).items():
        for budget in args.budgets:
            chosen = fill_budget(scores, entry["tokens"], budget)
            selection = Selection(
                [tuple(entry["spans"][i]) for i in chosen],
                sum(entry["tokens"][i] for i in chosen),
                len(chosen),
                seconds.get(entry["key"], 0.0),
            )
            record = _record(sample, method, budget, selection)
            if method.startswith("check"):
                checks.append(record)
            else:
                out["records"].append(record)
previous = json.loads(args.previous.read_text())
for record in previous["records"]:
    if record["setting"] not in settings or record["half"] != args.split:
        continue
    if record["method"] in KEPT or record["method"] in RENAMED:
        out["records"].append({**record, "method": RENAMED.get(record["method"], record["method"])})
recorded = {
    (r["id"], r["budget"]): r["spans"]
    for r in previous["records"]
    if r["method"] == "infiniretri" and r["setting"] in settings
}
same = sum(recorded.get((c["id"], c["budget"])) == c["spans"] for c in checks)
print(f"{sorted(settings)}: recomputed previous default equals its benchmark record in {same}/{len(checks)} cases")
out["meta"] = {**previous.get("meta", {}), "probe": str(args.probe), "probe_records": "docs/results/probe/scripts"}
Path(args.out).write_text(json.dumps(out))
