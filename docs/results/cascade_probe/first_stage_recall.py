"""How often the default first stage puts the evidence among its candidates, and BM25 alone (``similarity=None``),
over one half of a length-built dataset; no pass is run. Experiment script (2026-12-05, third session).

    python docs/results/cascade_probe/first_stage_recall.py --data ../shared/data --datasets hotpotqa-long \\
        --lengths 128k --split test --json hotpotqa_128k.json
    python docs/results/cascade_probe/first_stage_recall.py --data ../shared/data --datasets lexgap \\
        --lengths 64k --split test --candidate-tokens 16384 --json lexgap_64k.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infiniretri_integrations.core.cascade import candidate_sentences
from infiniretri_integrations.core.config import RetrievalConfig
from infiniretri_integrations.core.engine import first_stage_scores
from infiniretri_integrations.core.lexical import bm25_passage_scores
from infiniretri_integrations.core.models import default_model
from infiniretri_integrations.core.segmentation import segment_documents
from infiniretri_integrations.evaluation.evidence.cli import configure_parser
from infiniretri_integrations.evaluation.evidence.data import load_samples
from infiniretri_integrations.evaluation.lexgap import span_kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    parser.add_argument("--json", type=Path, required=True, help="per-sample results")
    parser.add_argument("--candidate-tokens", type=int, default=None, help="the candidate budget (default: 'auto')")
    args = parser.parse_args()
    lm = default_model()
    results: dict[str, dict[str, float]] = {}
    for sample in load_samples(args, lm.tokenizer):
        (sentences,) = segment_documents([sample.text], lm.tokenizer, 256)
        total = sum(s.token_count for s in sentences)
        row = {"input_tokens": float(total)}
        for name, similarity in (("default", "hidden"), ("bm25_only", None)):
            config = RetrievalConfig(similarity=similarity, candidate_tokens=args.candidate_tokens or "auto")
            budget = config.candidate_budget(total)
            coverage = config.effective_candidate_coverage
            if budget is None or coverage is None:
                msg = (
                    f"{sample.setting}: {total} tokens are read whole with candidate_tokens={config.candidate_tokens!r}"
                )
                raise SystemExit(msg)
            lexical = [bm25_passage_scores(sentences, sample.question)]
            first, _ = first_stage_scores(lm, config, sentences, [sample.question], lexical)
            assert first is not None
            chosen = candidate_sentences(sentences, first[0], budget, coverage)
            spans = [(s.start, s.end) for s in chosen]
            held = [span_kept((start, end), spans) for start, end, _ in sample.supporting]
            row[name] = sum(held) / len(held)
            row["share"] = sum(s.token_count for s in chosen) / total
        results[sample.id] = row
    means = {
        key: round(sum(r[key] for r in results.values()) / len(results), 3) for key in ("default", "bm25_only", "share")
    }
    print(args.datasets, args.lengths, len(results), means)
    args.json.write_text(json.dumps({"means": means, "samples": results}, indent=1))


if __name__ == "__main__":
    main()
