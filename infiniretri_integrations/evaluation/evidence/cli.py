"""The evidence benchmark's command line: ``python -m infiniretri_integrations.evaluation.evidence``
and the ``infiniretri evidence`` subcommand (:func:`configure_parser`, :func:`run`, :func:`main`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infiniretri_integrations.cli_common import name_list, positive_token_count, token_count_list
from infiniretri_integrations.evaluation.evidence.data import (
    BUDGETS,
    COVERAGE,
    DATASET_LENGTHS,
    DATASETS,
    DEFAULT_DATASETS,
    DEFAULT_SEED,
    LEVAL_TASKS,
    LEXGAP_FOLDER,
    RESAMPLES,
    RESULTS_KEY,
    check_inputs,
    load_samples,
)
from infiniretri_integrations.evaluation.evidence.methods import CHEAP_METHODS, DEFAULT_METHODS, METHODS, parse_variant
from infiniretri_integrations.evaluation.evidence.report import plot, report
from infiniretri_integrations.evaluation.evidence.runner import EvidenceBench, run_benchmark
from infiniretri_integrations.evaluation.results_file import read_results

TITLE = "Reader-free evidence benchmark: does a method keep the evidence, at an equal token budget?"
"""The benchmark in one line (the command's description)."""


def _variant(text: str) -> tuple[str, dict[str, Any]]:
    try:
        return parse_variant(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to ``parser`` (the ``infiniretri evidence`` subcommand and this
    module's CLI). Options the parser already has (e.g. a shared ``--model``) are left as they are."""
    taken = set(parser._option_string_actions)

    def option(*flags: str, **kwargs: Any) -> None:
        if not taken.intersection(flags):
            parser.add_argument(*flags, **kwargs)

    option(
        "--data",
        required=True,
        metavar="DIR",
        help=f"shared data folder (with hotpotqa/, leval/ and, for lexgap, {LEXGAP_FOLDER}/)",
    )
    option(
        "--datasets",
        type=name_list,
        default=list(DEFAULT_DATASETS),
        help=f"comma-separated subset of {','.join(DATASETS)} (default {','.join(DEFAULT_DATASETS)}; lexgap: the "
        "lexical-gap needles in the Paul Graham essays, needle recall as the headline metric)",
    )
    defaults = "; ".join(f"{d} {','.join(_k(n) for n in lengths)}" for d, lengths in DATASET_LENGTHS.items())
    option(
        "--lengths",
        type=token_count_list,
        default=None,
        help=f"input lengths in tokens of hotpotqa-long and lexgap, each run at every length given (L-Eval keeps "
        f"its documents: see --leval-max-tokens); default: each dataset's own ({defaults})",
    )
    option("--budgets", type=token_count_list, default=list(BUDGETS), help="kept-token budgets (default 256,512,1024)")
    option(
        "--methods",
        type=name_list,
        default=list(DEFAULT_METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}; 'cheap' = the baselines without a model pass "
        f"(default: {','.join(DEFAULT_METHODS)}); --variant adds infiniretri[NAME]",
    )
    option(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="an engine variant measured as method infiniretri[NAME], e.g. l12='{\"scoring_layer\": 12}' (repeatable)",
    )
    option("--engine-options", type=json.loads, default={}, metavar="JSON", help="options of the base engine (JSON)")
    option("--scoring-model", metavar="PATH", help="a separate scoring model for the engine (folder or .gguf)")
    option(
        "--int8",
        action="store_true",
        help="the engine scores with int8 dynamic quantisation of the scoring model's linear layers "
        "(CPU; core.models.quantize_int8); records are labelled as usual: write them to their own --out",
    )
    option("--split", choices=("calibration", "test", "all"), default="all", help="which half to run")
    option("--seed", type=int, default=DEFAULT_SEED, help=f"split/data/random seed (default {DEFAULT_SEED})")
    option(
        "--limit",
        type=positive_token_count,
        help="first N HotpotQA questions and first N lexgap pairs (of the chosen split; L-Eval: --leval-questions)",
    )
    option("--leval-tasks", type=name_list, default=list(LEVAL_TASKS), help=f"default {','.join(LEVAL_TASKS)}")
    option("--leval-questions", type=positive_token_count, default=80, help="L-Eval questions in all (default 80)")
    option(
        "--leval-max-tokens",
        type=positive_token_count,
        default=32000,
        help="skip longer L-Eval documents (default 32k)",
    )
    option("--leval-max-answer-words", type=positive_token_count, default=20, help="longest gold answer (default 20)")
    option("--chunk-tokens", type=positive_token_count, default=200, help="chunk size of the chunk methods")
    option(
        "--reference-limit",
        type=positive_token_count,
        help="run the (slow) authors' package on the first N HotpotQA-long questions at the shortest length",
    )
    option(
        "--reader",
        action="store_true",
        help="reader F1: the packaged model answers from each kept text (records of the chosen methods without one, "
        "resumed ones included)",
    )
    option("--max-new-tokens", type=positive_token_count, default=32, help="reader answer length (default 32)")
    option("--model", metavar="PATH", help="reader/tokenizer model (default: packaged SmolLM2-135M)")
    option(
        "--baseline",
        default="bm25_sentences",
        help="method the paired differences are taken from (default bm25_sentences)",
    )
    option("--resamples", type=positive_token_count, default=RESAMPLES, help="bootstrap resamples (default 2000)")
    option("--out", default="evidence_results.json", help="results JSON (finished records are skipped)")
    option("--table", metavar="PATH.md", help="write the markdown tables here")
    option("--plot", metavar="PATH.png", help="write the recall-vs-budget plot here")
    option("--threads", type=positive_token_count, help="torch intra-op threads")
    option("--quiet", action="store_true", help="no progress lines on stderr")
    option("--report-only", action="store_true", help="only print/write the tables and plot of --out (no run)")


def _k(tokens: int) -> str:
    """``8000`` -> ``"8k"`` (how the help writes a default length)."""
    return f"{tokens // 1000}k" if tokens % 1000 == 0 else str(tokens)


def _methods(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    names: list[str] = []
    for name in args.methods:
        names.extend(CHEAP_METHODS if name == "cheap" else [name])
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        msg = f"unknown methods {unknown}; choose from {list(METHODS)} or 'cheap'"
        raise ValueError(msg)
    chosen: list[tuple[str, dict[str, Any]]] = [(n, {}) for n in dict.fromkeys(names)]
    if args.reference_limit and "reference" not in names:
        chosen.append(("reference", {}))
    seen = {n for n, _ in chosen}
    for name, options in args.variant:
        if name in seen:
            msg = f"--variant {name} given twice"
            raise ValueError(msg)
        chosen.append((name, options))
        seen.add(name)
    return chosen


def load_reader(args: argparse.Namespace) -> Any:
    """The reader/tokenizer model of ``args`` (``--model``, ``--device``, ``--dtype``): the packaged
    default unless ``--model`` names one."""
    from infiniretri_integrations.core.models import default_model, load_model

    model, device, dtype = (getattr(args, name, None) for name in ("model", "device", "dtype"))
    return default_model(device, dtype) if model is None else load_model(model, device=device, dtype=dtype)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark ``args`` describe (see :func:`configure_parser`); prints the tables."""

    def log(line: str) -> None:
        if not getattr(args, "quiet", False):
            print(line, file=sys.stderr, flush=True)

    if getattr(args, "report_only", False):
        data = read_results(args.out, RESULTS_KEY, "evidence")
        if not data[RESULTS_KEY]:
            msg = f"--report-only: no records in {str(args.out)!r}"
            raise FileNotFoundError(msg)
        _write_report(args, data, log)
        return 0
    methods = _methods(args)
    if not Path(args.data).is_dir():
        msg = (
            f"--data: no such folder {str(args.data)!r} "
            "(expected the shared data folder with hotpotqa/, leval/ and niah_paulgraham/)"
        )
        raise FileNotFoundError(msg)
    check_inputs(args)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    lm = load_reader(args)
    samples = load_samples(args, lm.tokenizer)
    log(f"{len(samples)} samples ({time.perf_counter() - started:.0f}s to load); methods {[n for n, _ in methods]}")
    scoring_model = getattr(args, "scoring_model", None)
    if getattr(args, "int8", False):
        from infiniretri_integrations.core.models import as_local_model, quantize_int8

        scoring_model = quantize_int8(lm if scoring_model is None else as_local_model(scoring_model))
    bench = EvidenceBench(
        lm,
        chunk_tokens=args.chunk_tokens,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        engine_options=args.engine_options,
        scoring_model=scoring_model,
    )
    meta = {
        "seed": args.seed,
        "chunk_tokens": args.chunk_tokens,
        "coverage": COVERAGE,
        "tokenizer": lm.name,
        "leval_tasks": list(args.leval_tasks),
        "leval_max_answer_words": args.leval_max_answer_words,
        "leval_max_tokens": args.leval_max_tokens,
        "max_sentence_tokens": bench.max_sentence_tokens,
        "engine_options": args.engine_options,
        "scoring_model": getattr(args, "scoring_model", None),
        "scoring_int8": bool(getattr(args, "int8", False)),
        "variants": {name: options for name, options in methods if options},
        "budget_rule": "units in score order, each added if it still fits, until none fits; document order",
        "split": "questions shuffled once by seed, alternately calibration/test "
        "(L-Eval: per task; lexgap: per category)",
    }
    data = run_benchmark(
        bench,
        samples,
        methods,
        args.budgets,
        args.out,
        meta=meta,
        reference_limit=args.reference_limit,
        reader=args.reader,
        log=log,
    )
    _write_report(args, data, log)
    return 0


def _write_report(args: argparse.Namespace, data: dict[str, Any], log: Callable[[str], None]) -> None:
    """Print the report of ``data``; write ``--table`` and ``--plot`` when given."""
    text = report(data, args.resamples, args.seed, args.baseline)
    print(text)
    if data["meta"].get("skipped_methods"):
        print(f"\nskipped: {data['meta']['skipped_methods']}")
    if args.table:
        table = Path(args.table)
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(text + "\n", encoding="utf-8")
        log(f"wrote {table}")
    if args.plot:
        log(f"wrote {plot(data, args.plot, seed=args.seed)}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infiniretri_integrations.evaluation.evidence``: exit 0, 2 on bad input, 1 on failure."""
    parser = argparse.ArgumentParser(prog="python -m infiniretri_integrations.evaluation.evidence", description=TITLE)
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (finished records are saved; rerun to resume)", file=sys.stderr)
        return 130
