"""The evidence benchmark's settings and inputs: the defaults of a run, the results-file key,
and the samples a command line asks for (built by
:mod:`~infiniretri_integrations.evaluation.evidence_data`).

Example:
    >>> COVERAGE, BUDGETS, DATASETS
    (0.5, (256, 512, 1024), ('hotpotqa-long', 'leval'))
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from infiniretri_integrations.evaluation.evidence_data import (
    LEVAL_TASKS,
    EvidenceSample,
    hotpot_samples,
    leval_samples,
)

__all__ = [
    "BUDGETS",
    "COVERAGE",
    "DATASETS",
    "DEFAULT_SEED",
    "HOTPOT_FILE",
    "LENGTHS",
    "LEVAL_FOLDER",
    "LEVAL_TASKS",
    "RESAMPLES",
    "RESULTS_KEY",
    "YES_NO",
    "EvidenceSample",
    "Span",
    "load_samples",
]

COVERAGE = 0.5
"""A gold sentence is covered when at least this fraction of its characters is kept."""
BUDGETS = (256, 512, 1024)
LENGTHS = (8000, 32000, 128000)
DEFAULT_SEED = 0
RESAMPLES = 2000
HOTPOT_FILE = "hotpotqa/camera_ready_nd8_dev_sample100.json"
LEVAL_FOLDER = "leval"
DATASETS = ("hotpotqa-long", "leval")
RESULTS_KEY = "records"
YES_NO = frozenset({"yes", "no"})

Span = tuple[int, int]
"""A character span ``(start, end)`` of a sample's text."""


def load_samples(args: argparse.Namespace, tokenizer: Any) -> list[EvidenceSample]:
    """The samples ``args`` ask for (HotpotQA-long per length, then L-Eval)."""
    data = Path(args.data)
    if not data.is_dir():
        msg = f"--data: no such folder {str(data)!r} (expected the shared data folder with hotpotqa/ and leval/)"
        raise FileNotFoundError(msg)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        msg = f"unknown datasets {unknown}; choose from {list(DATASETS)}"
        raise ValueError(msg)
    samples: list[EvidenceSample] = []
    if "hotpotqa-long" in args.datasets:
        samples += hotpot_samples(
            data / HOTPOT_FILE, tokenizer, sorted(args.lengths), args.seed, args.split, args.limit
        )
    if "leval" in args.datasets:
        samples += leval_samples(
            data / LEVAL_FOLDER,
            tokenizer,
            args.seed,
            tasks=args.leval_tasks,
            questions=args.leval_questions,
            max_document_tokens=args.leval_max_tokens,
            max_answer_words=args.leval_max_answer_words,
            split=args.split,
        )
    return samples
