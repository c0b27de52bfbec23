"""Paired differences of a lever's evidence records (its own ``--out`` of ``infiniretri evidence``)
with methods of the probe's test half (docs/results/probe/test_half.json), on the same questions.

    python docs/results/probe/levers/paired.py docs/results/probe/levers/gemma270m_test.json gemma
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from infiniretri_integrations.evaluation.evidence.metrics import bootstrap_ci

BASE = Path("docs/results/probe/test_half.json")
METHODS = ("infiniretri", "infiniretri[no_probe]", "bm25_sentences", "minilm_sentences")


def recall(record: dict[str, Any]) -> float | None:
    value = record["supporting_recall"]
    return value if value is not None else record["answer_recall"]


def main(variant_file: str, label: str) -> None:
    base = json.loads(BASE.read_text())["records"]
    variant = {
        (r["setting"], r["id"], r["budget"]): recall(r) for r in json.loads(Path(variant_file).read_text())["records"]
    }
    for method in METHODS:
        other = {(r["setting"], r["id"], r["budget"]): recall(r) for r in base if r["method"] == method}
        for setting in sorted({key[0] for key in variant}):
            cells = []
            for budget in (256, 512, 1024):
                keys = [
                    k for k in variant if k[0] == setting and k[2] == budget and k in other and variant[k] is not None
                ]
                mine = [float(variant[k]) for k in keys]  # type: ignore[arg-type]
                theirs = [float(other[k]) for k in keys]  # type: ignore[arg-type]
                differences = [a - b for a, b in zip(mine, theirs, strict=True)]
                low, high = bootstrap_ci(differences)
                cells.append(
                    f"{sum(mine) / len(keys):.2f} vs {sum(theirs) / len(keys):.2f}: "
                    f"{sum(differences) / len(keys):+.2f} [{low:+.2f}, {high:+.2f}]"
                )
            print(f"{label} - {method} | {setting} (n={len(keys)}) | " + " | ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
