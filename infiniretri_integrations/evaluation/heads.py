"""Choose query-focused heads on HotpotQA's calibration half (QRHead on natural data).

Each calibration-half question's HotpotQA-long text (its 10 paragraphs padded with other questions'
paragraphs to ``--length`` tokens, as the evidence benchmark builds it) is read once; every head is
scored by the share of the question's context attention that lands on the supporting sentences
(:func:`~infiniretri_integrations.core.calibration.heads.query_focused_heads`). The test half is
never read. The JSON holds the whole ranking; ``--top`` prints the ``scoring_heads`` value to try::

    python -m infiniretri_integrations.evaluation.heads --data ../shared/data --length 4k \\
        --out docs/results/evidence/query_heads_smollm2.json --top 8 16

then measure them as an engine variant of the evidence benchmark, e.g.
``--variant heads8='{"scoring_heads": [[18, 3], ...]}'``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infiniretri_integrations.cli_common import positive_token_count, token_count
from infiniretri_integrations.evaluation.evidence.data import DEFAULT_SEED, HOTPOT_FILE
from infiniretri_integrations.evaluation.evidence_data import EvidenceSample, hotpot_samples

if TYPE_CHECKING:  # the calibration code imports torch: loaded once there is work for it
    from infiniretri_integrations.core.calibration.heads import EvidenceExample, HeadRanking


def evidence_example(sample: EvidenceSample) -> EvidenceExample:
    """A HotpotQA-long sample as an :class:`EvidenceExample`: its supporting sentences are the evidence."""
    if not sample.supporting:
        msg = f"sample {sample.id!r} ({sample.dataset}) has no supporting sentences to choose heads on"
        raise ValueError(msg)
    from infiniretri_integrations.core.calibration.heads import EvidenceExample

    return EvidenceExample(
        text=sample.text, question=sample.question, evidence=tuple((s, e) for s, e, _ in sample.supporting)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infiniretri_integrations.evaluation.heads",
        description="Rank every attention head by its share of question attention on HotpotQA supporting "
        "sentences (calibration half only).",
    )
    parser.add_argument("--data", required=True, metavar="DIR", help="shared data folder (with hotpotqa/)")
    parser.add_argument("--length", type=token_count, default=4000, help="input length in tokens (default 4k)")
    parser.add_argument(
        "--limit", type=positive_token_count, help="first N calibration-half questions (default: all 50)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"split seed (default {DEFAULT_SEED})")
    parser.add_argument("--model", metavar="PATH", help="model folder or .gguf (default: packaged SmolLM2-135M)")
    parser.add_argument(
        "--top", type=positive_token_count, nargs="*", default=[8, 16], help="head counts to print (default 8 16)"
    )
    parser.add_argument(
        "--max-layer",
        type=int,
        action="append",
        default=[],
        help="also print the best heads up to this layer (repeatable)",
    )
    parser.add_argument("--threads", type=positive_token_count, help="torch intra-op threads")
    parser.add_argument("--out", required=True, metavar="PATH.json", help="the ranking (JSON), rewritten")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data = Path(args.data)
    if not (data / HOTPOT_FILE).is_file():
        msg = f"--data: no {HOTPOT_FILE} under {str(data)!r} (expected the shared data folder)"
        raise SystemExit(msg)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from infiniretri_integrations.cli_common import model_from_args
    from infiniretri_integrations.core.calibration.heads import query_focused_heads

    lm = model_from_args(args)
    samples = hotpot_samples(data / HOTPOT_FILE, lm.tokenizer, [args.length], args.seed, "calibration", args.limit)
    started = time.perf_counter()
    ranking = query_focused_heads(lm, [evidence_example(s) for s in samples], progress=True)
    seconds = time.perf_counter() - started
    payload: dict[str, Any] = {
        "ranking": ranking.to_dict(),
        "questions": [s.id for s in samples],
        "length": args.length,
        "seed": args.seed,
        "split": "calibration",
        "seconds": round(seconds, 1),
        "top": {str(n): [list(pair) for pair in ranking.top(n)] for n in args.top},
        "top_up_to_layer": {
            str(layer): {str(n): [list(pair) for pair in ranking.top(n, layer)] for n in args.top}
            for layer in args.max_layer
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(ranking.to_markdown(max(args.top, default=16)))
    for n in args.top:
        print(f"\ntop {n}: {json.dumps({'scoring_heads': payload['top'][str(n)]})}")
        for layer in args.max_layer:
            heads = payload["top_up_to_layer"][str(layer)][str(n)]
            print(f"top {n} up to layer {layer}: {json.dumps({'scoring_heads': heads})}")
    print(f"\n{len(samples)} questions in {seconds:.0f}s; written to {args.out}", file=sys.stderr)
    return 0


def load_ranking(path: str | Path) -> HeadRanking:
    """The ranking a previous run wrote to ``path``."""
    from infiniretri_integrations.core.calibration.heads import HeadRanking

    return HeadRanking.from_dict(json.loads(Path(path).read_text(encoding="utf-8"))["ranking"])


if __name__ == "__main__":
    sys.exit(main())
