"""Needle recall of the sentence baselines on the lexical-gap needles (:mod:`.lexgap`), one
length at a time, as a small table (no results file).

The same measurement is the evidence benchmark's ``lexgap`` dataset
(``python -m infiniretri_integrations.evaluation.evidence --datasets lexgap ...``: resumable,
several lengths, paired differences, a plot); this script runs the benchmark's methods
(:data:`~infiniretri_integrations.evaluation.evidence.METHODS`: ``bm25_sentences``,
``minilm_sentences``, ``random_sentences``, ``infiniretri``, ...) on the same samples and scores
them with the benchmark's own metrics
(:func:`~infiniretri_integrations.evaluation.evidence.evidence_metrics`): ``needle`` is its
``supporting_recall`` (the needle kept when at least half of its characters are) and
``negatives`` its ``negatives_kept`` (the fraction of the pair's own hard negatives kept): one
measurement, two presentations.

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
from infiniretri_integrations.evaluation.lexgap import build_samples

METHOD_NAMES = ("bm25_sentences", "minilm_sentences", "random_sentences")
BUDGETS = (256, 512)


def evaluate(
    bench: Any, samples: Sequence[EvidenceSample], methods: Sequence[str], budgets: Sequence[int]
) -> dict[str, dict[int, dict[str, list[float]]]]:
    """Per method and budget, one value per sample: ``needle`` (1 kept, 0 not: the benchmark's
    ``supporting_recall``) and ``negatives`` (fraction of the pair's own hard negatives kept: its
    ``negatives_kept``)."""
    from infiniretri_integrations.evaluation.evidence import METHODS, evidence_metrics

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
                scores = evidence_metrics(sample, selections[budget].spans)
                needle, negatives = scores["supporting_recall"], scores.get("negatives_kept")
                if needle is None or negatives is None:
                    msg = f"sample {sample.id!r} of {sample.dataset!r} has no needle or no hard negatives to score"
                    raise ValueError(msg)
                results[method][budget]["needle"].append(needle)
                results[method][budget]["negatives"].append(negatives)
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
