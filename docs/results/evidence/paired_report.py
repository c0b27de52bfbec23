"""Markdown tables and a plot: every method on the questions the engine finished (test half), mean [95% CI].

The engine's results files hold fewer questions than the baselines' (CPU time), so every method is restricted to
the engine's questions: the comparison is paired. Run from the repository root:

    python docs/results/evidence/paired_report.py docs/results/evidence/evidence_test.png
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import numpy as np

from infiniretri_integrations.evaluation.evidence import CHEAP_METHODS

FOLDER = Path("docs/results/evidence")
FILES = ("baselines.json", "leval.json", "engine_8k.json", "engine_32k.json")
METHODS = ("infiniretri", "infiniretri[attention]", "infiniretri[shared]", *CHEAP_METHODS)
BUDGETS = (256, 512, 1024)


def load_records() -> list[dict]:
    records: list[dict] = []
    for name in FILES:
        with (FOLDER / name).open(encoding="utf-8") as handle:
            records += json.load(handle)["records"]
    return records


def key(record: dict) -> tuple:
    return (record["dataset"], record.get("target_tokens"), record["id"])


def metric(record: dict) -> float | None:
    return record["supporting_recall"] if record["dataset"] == "hotpotqa-long" else record["answer_recall"]


def mean_ci(values: list[float], seed: int = 0) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    data = np.array(values, dtype=float)
    means = data[rng.integers(0, len(data), (2000, len(data)))].mean(axis=1)
    return float(data.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_values(records: list[dict], ids: set[tuple]) -> dict[tuple[str, int], list[float]]:
    values: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    for (method, budget, _), value in per_question(records, ids).items():
        values[(method, budget)].append(value)
    return values


def per_question(records: list[dict], ids: set[tuple]) -> dict[tuple[str, int, str], float]:
    seen: dict[tuple[str, int, str], float] = {}
    for record in records:
        value = metric(record)
        if key(record) in ids and record["half"] == "test" and record["budget"] in BUDGETS and value is not None:
            seen[(record["method"], record["budget"], record["id"])] = value
    return seen


PAIRED_AGAINST = ("bm25_sentences", "minilm_sentences", "bm25_chunks", "minilm_chunks")


def paired_differences(records: list[dict], ids: set[tuple]) -> list[str]:
    """Rows ``| baseline | d256 | d512 | d1024 |``: infiniretri minus the baseline on the same
    questions, mean [95% bootstrap CI] of the per-question differences."""
    seen = per_question(records, ids)
    rows = []
    for baseline in PAIRED_AGAINST:
        cells = []
        for budget in BUDGETS:
            diffs = [
                seen[("infiniretri", budget, q)] - seen[(baseline, budget, q)]
                for q in sorted({k[2] for k in ids})
                if ("infiniretri", budget, q) in seen and (baseline, budget, q) in seen
            ]
            cells.append("-" if not diffs else "{:+.2f} [{:+.2f}, {:+.2f}]".format(*mean_ci(diffs)))
        rows.append(f"| infiniretri - {baseline} | " + " | ".join(cells) + " |")
    return rows


def reader_f1(records: list[dict], ids: set[tuple]) -> list[str]:
    """Rows ``| method | F1 at 256 | 512 | 1,024 |`` for the records that have a reader answer."""
    values: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    for record in records:
        if key(record) in ids and record["half"] == "test" and record["budget"] in BUDGETS and "f1" in record:
            values[(record["method"], record["budget"])].append(100 * record["f1"])
    rows = []
    for method in METHODS:
        cells = [
            "{:.1f} [{:.1f}, {:.1f}]".format(*mean_ci(values[(method, b)])) + f" ({len(values[(method, b)])})"
            if values.get((method, b))
            else "-"
            for b in BUDGETS
        ]
        if any(cell != "-" for cell in cells):
            rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return rows


def main(plot: str | None) -> None:
    records = load_records()
    done = {key(r) for r in records if r["method"] == "infiniretri" and r["half"] == "test"}
    settings = sorted({(k[0], k[1]) for k in done}, key=lambda s: (s[0] != "hotpotqa-long", s[1] or 0))
    panels = []
    for dataset, length in settings:
        ids = {k for k in done if k[0] == dataset and k[1] == length}
        values = paired_values(records, ids)
        label = f"{dataset} {round(length / 1000)}K" if length else dataset
        questions = len({k[2] for k in ids})
        metric_name = "supporting-sentence" if dataset == "hotpotqa-long" else "answer-string"
        print(f"\n**{label}** (test half, {questions} questions; {metric_name} recall)\n")
        print("| method | 256 | 512 | 1,024 |\n|---|---|---|---|")
        for method in METHODS:
            cells = []
            for budget in BUDGETS:
                found = values.get((method, budget))
                count = "" if not found or len(found) == questions else f" (n={len(found)})"
                cells.append("-" if not found else "{:.2f} [{:.2f}, {:.2f}]".format(*mean_ci(found)) + count)
            if any(cell != "-" for cell in cells):
                print(f"| {method} | " + " | ".join(cells) + " |")
        print(f"\nPaired differences, {label} (same questions; mean [95% CI]):\n")
        print("| difference | 256 | 512 | 1,024 |\n|---|---|---|---|")
        print("\n".join(paired_differences(records, ids)))
        f1_rows = reader_f1(records, ids)
        if f1_rows:
            print(f"\nReader F1 x 100, {label} (SmolLM2-135M answering from the kept text; mean [95% CI], n):\n")
            print("| method | 256 | 512 | 1,024 |\n|---|---|---|---|")
            print("\n".join(f1_rows))
        panels.append((f"{label} (n={questions})", values))
    if plot:
        draw(panels, plot)


def draw(panels: list[tuple[str, dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (title, values) in zip(axes[0], panels, strict=True):
        for color, method in zip(colors, METHODS, strict=False):
            points = [(b, *mean_ci(values[(method, b)])) for b in BUDGETS if values.get((method, b))]
            if not points:
                continue
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
            width = 2.5 if method == "infiniretri" else 1.0
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=method, color=color, linewidth=width)
        ax.set_title(title)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(BUDGETS), [str(b) for b in BUDGETS])
        ax.set_xlabel("kept tokens (budget)")
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("evidence recall (test half)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
