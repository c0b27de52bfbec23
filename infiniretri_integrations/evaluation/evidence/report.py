"""The evidence benchmark's report: per (setting, method, budget) means with bootstrap 95% CIs
(:func:`summarize`), the markdown tables, paired differences from a baseline, and the
recall-vs-budget plot.

Each setting has one headline metric (:func:`primary_metric`): supporting recall on HotpotQA-long,
needle recall (the same ``supporting_recall`` field) on the lexical-gap needles, answer recall on
L-Eval. The lexical-gap settings also show ``negatives_kept``, the fraction of the pair's own hard
negatives kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infiniretri_integrations.cli_common import token_count
from infiniretri_integrations.evaluation.evidence.data import DATASETS, DEFAULT_SEED, RESAMPLES, RESULTS_KEY
from infiniretri_integrations.evaluation.evidence.methods import METHODS, base_method
from infiniretri_integrations.evaluation.evidence.metrics import bootstrap_ci

SUMMARY_METRICS = ("supporting_recall", "both_paragraphs", "answer_recall", "f1", "negatives_kept")
"""The record fields :func:`summarize` averages (``None`` in a row where no record has one)."""
SUPPORTING_DATASETS = ("hotpotqa-long", "lexgap")
"""Datasets whose headline metric is ``supporting_recall`` (the others': ``answer_recall``)."""


def summarize(
    data: dict[str, Any], half: str = "test", resamples: int = RESAMPLES, seed: int = DEFAULT_SEED
) -> list[dict[str, Any]]:
    """One row per (setting, method, budget) of ``half`` (``"all"``: both): n, mean kept tokens,
    and each metric's mean with its bootstrap 95% CI (``None`` where the metric does not apply)."""
    groups: dict[tuple[str, str, int | None], list[dict[str, Any]]] = {}
    for record in data[RESULTS_KEY]:
        if half != "all" and record["half"] != half:
            continue
        groups.setdefault((record["setting"], record["method"], record["budget"]), []).append(record)
    rows = []
    for (setting, method, budget), records in sorted(groups.items(), key=lambda kv: _row_order(*kv[0])):
        row: dict[str, Any] = {
            "setting": setting,
            "method": method,
            "budget": budget,
            "n": len(records),
            "kept_tokens": sum(r["kept_tokens"] for r in records) / len(records),
            "input_tokens": sum(r["input_tokens"] for r in records) / len(records),
        }
        for metric in SUMMARY_METRICS:
            values = [float(r[metric]) for r in records if r.get(metric) is not None]
            row[metric] = (
                {"mean": sum(values) / len(values), "ci": bootstrap_ci(values, resamples, seed), "n": len(values)}
                if values
                else None
            )
        rows.append(row)
    return rows


def _row_order(setting: str, method: str, budget: int | None) -> tuple[Any, ...]:
    dataset, _, length = setting.partition(" ")
    order = list(METHODS)
    base = base_method(method)
    return (
        DATASETS.index(dataset) if dataset in DATASETS else 99,
        token_count(length) if length else 0,
        budget if budget is not None else math.inf,
        order.index(base) if base in order else 99,
        method,
    )


def _cell(value: dict[str, Any] | None, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    low, high = value["ci"]
    return f"{value['mean'] * scale:.2f} [{low * scale:.2f}, {high * scale:.2f}]"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a markdown table (F1 as LongBench reports it: x 100). Supporting recall is
    needle recall on the lexical-gap rows; a column of their own hard negatives kept is added when
    any row has one."""
    with_f1 = any(r["f1"] is not None for r in rows)
    with_negatives = any(r.get("negatives_kept") is not None for r in rows)
    recall = "supporting recall (lexgap: needle)" if with_negatives else "supporting recall"
    header = f"| setting | method | budget | n | kept tokens | {recall} | both paragraphs | answer recall (n) |"
    rule = "|---|---|---:|---:|---:|---|---|---|"
    if with_f1:
        header += " reader F1 |"
        rule += "---|"
    if with_negatives:
        header += " own hard negatives kept |"
        rule += "---|"
    lines = [header, rule]
    for row in rows:
        answer = row["answer_recall"]
        answer_n = f" ({answer['n']})" if answer else ""
        budget = "as kept" if row["budget"] is None else str(row["budget"])
        line = (
            f"| {row['setting']} | {row['method']} | {budget} | {row['n']} | {row['kept_tokens']:.0f} | "
            f"{_cell(row['supporting_recall'])} | {_cell(row['both_paragraphs'])} | "
            f"{_cell(answer)}{answer_n} |"
        )
        if with_f1:
            line += f" {_cell(row['f1'], 100)} |"
        if with_negatives:
            line += f" {_cell(row.get('negatives_kept'))} |"
        lines.append(line)
    return "\n".join(lines)


def primary_metric(setting: str) -> str:
    """The headline metric of a setting: supporting recall on HotpotQA-long and on the
    lexical-gap needles (there: needle recall), answer recall else.

    Example:
        >>> primary_metric("hotpotqa-long 8K"), primary_metric("lexgap 4K"), primary_metric("leval")
        ('supporting_recall', 'supporting_recall', 'answer_recall')
    """
    supporting = setting.startswith("hotpotqa") or setting.partition(" ")[0] in SUPPORTING_DATASETS
    return "supporting_recall" if supporting else "answer_recall"


def metric_label(setting: str, metric: str) -> str:
    """How the tables and the plot name ``metric`` for ``setting``.

    Example:
        >>> metric_label("lexgap 4K", "supporting_recall"), metric_label("hotpotqa-long 8K", "supporting_recall")
        ('needle recall', 'supporting recall')
        >>> metric_label("lexgap 4K", "negatives_kept")
        'own hard negatives kept'
    """
    if setting.partition(" ")[0] == "lexgap" and metric == "supporting_recall":
        return "needle recall"
    if metric == "negatives_kept":
        return "own hard negatives kept"
    return metric.replace("_", " ")


def compact_tables(rows: Sequence[dict[str, Any]]) -> str:
    """Per setting, its headline metric as method rows x budget columns (mean [95% CI]); on the
    lexical-gap settings a second such table of the pair's own hard negatives kept."""
    parts = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        metrics = [primary_metric(setting)]
        if any(r["setting"] == setting and r.get("negatives_kept") is not None for r in rows):
            metrics.append("negatives_kept")
        for metric in metrics:
            here = [r for r in rows if r["setting"] == setting and r.get(metric) is not None]
            budgets = sorted({r["budget"] for r in here}, key=lambda b: math.inf if b is None else b)
            if not here:
                continue
            n = max(r[metric]["n"] for r in here)
            lines = [
                f"**{setting}**, {metric_label(setting, metric)} (n = {n})",
                "",
                "| method | " + " | ".join("as kept" if b is None else str(b) for b in budgets) + " |",
                "|---|" + "---|" * len(budgets),
            ]
            for method in dict.fromkeys(r["method"] for r in here):
                cells = {r["budget"]: _cell(r[metric]) for r in here if r["method"] == method}
                lines.append(f"| {method} | " + " | ".join(cells.get(b, "") for b in budgets) + " |")
            parts.append("\n".join(lines))
    return "\n\n".join(parts)


def paired_differences(
    data: dict[str, Any],
    baseline: str,
    half: str = "test",
    resamples: int = RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """Per (setting, method, budget): the mean per-question difference of the headline metric
    from ``baseline`` at the same budget, over the questions both have, with a paired bootstrap
    95% CI (a CI excluding 0 is a difference the sample supports)."""
    values: dict[tuple[str, str, int | None], dict[str, float]] = {}
    for record in data[RESULTS_KEY]:
        value = record.get(primary_metric(record["setting"]))
        if (half == "all" or record["half"] == half) and value is not None:
            values.setdefault((record["setting"], record["method"], record["budget"]), {})[record["id"]] = float(value)
    rows = []
    for (setting, method, budget), by_id in sorted(values.items(), key=lambda kv: _row_order(*kv[0])):
        reference = values.get((setting, baseline, budget))
        if method == baseline or not reference:
            continue
        shared = sorted(set(by_id) & set(reference))
        if not shared:
            continue
        differences = [by_id[i] - reference[i] for i in shared]
        rows.append(
            {
                "setting": setting,
                "method": method,
                "budget": budget,
                "n": len(shared),
                "difference": sum(differences) / len(differences),
                "ci": bootstrap_ci(differences, resamples, seed),
            }
        )
    return rows


def paired_table(rows: Sequence[dict[str, Any]], baseline: str) -> str:
    """The paired differences as method rows x budget columns per setting."""
    parts = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        here = [r for r in rows if r["setting"] == setting]
        budgets = sorted({r["budget"] for r in here})
        lines = [
            f"**{setting}**, {metric_label(setting, primary_metric(setting))} minus {baseline} "
            f"(paired, n = {max(r['n'] for r in here)})",
            "",
            "| method | " + " | ".join(str(b) for b in budgets) + " |",
            "|---|" + "---|" * len(budgets),
        ]
        for method in dict.fromkeys(r["method"] for r in here):
            cells = {
                r["budget"]: f"{r['difference']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]"
                for r in here
                if r["method"] == method
            }
            lines.append(f"| {method} | " + " | ".join(cells.get(b, "") for b in budgets) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def report(
    data: dict[str, Any], resamples: int = RESAMPLES, seed: int = DEFAULT_SEED, baseline: str = "bm25_sentences"
) -> str:
    """The test half (the result): headline tables, paired differences from ``baseline``, the full
    table; then the calibration half's full table, labelled."""
    parts = []
    test_rows = summarize(data, "test", resamples, seed)
    if test_rows:
        parts.append(
            f"### Test half (the result)\n\n{compact_tables([r for r in test_rows if r['budget'] is not None])}"
        )
        paired = paired_differences(data, baseline, "test", resamples, seed)
        if paired:
            parts.append(f"#### Paired differences from {baseline} (test half)\n\n{paired_table(paired, baseline)}")
        parts.append(f"#### All metrics (test half)\n\n{markdown_table(test_rows)}")
    calibration_rows = summarize(data, "calibration", resamples, seed)
    if calibration_rows:
        parts.append(f"### Calibration half (for tuning only)\n\n{markdown_table(calibration_rows)}")
    return "\n\n".join(parts) if parts else "(no records)"


def method_styles(methods: list[str]) -> dict[str, dict[str, Any]]:
    """One colour and marker per method, the same in every panel (tab10, or tab20 beyond ten methods).

    Example:
        >>> styles = method_styles(["infiniretri", "bm25_sentences"])
        >>> styles["infiniretri"]["marker"], styles["bm25_sentences"]["marker"]
        ('o', 's')
    """
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    markers = "osD^v<>pPX*h"
    return {
        method: {"color": palette(number % palette.N), "marker": markers[number % len(markers)]}
        for number, method in enumerate(methods)
    }


def plot(data: dict[str, Any], path: str | Path, half: str = "test", seed: int = DEFAULT_SEED) -> Path:
    """Recall vs budget per method with 95% CI bars, one panel per dataset/length: each setting's
    headline metric (:func:`primary_metric`: supporting recall for HotpotQA-long, needle recall for
    the lexical-gap needles, answer recall for L-Eval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summarize(data, half, seed=seed) if r["budget"] is not None]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    if not settings:
        msg = f"nothing to plot: no budgeted records of the {half} half"
        raise ValueError(msg)
    figure, axes = plt.subplots(1, len(settings), figsize=(4.6 * len(settings), 4.2), squeeze=False, sharey=True)
    styles = method_styles(list(dict.fromkeys(r["method"] for r in rows)))
    for axis, setting in zip(axes[0], settings, strict=True):
        metric = primary_metric(setting)
        here = [r for r in rows if r["setting"] == setting and r[metric] is not None]
        methods = list(dict.fromkeys(r["method"] for r in here))
        for number, method in enumerate(methods):
            points = sorted((r["budget"], r[metric]) for r in here if r["method"] == method)
            dodge = 2 ** (0.035 * (number - (len(methods) - 1) / 2))  # side by side, so the CI bars stay apart
            xs = [b * dodge for b, _ in points]
            means = [v["mean"] for _, v in points]
            errors = [[v["mean"] - v["ci"][0] for _, v in points], [v["ci"][1] - v["mean"] for _, v in points]]
            axis.errorbar(xs, means, yerr=errors, capsize=3, label=method, **styles[method])
        n = max((r[metric]["n"] for r in here), default=0)
        axis.set_title(f"{setting} ({half} half, n={n})")
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted({r["budget"] for r in here}), [str(b) for b in sorted({r["budget"] for r in here})])
        axis.set_xlabel("kept-token budget (reader tokens)")
        axis.set_ylabel(metric_label(setting, metric))
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    legend: dict[str, Any] = {}
    for axis in axes[0]:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)  # every method of every panel, once
    axes[0][-1].legend(list(legend.values()), list(legend), fontsize=7, loc="lower right")
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=120)
    plt.close(figure)
    return target
