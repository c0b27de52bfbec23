"""Needle recall of the sentence baselines on the lexical-gap needles (:mod:`.lexgap`).

Each method ranks the package's own sentences of a sample
(:func:`~infiniretri_integrations.core.segmentation.segment_documents`, SmolLM2 tokens) and keeps
them by score until the token budget is filled, exactly as the evidence benchmark's methods of the
same names do (:data:`~infiniretri_integrations.evaluation.evidence.METHODS`): ``bm25_sentences``
(bm25s), ``minilm_sentences`` (all-MiniLM-L6-v2 cosine) and ``random_sentences``. A needle counts
as kept when at least half of its characters are (:func:`~.lexgap.needle_kept`); ``negatives`` is
the fraction of the pair's own hard negatives kept the same way. No engine runs.

Example::

    HF_HUB_OFFLINE=1 python -m infiniretri_integrations.evaluation.lexgap_baselines \\
        --essays ../shared/data/niah_paulgraham/PaulGrahamEssays --length 4000 --budgets 256 512
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infiniretri_integrations.evaluation.evidence_data import EvidenceSample, token_label
from infiniretri_integrations.evaluation.lexgap import build_samples, needle_kept, span_kept

METHOD_NAMES = ("bm25_sentences", "minilm_sentences", "random_sentences")
BUDGETS = (256, 512)


def evaluate(
    bench: Any, samples: Sequence[EvidenceSample], methods: Sequence[str], budgets: Sequence[int]
) -> dict[str, dict[int, dict[str, list[float]]]]:
    """Per method and budget, one value per sample: ``needle`` (1 kept, 0 not) and ``negatives``
    (fraction of the pair's own hard negatives kept)."""
    from infiniretri_integrations.evaluation.evidence import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        msg = f"unknown methods {unknown}; expected names of the evidence benchmark: {sorted(METHODS)}"
        raise ValueError(msg)
    results: dict[str, dict[int, dict[str, list[float]]]] = {
        m: {b: {"needle": [], "negatives": []} for b in budgets} for m in methods
    }
    for sample in samples:
        for method in methods:
            selections = METHODS[method].run(bench, sample, budgets, {})
            for budget in budgets:
                kept = selections[budget].spans
                cell = results[method][budget]
                cell["needle"].append(float(needle_kept(sample, kept)))
                negatives = [span_kept((s, e), kept) for s, e in sample.metadata["negatives"]]
                cell["negatives"].append(sum(negatives) / len(negatives))
    return results


def markdown(results: dict[str, dict[int, dict[str, list[float]]]], seed: int) -> str:
    """One row per method: needle recall with a 95% bootstrap CI, and hard negatives kept, per budget."""
    from infiniretri_integrations.evaluation.evidence import bootstrap_ci

    budgets = sorted({b for per_budget in results.values() for b in per_budget})
    head = " | ".join(f"needle @{b} | negatives @{b}" for b in budgets)
    lines = [f"| method | {head} |", "|---|" + "---|" * (2 * len(budgets))]
    for method, per_budget in results.items():
        cells = []
        for budget in budgets:
            needles = per_budget[budget]["needle"]
            low, high = bootstrap_ci(needles, seed=seed)
            negatives = per_budget[budget]["negatives"]
            cells.append(f"{sum(needles) / len(needles):.2f} [{low:.2f}, {high:.2f}]")
            cells.append(f"{sum(negatives) / len(negatives):.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--essays", required=True, help="folder of the Paul Graham essays (*.txt)")
    parser.add_argument("--length", type=int, default=4000, help="sample length in SmolLM2 tokens")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="kept-token budgets")
    parser.add_argument("--split", default="test", choices=("calibration", "test", "all"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N pairs of the half")
    parser.add_argument("--methods", nargs="+", default=list(METHOD_NAMES))
    args = parser.parse_args(argv)
    if not Path(args.essays).is_dir():
        parser.error(f"--essays: no such folder {args.essays!r} (the Paul Graham essays, *.txt)")

    from infiniretri_integrations import default_model
    from infiniretri_integrations.evaluation.evidence import EvidenceBench

    lm = default_model()
    samples = build_samples(
        args.essays, lm.tokenizer, [args.length], seed=args.seed, split=args.split, limit=args.limit
    )
    results = evaluate(EvidenceBench(lm, seed=args.seed), samples, args.methods, args.budgets)
    print(
        f"lexgap {token_label(args.length)}, {args.split} half ({len(samples)} pairs, seed {args.seed}): "
        "needle kept, mean [95% CI]; own hard negatives kept, mean"
    )
    print(markdown(results, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
