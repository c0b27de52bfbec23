"""NIH grid (Paul Graham essays, the standard sandwich needle) for several scoring configurations.

Retrieval only (is the needle sentence among the kept sentences?): this is what the scoring layer
decides, and it skips generation, which the scoring layer does not influence. The results file is
rewritten after every cell, so an interrupted run resumes where it stopped.

    python cookbook/calibration_nih_grid.py --configs 15 18 29 auto \\
        --lengths 8000 16000 32000 64000 --depths 0 25 50 75 100 \\
        --out docs/calibration-nih-grid.json

A configuration is a layer (``15``), layers summed (``15+18``), a layer with heads (``15:0,3``),
``last`` or ``auto`` (the calibrated configuration for the model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_ESSAYS = Path(__file__).resolve().parents[2] / "shared" / "data" / "niah_paulgraham" / "PaulGrahamEssays"


def parse_config(spec: str, lm: Any) -> dict[str, Any]:
    """``{"scoring_layer": ..., "scoring_heads": ...}`` for a configuration string."""
    if spec == "auto":
        from infiniretri_integrations.core.calibration import calibrated_scoring

        layer, heads = calibrated_scoring(lm)
        return {"scoring_layer": layer, "scoring_heads": heads}
    if spec == "last":
        return {"scoring_layer": lm.num_layers - 1, "scoring_heads": None}
    layer_part, _, head_part = spec.partition(":")
    layers = tuple(int(x) for x in layer_part.split("+"))
    heads = tuple(int(x) for x in head_part.split(",")) if head_part else None
    return {"scoring_layer": layers[0] if len(layers) == 1 else layers, "scoring_heads": heads}


def _key(config: str, length: int, depth: float) -> str:
    return f"{config}|{int(length)}@{float(depth):g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default' or a model path / .gguf file")
    parser.add_argument("--configs", nargs="+", default=["15", "18", "last", "auto"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[8000, 16000, 32000, 64000])
    parser.add_argument("--depths", nargs="+", type=float, default=[0, 25, 50, 75, 100])
    parser.add_argument("--essays", default=os.environ.get("NIAH_ESSAYS", str(DEFAULT_ESSAYS)))
    parser.add_argument("--out", default="docs/calibration-nih-grid.json")
    parser.add_argument("--summary", action="store_true", help="only print the table of an existing results file")
    parser.add_argument(
        "--include", nargs="*", default=[], help="with --summary: more results files to merge in (parallel runs)"
    )
    args = parser.parse_args(argv)

    out = Path(args.out)
    data: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {"meta": {}, "cells": []}
    if args.summary:
        for extra in args.include:
            data["cells"] += json.loads(Path(extra).read_text())["cells"]
        print(markdown_summary(data))
        return 0

    from infiniretri_integrations import InfiniRetriEngine, default_model, load_model
    from infiniretri_integrations.core.storage import write_atomic
    from infiniretri_integrations.evaluation.niah import build_case, load_haystack, needle_retrieved

    lm = default_model() if args.model == "default" else load_model(args.model)
    haystack = load_haystack(args.essays)
    configs = {spec: parse_config(spec, lm) for spec in args.configs}
    known = {**data.get("meta", {}).get("configs", {}), **{k: _jsonable(v) for k, v in configs.items()}}
    data["meta"] = {
        "model": lm.name,
        "fingerprint": lm.fingerprint(),
        "configs": known,
        "haystack": "Paul Graham essays",
        "method": "InfiniRetri defaults (chunk 1024, top_k 300, window 8)",
    }
    done = {_key(c["config"], c["context_tokens"], c["depth_percent"]) for c in data["cells"]}
    engines = {spec: InfiniRetriEngine(lm, show_progress=False, **cfg) for spec, cfg in configs.items()}
    for length in args.lengths:
        for depth in args.depths:
            case = None
            for spec, engine in engines.items():
                if _key(spec, length, depth) in done:
                    continue
                if case is None:
                    case = build_case(haystack, lm.tokenizer, length, depth)
                started = time.perf_counter()
                result = engine.retrieve(case.text, case.question)
                cell = {
                    "config": spec,
                    "scoring": _jsonable(configs[spec]),
                    "context_tokens": length,
                    "depth_percent": float(depth),
                    "retrieved": needle_retrieved([s.text for s in result.sentences], case.needle),
                    "kept_tokens": result.stats.kept_tokens,
                    "kept_sentences": result.stats.kept_sentences,
                    "seconds": round(time.perf_counter() - started, 1),
                }
                data["cells"].append(cell)
                write_atomic(out, json.dumps(data, indent=1))
                print(
                    f"{spec:>8} {length:>6} @{depth:>5g}%: retrieved={cell['retrieved']} kept={cell['kept_tokens']} ({cell['seconds']}s)",
                    flush=True,
                )
    print(markdown_summary(data))
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


def markdown_summary(data: dict[str, Any]) -> str:
    """One table per configuration (depth x length, 1 = needle kept) and a summary line each."""
    cells = data["cells"]
    configs = list(dict.fromkeys(c["config"] for c in cells))
    lengths = sorted({c["context_tokens"] for c in cells})
    depths = sorted({c["depth_percent"] for c in cells})
    index = {_key(c["config"], c["context_tokens"], c["depth_percent"]): c for c in cells}
    lines = [
        "| config | " + " | ".join(f"{n // 1000}K" for n in lengths) + " | total |",
        "|---" * (len(lengths) + 2) + "|",
    ]
    for config in configs:
        row = [config]
        hits = total = 0
        for length in lengths:
            values = [index[_key(config, length, d)]["retrieved"] for d in depths if _key(config, length, d) in index]
            hits += sum(values)
            total += len(values)
            row.append(f"{sum(values)}/{len(values)}" if values else "-")
        row.append(f"**{hits}/{total}**")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Per cell (rows: depth %, columns: length; 1 = needle sentence kept):")
    lines.append("")
    lines.append("| config | depth | " + " | ".join(f"{n // 1000}K" for n in lengths) + " |")
    lines.append("|---" * (len(lengths) + 2) + "|")
    for config in configs:
        for depth in depths:
            row = [config, f"{depth:g}"]
            for length in lengths:
                cell = index.get(_key(config, length, depth))
                row.append("-" if cell is None else str(int(cell["retrieved"])))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
