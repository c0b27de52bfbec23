"""Needle-in-a-haystack cases (the standard NIH harness: Paul Graham essays + the sandwich needle).

Without the essays, the haystack is built from the documentation strings of the Python standard
library, which every Python installation carries, so nothing has to be downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infiniretri_integrations.core.calibration.haystack import NeedleCase, plant_needle, stdlib_docstrings
from infiniretri_integrations.evaluation.results_file import read_results, write_results

STANDARD_NEEDLE = "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n"
STANDARD_QUESTION = "What is the best thing to do in San Francisco?"
NEEDLE_FACTS = ("sandwich", "dolores park")


def load_haystack(essays_dir: str | Path | None = None) -> str:
    """The haystack text: the Paul Graham essays (sorted by file name) when ``essays_dir`` is
    given, else the standard library's documentation strings."""
    if essays_dir is not None:
        folder = Path(essays_dir)
        files = sorted(folder.glob("*.txt"))
        if not files:
            msg = f"No .txt essays found in {str(folder)!r}"
            raise FileNotFoundError(msg)
        return "".join(path.read_text(encoding="utf-8", errors="replace") for path in files)
    return stdlib_docstrings()


def build_case(
    haystack: str,
    tokenizer: Any,
    context_tokens: int,
    depth_percent: float,
    needle: str = STANDARD_NEEDLE,
    question: str = STANDARD_QUESTION,
) -> NeedleCase:
    """The standard NIH case: :func:`~infiniretri_integrations.core.calibration.haystack.plant_needle`
    with the sandwich needle and its question unless others are given."""
    return plant_needle(haystack, tokenizer, context_tokens, depth_percent, needle, question)


def needle_retrieved(kept_texts: Sequence[str], needle: str = STANDARD_NEEDLE) -> bool:
    """True when the kept text contains the needle sentence."""
    joined = " ".join(" ".join(t.split()) for t in kept_texts)
    return " ".join(needle.split()) in joined


def answer_has_facts(answer: str, facts: Sequence[str] = NEEDLE_FACTS) -> bool:
    """True when the answer mentions every fact of the needle (case-insensitive)."""
    lowered = answer.lower()
    return all(fact in lowered for fact in facts)


# ---------------------------------------------------------------------------------------------
# The NIH grid (the paper's figure): context lengths x needle depths, resumable, with a baseline.

DEFAULT_LENGTHS = (8_000, 16_000, 32_000, 64_000, 128_000)
DEFAULT_DEPTHS = (0.0, 25.0, 50.0, 75.0, 100.0)
ANSWER_TOKENS = 48
"""Answer length in the grid: enough for the needle's sentence."""


def _cell_key(context_tokens: int, depth_percent: float) -> str:
    return f"{int(context_tokens)}@{float(depth_percent):g}"


def load_results(path: str | Path) -> dict[str, Any]:
    """A results file written by :func:`run_grid` (``{"meta": ..., "cells": [...]}``), or an empty
    one when ``path`` does not exist yet."""
    return read_results(path, "cells", "NIH")


def run_cell(
    engine: Any,
    haystack: str,
    context_tokens: int,
    depth_percent: float,
    *,
    needle: str = STANDARD_NEEDLE,
    question: str = STANDARD_QUESTION,
    facts: Sequence[str] = NEEDLE_FACTS,
    baseline: bool = True,
    max_new_tokens: int = ANSWER_TOKENS,
) -> dict[str, Any]:
    """One grid cell: InfiniRetri (retrieve + answer) and, with ``baseline``, the same model
    answering from the whole case (middle-truncated to its window, as LongBench does)."""
    import time

    from infiniretri_integrations.core.generation import generate

    lm = engine.local_model
    case = build_case(haystack, lm.tokenizer, context_tokens, depth_percent, needle, question)
    result = engine.retrieve(case.text, question)
    answer = engine.answer_from(result, question, max_new_tokens=max_new_tokens)
    cell: dict[str, Any] = {
        "context_tokens": int(context_tokens),
        "depth_percent": float(depth_percent),
        "input_tokens": result.stats.input_tokens,
        "scoring_layers": list(result.stats.scoring_layers),
        "infiniretri": {
            "retrieved": needle_retrieved([s.text for s in result.sentences], needle),
            "answered": answer_has_facts(answer.text, facts),
            "answer": answer.text,
            "kept_tokens": result.stats.kept_tokens,
            "kept_sentences": result.stats.kept_sentences,
            "chunks": result.stats.chunks,
            "retrieval_seconds": round(result.stats.seconds, 2),
            "generation_seconds": round(answer.generation_seconds, 2),
        },
    }
    if baseline:
        started = time.perf_counter()
        ids = engine.build_answer_prompt(case.text, question, max_new_tokens=max_new_tokens)
        generated = generate(lm, ids, max_new_tokens)
        prompt_text = lm.tokenizer.decode(ids, skip_special_tokens=True)
        cell["full_context"] = {
            "retrieved": needle_retrieved([prompt_text], needle),  # needle survived the truncation
            "answered": answer_has_facts(generated.text, facts),
            "answer": generated.text,
            "prompt_tokens": len(ids),
            "truncated": len(ids) < context_tokens,
            "seconds": round(time.perf_counter() - started, 2),
        }
    return cell


