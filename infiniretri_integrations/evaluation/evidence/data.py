"""The evidence benchmark's settings and inputs: the defaults of a run, the results-file key,
and the samples a command line asks for (built by
:mod:`~infiniretri_integrations.evaluation.evidence_data` and, for ``lexgap``,
:mod:`~infiniretri_integrations.evaluation.lexgap`).

Example:
    >>> COVERAGE, BUDGETS, DATASETS, DEFAULT_DATASETS
    (0.5, (256, 512, 1024), ('hotpotqa-long', 'leval', 'lexgap'), ('hotpotqa-long', 'leval'))
    >>> DATASET_LENGTHS["lexgap"]
    (4000, 16000, 64000)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from infiniretri_integrations.evaluation import lexgap
from infiniretri_integrations.evaluation.evidence_data import (
    COVERAGE,
    LEVAL_TASKS,
    EvidenceSample,
    Span,
    hotpot_samples,
    leval_samples,
)

__all__ = [
    "BUDGETS",
    "COVERAGE",
    "DATASETS",
    "DATASET_LENGTHS",
    "DEFAULT_DATASETS",
    "DEFAULT_SEED",
    "HOTPOT_FILE",
    "LENGTHS",
    "LEVAL_FOLDER",
    "LEVAL_TASKS",
    "LEXGAP_FOLDER",
    "RESAMPLES",
    "RESULTS_KEY",
    "YES_NO",
    "EvidenceSample",
    "Span",
    "check_inputs",
    "dataset_lengths",
    "load_samples",
]

BUDGETS = (256, 512, 1024)
LENGTHS = (8000, 32000, 128000)
"""HotpotQA-long's default input lengths in tokens."""
DEFAULT_SEED = 0
RESAMPLES = 2000
HOTPOT_FILE = "hotpotqa/camera_ready_nd8_dev_sample100.json"
LEVAL_FOLDER = "leval"
LEXGAP_FOLDER = "niah_paulgraham/PaulGrahamEssays"
"""The haystack of the lexical-gap needles, under ``--data``."""
DATASETS = ("hotpotqa-long", "leval", lexgap.DATASET)
DEFAULT_DATASETS = ("hotpotqa-long", "leval")
"""What a run without ``--datasets`` measures (``lexgap`` is asked for by name)."""
DATASET_LENGTHS = {"hotpotqa-long": LENGTHS, lexgap.DATASET: lexgap.LENGTHS}
"""Each length-built dataset's default input lengths (``--lengths`` not given)."""
RESULTS_KEY = "records"
YES_NO = frozenset({"yes", "no"})


def dataset_lengths(args: argparse.Namespace, dataset: str) -> list[int]:
    """The input lengths of ``dataset`` (one of :data:`DATASET_LENGTHS`), ascending: ``args.lengths``
    when given, else the dataset's own defaults.

    Example:
        >>> dataset_lengths(argparse.Namespace(lengths=None), "lexgap")
        [4000, 16000, 64000]
        >>> dataset_lengths(argparse.Namespace(lengths=[16000, 4000]), "hotpotqa-long")
        [4000, 16000]
    """
    lengths = getattr(args, "lengths", None)
    return sorted(lengths if lengths else DATASET_LENGTHS[dataset])


def check_inputs(args: argparse.Namespace) -> None:
    """Refuse, before any model is loaded, unknown ``args.datasets`` and, for ``lexgap``, a
    missing essays folder (named in the message).

    Raises:
        ValueError: an unknown dataset name.
        FileNotFoundError: ``lexgap`` asked for and ``<data>/niah_paulgraham/PaulGrahamEssays``
            is not a folder.
    """
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        msg = f"unknown datasets {unknown}; choose from {list(DATASETS)}"
        raise ValueError(msg)
    if lexgap.DATASET in args.datasets:
        essays = Path(args.data) / LEXGAP_FOLDER
        if not essays.is_dir():
            msg = (
                f"--datasets lexgap: no essays folder {str(essays)!r} "
                f"(expected the Paul Graham essays, *.txt, at --data/{LEXGAP_FOLDER})"
            )
            raise FileNotFoundError(msg)


def load_samples(args: argparse.Namespace, tokenizer: Any) -> list[EvidenceSample]:
    """The samples ``args`` ask for (HotpotQA-long per length, then L-Eval, then the lexical-gap
    needles per length: ``--split``, ``--seed`` and ``--limit``, the first N pairs of the half,
    as for HotpotQA)."""
    data = Path(args.data)
    if not data.is_dir():
        msg = (
            f"--data: no such folder {str(data)!r} "
            "(expected the shared data folder with hotpotqa/, leval/ and niah_paulgraham/)"
        )
        raise FileNotFoundError(msg)
    check_inputs(args)
    samples: list[EvidenceSample] = []
    if "hotpotqa-long" in args.datasets:
        samples += hotpot_samples(
            data / HOTPOT_FILE, tokenizer, dataset_lengths(args, "hotpotqa-long"), args.seed, args.split, args.limit
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
    if lexgap.DATASET in args.datasets:
        samples += lexgap.build_samples(
            data / LEXGAP_FOLDER,
            tokenizer,
            dataset_lengths(args, lexgap.DATASET),
            seed=args.seed,
            split=args.split,
            limit=args.limit,
        )
    return samples
