"""Markdown tables and a plot: every method on the questions the engine finished (test half), mean [95% CI].

Run from the repository root: python docs/results/evidence/paired_report.py docs/results/evidence/evidence_test.png
"""
import collections
import json
import sys

import numpy as np

base = json.load(open("docs/results/evidence/baselines.json"))["records"]
leval_file = json.load(open("docs/results/evidence/leval.json"))["records"]
engine_files = [json.load(open(f))["records"] for f in ("docs/results/evidence/engine_8k.json", "docs/results/evidence/engine_32k.json")]
records = base + leval_file + [r for f in engine_files for r in f]


def key(r):
    return (r["dataset"], r.get("target_tokens"), r["id"])


def metric(r):
    return r["supporting_recall"] if r["dataset"] == "hotpotqa-long" else r["answer_recall"]


def ci(values, seed=0):
    rng = np.random.default_rng(seed)
    a = np.array(values, dtype=float)
    means = a[rng.integers(0, len(a), (2000, len(a)))].mean(axis=1)
    return a.mean(), np.percentile(means, 2.5), np.percentile(means, 97.5)


done = {key(r) for r in records if r["method"] == "infiniretri" and r["half"] == "test"}
settings = sorted({(k[0], k[1]) for k in done}, key=lambda x: (x[0] != "hotpotqa-long", x[1] or 0))
methods = ["infiniretri", "infiniretri[attention]", "bm25_sentences", "bm25_passage_sentences", "minilm_sentences",
           "bm25_chunks", "minilm_chunks", "random_sentences"]
for dataset, length in settings:
    ids = {k for k in done if k[0] == dataset and k[1] == length}
    table = collections.defaultdict(dict)
    tokens = collections.defaultdict(list)
    seen = {}
    for r in records:
        if key(r) in ids and r["half"] == "test" and r["budget"] in (256, 512, 1024):
            value = metric(r)
            if value is None:
                continue
            seen[(r["method"], r["budget"], r["id"])] = value
            tokens[r["method"]].append(r["kept_tokens"])
    by = collections.defaultdict(list)
    for (m, b, _), v in seen.items():
        by[(m, b)].append(v)
    label = f"{dataset} {round(length / 1000)}K" if length else dataset
    n = len({k[2] for k in ids})
    print(f"\n**{label}** (test half, {n} questions; {'supporting-sentence' if dataset == 'hotpotqa-long' else 'answer-string'} recall)\n")
    print("| method | 256 | 512 | 1,024 |")
    print("|---|---|---|---|")
    for m in methods:
        cells = []
        for b in (256, 512, 1024):
            v = by.get((m, b))
            if not v:
                cells.append("-")
                continue
            mean, lo, hi = ci(v)
            cells.append(f"{mean:.2f} [{lo:.2f}, {hi:.2f}]" + ("" if len(v) == len(by.get(("infiniretri", b), v)) else f" (n={len(v)})"))
        if any(c != "-" for c in cells):
            print(f"| {m} | " + " | ".join(cells) + " |")

if len(sys.argv) > 1:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 4), squeeze=False)
    for ax, (dataset, length) in zip(axes[0], settings):
        ids = {k for k in done if k[0] == dataset and k[1] == length}
        seen = {}
        for r in records:
            if key(r) in ids and r["half"] == "test" and r["budget"] in (256, 512, 1024) and metric(r) is not None:
                seen[(r["method"], r["budget"], r["id"])] = metric(r)
        for color, m in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], methods):
            xs, ys, lo, hi = [], [], [], []
            for b in (256, 512, 1024):
                v = [val for (mm, bb, _), val in seen.items() if mm == m and bb == b]
                if v:
                    mean, l, h = ci(v)
                    xs.append(b); ys.append(mean); lo.append(mean - l); hi.append(h - mean)
            if xs:
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=m, color=color,
                            linewidth=2.5 if m == "infiniretri" else 1)
        n = len({k[2] for k in ids})
        ax.set_title(f"{dataset} {round(length / 1000)}K (n={n})" if length else f"{dataset} (n={n})")
        ax.set_xscale("log", base=2); ax.set_xticks([256, 512, 1024]); ax.set_xticklabels(["256", "512", "1024"])
        ax.set_xlabel("kept tokens (budget)"); ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("evidence recall (test half)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(sys.argv[1], dpi=110)