def run_grid(
    engine: Any,
    haystack: str,
    results_path: str | Path,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    *,
    needle: str = STANDARD_NEEDLE,
    question: str = STANDARD_QUESTION,
    facts: Sequence[str] = NEEDLE_FACTS,
    baseline: bool = True,
    max_new_tokens: int = ANSWER_TOKENS,
    meta: dict[str, Any] | None = None,
    on_cell: Any = None,
) -> dict[str, Any]:
    """Run every (length, depth) cell not yet in ``results_path``; the file is rewritten after
    each cell, so an interrupted run resumes where it stopped. Returns the full results."""
    path = Path(results_path)
    data = load_results(path)
    data["meta"] = {
        **data.get("meta", {}),
        **(meta or {}),
        "needle": needle,
        "question": question,
        "facts": list(facts),
    }
    done = {_cell_key(c["context_tokens"], c["depth_percent"]) for c in data["cells"]}
    for length in lengths:
        for depth in depths:
            key = _cell_key(length, depth)
            if key in done:
                if on_cell is not None:
                    on_cell(None)
                continue
            cell = run_cell(
                engine,
                haystack,
                int(length),
                float(depth),
                needle=needle,
                question=question,
                facts=facts,
                baseline=baseline,
                max_new_tokens=max_new_tokens,
            )
            data["cells"].append(cell)
            done.add(key)
            write_results(path, data)
            if on_cell is not None:
                on_cell(cell)
    write_results(path, data)
    return data


def grid_table(
    data: dict[str, Any], method: str = "infiniretri", field: str = "answered"
) -> tuple[list[int], list[float], list[list[float | None]]]:
    """(lengths, depths, matrix[depth][length]) of 1.0/0.0 (None where a cell is missing)."""
    cells = data["cells"]
    lengths = sorted({int(c["context_tokens"]) for c in cells})
    depths = sorted({float(c["depth_percent"]) for c in cells})
    index = {_cell_key(c["context_tokens"], c["depth_percent"]): c for c in cells}
    matrix: list[list[float | None]] = []
    for depth in depths:
        row: list[float | None] = []
        for length in lengths:
            cell = index.get(_cell_key(length, depth))
            value = cell.get(method, {}).get(field) if cell else None
            row.append(None if value is None else float(bool(value)))
        matrix.append(row)
    return lengths, depths, matrix


def grid_summary(data: dict[str, Any]) -> dict[str, Any]:
    """Mean scores per method and field over all finished cells."""
    summary: dict[str, Any] = {"cells": len(data["cells"])}
    for method in ("infiniretri", "full_context"):
        for field in ("retrieved", "answered"):
            values = [bool(c[method][field]) for c in data["cells"] if method in c]
            if values:
                summary[f"{method}.{field}"] = round(sum(values) / len(values), 3)
    return summary


def markdown_grid(data: dict[str, Any]) -> str:
    """A markdown table: one row per depth, one column per length, cells ``R/A | base A``
    (R: needle sentence retrieved, A: answer has the needle's facts; 1 or 0)."""
    lengths, depths, _ = grid_table(data)
    index = {_cell_key(c["context_tokens"], c["depth_percent"]): c for c in data["cells"]}
    header = "| depth \\ length | " + " | ".join(_short(n) for n in lengths) + " |"
    lines = [header, "|---" * (len(lengths) + 1) + "|"]
    for depth in depths:
        row = [f"{depth:g}%"]
        for length in lengths:
            cell = index.get(_cell_key(length, depth))
            if cell is None:
                row.append("-")
                continue
            ir = cell["infiniretri"]
            text = f"{int(ir['retrieved'])}/{int(ir['answered'])}"
            if "full_context" in cell:
                text += f" \\| {int(cell['full_context']['answered'])}"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _short(tokens: int) -> str:
    return f"{tokens // 1000}K" if tokens % 1000 == 0 else str(tokens)


def plot_heatmap(data: dict[str, Any], out_png: str | Path, title: str | None = None) -> Path:
    """Heatmaps like the paper's figure (depth on the y axis, context length on the x axis; green =
    found, red = missed): InfiniRetri retrieval, InfiniRetri answer, and the full-context answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    panels = [
        ("infiniretri", "retrieved", "InfiniRetri: needle kept"),
        ("infiniretri", "answered", "InfiniRetri: answer"),
    ]
    if any("full_context" in c for c in data["cells"]):
        panels.append(("full_context", "answered", "Full context (middle-truncated): answer"))
    cmap = LinearSegmentedColormap.from_list("niah", ["#F0496E", "#EBB839", "#0CD79F"])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (method, field, label) in zip(axes[0], panels, strict=True):
        lengths, depths, matrix = grid_table(data, method, field)
        values = [[float("nan") if v is None else v for v in row] for row in matrix]
        ax.imshow(values, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(lengths)), [_short(n) for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
        ax.set_xlabel("Context length (tokens)")
        ax.set_ylabel("Depth percent")
        done = [v for row in matrix for v in row if v is not None]
        mean = sum(done) / len(done) if done else 0.0
        ax.set_title(f"{label} ({mean:.2f})", fontsize=10)
        for y, row in enumerate(matrix):
            for x, v in enumerate(row):
                ax.text(x, y, "-" if v is None else f"{int(v)}", ha="center", va="center", fontsize=8)
    fig.suptitle(title or f"Needle in a haystack: {data.get('meta', {}).get('model', '')}")
    fig.tight_layout()
    target = Path(out_png)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
