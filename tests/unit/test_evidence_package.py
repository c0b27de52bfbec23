"""The evidence benchmark as a package: every public name of the former single module still imports
from ``infiniretri_integrations.evaluation.evidence``; importing it (and its ``--help``) loads no torch;
``python -m`` runs the same command line."""

from __future__ import annotations

import os
import subprocess
import sys

import infiniretri_integrations.evaluation.evidence as evidence

FORMER_PUBLIC_NAMES = [
    "BUDGETS",
    "CHEAP_METHODS",
    "COVERAGE",
    "DATASETS",
    "DEFAULT_METHODS",
    "DEFAULT_SEED",
    "EvidenceBench",
    "EvidenceSample",
    "FIXED_META",
    "HOTPOT_FILE",
    "LENGTHS",
    "LEVAL_FOLDER",
    "LEVAL_TASKS",
    "METHODS",
    "MethodFn",
    "MethodSpec",
    "RESAMPLES",
    "RESULTS_KEY",
    "SUMMARY_METRICS",
    "Scorer",
    "Selection",
    "Span",
    "YES_NO",
    "answer_in_text",
    "base_method",
    "best_f1",
    "bootstrap_ci",
    "compact_tables",
    "configure_parser",
    "covered_fraction",
    "cut_to_budgets",
    "evidence_metrics",
    "hotpot_samples",
    "kept_text",
    "leval_samples",
    "load_samples",
    "locate_pieces",
    "main",
    "markdown_table",
    "merge_spans",
    "normalize_answer",
    "paired_differences",
    "paired_table",
    "parse_variant",
    "plot",
    "primary_metric",
    "rank_by_scores",
    "read_results",
    "reference_kept_text",
    "report",
    "run",
    "run_benchmark",
    "summarize",
    "write_results",
]
"""The names ``evaluation/evidence.py`` defined or imported for use (typing and stdlib helpers aside), less
``fill_budget``: its ``(order, sizes, budget)`` rule is now ``core.scoring.fill_budget(scores, sizes, budget)``,
so the old name is gone rather than kept with another meaning."""


def test_every_former_public_name_is_exported() -> None:
    missing = [name for name in FORMER_PUBLIC_NAMES if not hasattr(evidence, name)]
    assert not missing
    assert set(FORMER_PUBLIC_NAMES) <= set(evidence.__all__)
    assert all(hasattr(evidence, name) for name in evidence.__all__)
    assert callable(evidence.report) and callable(evidence.run)  # the functions, not the submodules
    assert not hasattr(evidence, "fill_budget")


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def test_import_and_help_load_no_torch() -> None:
    code = (
        "import sys, infiniretri_integrations.evaluation.evidence as e\n"
        "e.configure_parser(__import__('argparse').ArgumentParser())\n"
        "print('torch' in sys.modules)"
    )
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_python_m_runs_the_command_line() -> None:
    done = run_python("-m", "infiniretri_integrations.evaluation.evidence", "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Reader-free evidence benchmark" in done.stdout and "--reference-limit" in done.stdout
    bad = run_python("-m", "infiniretri_integrations.evaluation.evidence", "--data", "d", "--budgets", "0")
    assert bad.returncode == 2 and "expected comma-separated positive token counts" in bad.stderr
