"""Record per-head features + all signals + labels per sentence for evidence samples."""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from infiniretri_integrations.core.config import option_names
from infiniretri_integrations.core.engine import InfiniRetriEngine, RunSpec
from infiniretri_integrations.core.models import default_model
from infiniretri_integrations.core.probe import AttentionProbe
from infiniretri_integrations.core.similarity import sentence_similarity
from infiniretri_integrations.evaluation.evidence.cli import configure_parser
from infiniretri_integrations.evaluation.evidence.data import load_samples
from infiniretri_integrations.evaluation.evidence.fusion_sweep import sample_key
from infiniretri_integrations.evaluation.evidence.probe import sentence_labels
from infiniretri_integrations.evaluation.evidence.signals import recording_config

parser = argparse.ArgumentParser()
configure_parser(parser)
parser.add_argument("--record", type=Path, required=True)
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
lm = default_model()
samples = load_samples(args, lm.tokenizer)
engine = InfiniRetriEngine(lm, show_progress=False, **args.engine_options)
records = torch.load(args.record) if args.record.exists() else []
done = {r["key"] for r in records}
for n, sample in enumerate(samples, 1):
    key = sample_key(sample)
    if key in done:
        continue
    t = time.perf_counter()
    cfg = recording_config(engine.config.replace(token_budget=1024))
    spec = RunSpec({name: getattr(cfg, name) for name in option_names()}, batch_size=1)
    prepared = engine._prepare([sample.text], [sample.question], spec)
    L = max(prepared.scorer.layers) + 1
    z = (0.0,) * (2 * L * lm.num_heads)
    prepared.scorer = dataclasses.replace(
        prepared.scorer, probe=AttentionProbe("rec", lm.fingerprint(), L, lm.num_heads, z, (1.0,) * len(z), z, 0.0)
    )
    engine._loop(prepared, spec)
    (run,) = prepared.runs
    pool = list(run.attention)
    hidden = sentence_similarity(lm, run.vectors, sample.question, prepared.scorer.states_layer, pool)
    labels = sentence_labels(sample, [(s.start, s.end) for s in pool])
    records.append(
        {
            "key": key,
            "setting": sample.setting,
            "half": sample.half,
            "spans": [[s.start, s.end] for s in pool],
            "tokens": [prepared.scorer.reader(s) for s in pool],
            "attention": torch.tensor([run.attention[s] for s in pool]),
            "lexical": torch.tensor([run.lexical[s] for s in pool]),
            "hidden": torch.tensor([hidden[s] for s in pool]),
            "features": torch.stack([run.head_features[s] for s in pool]),
            "in_working_set": torch.tensor([any(k.sentence is s for k in run.working_set) for s in pool]),
            "labels": torch.tensor(labels),
        }
    )
    torch.save(records, args.record)
    print(f"[{n}/{len(samples)}] {key} {time.perf_counter() - t:.1f}s pos={sum(labels)}", file=sys.stderr, flush=True)
