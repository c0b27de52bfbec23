"""The ``infiniretri`` command: ask questions over files, run the NIH grid and the QA evaluation.

Usage (see ``infiniretri --help`` and ``infiniretri COMMAND --help``)::

    infiniretri ask report.txt notes.md -q "Who signed the contract?" [--model PATH|GGUF] [--json] [--html out.html]
    infiniretri niah --essays ../shared/data/niah_paulgraham/PaulGrahamEssays --out docs/results/niah.json
    infiniretri qa --hotpotqa ../shared/data/hotpotqa/camera_ready_nd8_dev_sample100.json --limit 30
    infiniretri evidence --data ../shared/data --datasets hotpotqa-long --lengths 8k --budgets 512
    infiniretri demo [--files a.txt --question "..."]

Every command takes ``--model``, ``--device`` and ``--dtype``; ``infiniretri --version`` prints the version.
Exit codes: 0 success, 1 runtime failure, 2 usage or input error (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infiniretri_integrations.cli_common import (
    EXIT_OK,
    Parser,
    UsageError,
    add_model_arguments,
    add_version_argument,
    model_from_args,
    model_path,
    read_document,
    run_command,
)
from infiniretri_integrations.cli_common import positive_token_count as _positive_int
from infiniretri_integrations.cli_common import token_count_list as _int_list
from infiniretri_integrations.core.config import (
    AUTO_CANDIDATE_TOKENS,
    AUTO_CASCADE_ABOVE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TOKENS_PER_PASS,
)
from infiniretri_integrations.evaluation import niah as niah_eval
from infiniretri_integrations.evaluation import qa as qa_eval

Handler = Callable[[argparse.Namespace, Any], int]


# --------------------------------------------------------------------------------- argument types
def _depth_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated percentages, got {text!r}") from None
    if not values or any(not 0 <= v <= 100 for v in values):
        raise argparse.ArgumentTypeError(f"depths must be within 0..100, got {text!r}")
    return values


def _layer(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"layer must be an integer or 'auto', got {text!r}") from None


def _candidate_tokens(text: str) -> int | str:
    if text in ("auto", "none"):
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive token count, 'auto' or 'none', got {text!r}") from None


# --------------------------------------------------------------------------------- shared options
RETRIEVAL_OPTIONS = {
    "tokens_per_pass": "tokens_per_pass",
    "chunk_size": "chunk_size",
    "layer": "scoring_layer",
    "similarity": "similarity",
    "probe": "probe",
    "candidate_tokens": "candidate_tokens",
}
"""Command-line destination -> :class:`RetrievalConfig` field."""


def _add_retrieval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokens-per-pass",
        "--top-k",
        dest="tokens_per_pass",
        type=_positive_int,
        help=f"context tokens kept per forward pass (default {DEFAULT_TOKENS_PER_PASS}; --top-k: its old name)",
    )
    parser.add_argument(
        "--chunk-size", type=_positive_int, help=f"tokens read per forward pass (default {DEFAULT_CHUNK_SIZE})"
    )
    parser.add_argument(
        "--layer", type=_layer, help="scoring layer index or 'auto' (default: the model's calibrated layer)"
    )
    parser.add_argument(
        "--similarity",
        choices=("hidden", "embeddings", "none"),
        help="the model's own similarity signal fused with attention (default hidden; none: off)",
    )
    parser.add_argument(
        "--probe",
        metavar="auto|none|PATH",
        help="rank by the attention probe: auto (default) the one shipped for the model, none: the scoring "
        "layer's attention, or a probe file",
    )
    parser.add_argument(
        "--candidate-tokens",
        type=_candidate_tokens,
        metavar="N|auto|none",
        help="the cascade for long inputs: read only a candidate set of N tokens; auto (default): "
        f"{AUTO_CANDIDATE_TOKENS} for inputs over {AUTO_CASCADE_ABOVE} tokens; none: read every token",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show progress bars (stderr)"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress bars")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The retrieval options given on the command line, as config fields."""
    given = {field: getattr(args, dest, None) for dest, field in RETRIEVAL_OPTIONS.items()}
    overrides = {field: value for field, value in given.items() if value is not None}
    for name in ("similarity", "probe", "candidate_tokens"):
        if overrides.get(name) == "none":
            overrides[name] = None
    return overrides


def _load(args: argparse.Namespace, lm: Any) -> Any:
    """``lm`` when the caller passed a ready model (tests, notebooks), else the one the arguments name."""
    return lm if lm is not None else model_from_args(args)


def _progress_bar(args: argparse.Namespace, total: int, desc: str) -> Any:
    from infiniretri_integrations.core.progress import progress_bar

    return progress_bar(total, desc, args.progress)


def _emit_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


# --------------------------------------------------------------------------------- commands
def cmd_ask(args: argparse.Namespace, lm: Any) -> int:
    from infiniretri_integrations.core.engine import InfiniRetriEngine
    from infiniretri_integrations.core.types import SourceDocument

    texts = [read_document(path) for path in args.files]
    if not any(t.strip() for t in texts):
        raise UsageError("all input files are empty")
    if not args.question.strip():
        raise UsageError("--question must not be empty")
    docs = [SourceDocument(text=t, id=str(p)) for t, p in zip(texts, args.files, strict=True)]
    overrides = _overrides(args)
    if args.max_new_tokens is not None:
        overrides["max_new_tokens"] = args.max_new_tokens
    try:
        engine = InfiniRetriEngine(_load(args, lm), show_progress=args.progress, **overrides)
        result = engine.retrieve(docs, args.question)
    except ValueError as error:
        raise UsageError(str(error)) from None
    answer = None if args.no_answer else engine.answer_from(result, args.question)
    answer_text = None if answer is None else answer.text
    stats = result.stats
    payload: dict[str, Any] = {
        "question": result.question,
        "answer": answer_text,
        # RetrievedSentence.to_dict (the shape of every output); "document"/"tokens": the old names
        "sentences": [{**s.to_dict(), "document": s.document_id, "tokens": s.token_count} for s in result.sentences],
        "stats": {
            "documents": stats.documents,
            "input_tokens": stats.input_tokens,
            "chunks": stats.chunks,
            "kept_sentences": stats.kept_sentences,
            "kept_tokens": stats.kept_tokens,
            "kept_ratio": round(stats.kept_ratio, 4),
            "scoring_layers": list(stats.scoring_layers),
            "retrieval_seconds": round(stats.seconds, 2),
            "generation_seconds": None if answer is None else round(answer.generation_seconds, 2),
        },
        "model": engine.local_model.name,
        "device": str(engine.local_model.device),
        "dtype": str(engine.local_model.dtype).removeprefix("torch."),
    }
    if args.html:
        from infiniretri_integrations.core.highlight import html_page
        from infiniretri_integrations.core.storage import write_atomic

        page = html_page(result, answer=answer_text, model=engine.local_model.name)
        payload["html"] = str(write_atomic(args.html, page))
    if args.json:
        _emit_json(payload)
        return EXIT_OK
    if answer_text is not None:
        print(f"Answer: {answer_text}\n")
    print(f"Kept sentences ({stats.kept_sentences}, {stats.kept_tokens} of {stats.input_tokens} tokens), best first:")
    best = sorted(payload["sentences"], key=lambda s: -s["score"])
    for s in best[: args.show]:
        print(f"  [{s['score']:.4g}] ({s['document']}) {' '.join(s['text'].split())}")
    if len(best) > args.show:
        print(f"  ... {len(best) - args.show} more (use --show N or --json)")
    st = payload["stats"]
    print(
        f"\nStatistics: {st['documents']} document(s), {st['input_tokens']} tokens in {st['chunks']} chunk(s), "
        f"kept {st['kept_ratio']:.1%}, layer(s) {st['scoring_layers']}, retrieval {st['retrieval_seconds']}s"
        + ("" if answer is None else f", generation {st['generation_seconds']}s")
        + f", model {payload['model']}"
    )
    if args.html:
        print(f"HTML: {args.html}")
    return EXIT_OK


def cmd_niah(args: argparse.Namespace, lm: Any) -> int:
    from infiniretri_integrations.core.engine import InfiniRetriEngine

    if args.essays is not None and not Path(args.essays).is_dir():
        raise UsageError(f"--essays: not a folder: {args.essays}")
    try:
        haystack = niah_eval.load_haystack(args.essays)
        niah_eval.load_results(args.out)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as error:
        raise UsageError(str(error)) from None
    model = _load(args, lm)
    engine = InfiniRetriEngine(model, show_progress=False, **_overrides(args))
    meta = {
        "model": model.name,
        "haystack": str(args.essays) if args.essays else "stdlib docstrings",
        "scoring_layers": list(engine.scoring_layers()),
        "config": {
            "tokens_per_pass": engine.config.effective_tokens_per_pass,
            "chunk_size": engine.config.chunk_size,
            "phrase_window": engine.config.phrase_window,
        },
        "context_window": model.context_window,
        "max_new_tokens": args.max_new_tokens,
    }
    bar = _progress_bar(args, len(args.lengths) * len(args.depths), "NIH cells")

    def on_cell(cell: dict[str, Any] | None) -> None:
        bar.update(1)
        if cell is not None:
            ir = cell["infiniretri"]
            bar.set_postfix_str(
                f"{cell['context_tokens']}@{cell['depth_percent']:g}% R={int(ir['retrieved'])} A={int(ir['answered'])}"
            )

    with bar:
        data = niah_eval.run_grid(
            engine,
            haystack,
            args.out,
            args.lengths,
            args.depths,
            needle=args.needle,
            question=args.question,
            baseline=not args.no_baseline,
            max_new_tokens=args.max_new_tokens,
            meta=meta,
            on_cell=on_cell,
        )
    png = args.png or str(Path(args.out).with_suffix(".png"))
    niah_eval.plot_heatmap(data, png)
    summary = niah_eval.grid_summary(data)
    if args.json:
        _emit_json({"results": str(args.out), "heatmap": png, "summary": summary, "cells": data["cells"]})
    else:
        print(niah_eval.markdown_grid(data))
        print("\ncells: R/A | base A  (R = needle sentence kept, A = answer has the facts, base = full context)")
        print(f"summary: {json.dumps(summary)}")
        print(f"results: {args.out}\nheatmap: {png}")
    return EXIT_OK


def cmd_qa(args: argparse.Namespace, lm: Any) -> int:
    from infiniretri_integrations.evaluation import datasets

    samples: list[Any] = []
    try:
        if args.hotpotqa:
            samples += datasets.load_hotpotqa(args.hotpotqa, limit=args.limit)
        for path in args.leval or []:
            samples += datasets.load_leval(path, limit=args.limit, questions_per_document=args.per_document)
        for path in args.jsonl or []:
            samples += datasets.load_longbench_jsonl(path, limit=args.limit)
    except (FileNotFoundError, ValueError, KeyError, json.JSONDecodeError) as error:
        raise UsageError(str(error).splitlines()[0]) from None
    if not samples:
        raise UsageError("no QA samples: give --hotpotqa, --leval or --jsonl")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(qa_eval.METHODS))
    if unknown:
        raise UsageError(f"--methods: unknown {', '.join(unknown)} (choose from {', '.join(qa_eval.METHODS)})")
    model = _load(args, lm)
    reference_path = model_path(args.model)
    runner = qa_eval.QARunner(
        model,
        methods,
        tokens_per_pass=args.tokens_per_pass,
        chunk_size=args.chunk_size,
        layer=args.layer,
        max_new_tokens=args.max_new_tokens,
        rag_chunks=args.rag_chunks,
        rag_chunk_tokens=args.rag_chunk_tokens,
        reference_model_path=None if reference_path is None else str(reference_path),
        reference_limit=args.reference_limit,
    )
    with _progress_bar(args, len(samples) * len(methods), "QA") as bar:
        data = qa_eval.run_qa(runner, samples, args.out, on_record=lambda _r: bar.update(1))
    table = qa_eval.summarize(data)
    if args.json:
        _emit_json({"results": str(args.out), "summary": table, "skipped_methods": runner.skipped})
    else:
        print(qa_eval.markdown_table(table))
        for name, why in runner.skipped.items():
            print(f"skipped {name}: {why}")
        print(f"results: {args.out}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, lm: Any) -> int:
    from infiniretri_integrations import demo

    return demo.run(args)


# --------------------------------------------------------------------------------- parser
def _add_ask(sub: Any) -> None:
    ask = sub.add_parser("ask", help="answer a question over text files, showing the kept sentences")
    ask.add_argument("files", nargs="+", help="text files (txt, markdown, PDF with pypdf, extracted text; '-' = stdin)")
    ask.add_argument("-q", "--question", required=True)
    ask.add_argument("--html", metavar="OUT.html", help="write the documents with kept sentences highlighted by score")
    ask.add_argument("--no-answer", action="store_true", help="retrieve only")
    ask.add_argument(
        "--max-new-tokens", type=_positive_int, help=f"answer length in tokens (default {DEFAULT_MAX_NEW_TOKENS})"
    )
    ask.add_argument("--show", type=int, default=20, help="best-scoring kept sentences to print (default 20)")
    _add_retrieval_options(ask)
    _add_output_options(ask)
    ask.set_defaults(handler=cmd_ask)


def _add_niah(sub: Any) -> None:
    niah = sub.add_parser("niah", help="needle-in-a-haystack grid (context lengths x depths), resumable, with heatmap")
    niah.add_argument("--essays", metavar="DIR", help="haystack folder of .txt essays (default: stdlib docstrings)")
    niah.add_argument(
        "--lengths",
        type=_int_list,
        default=list(niah_eval.DEFAULT_LENGTHS),
        help="comma-separated, e.g. 8k,16k,32k (default "
        + ",".join(f"{n // 1000}k" for n in niah_eval.DEFAULT_LENGTHS)
        + ")",
    )
    niah.add_argument(
        "--depths",
        type=_depth_list,
        default=list(niah_eval.DEFAULT_DEPTHS),
        help="comma-separated percentages (default " + ",".join(f"{d:g}" for d in niah_eval.DEFAULT_DEPTHS) + ")",
    )
    niah.add_argument("--out", default="niah_results.json", help="results JSON; existing cells are skipped (resume)")
    niah.add_argument("--png", help="heatmap path (default: OUT with .png)")
    niah.add_argument("--needle", default=niah_eval.STANDARD_NEEDLE, help="needle text (default: the sandwich needle)")
    niah.add_argument("--question", default=niah_eval.STANDARD_QUESTION, help="question (default: the standard one)")
    niah.add_argument("--no-baseline", action="store_true", help="skip the full-context baseline")
    niah.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=niah_eval.ANSWER_TOKENS,
        help=f"answer length (default {niah_eval.ANSWER_TOKENS})",
    )
    _add_retrieval_options(niah)
    _add_output_options(niah)
    niah.set_defaults(handler=cmd_niah)


def _add_qa(sub: Any) -> None:
    qa = sub.add_parser("qa", help="long-document QA: InfiniRetri vs full context, vector RAG, BM25, reference package")
    qa.add_argument(
        "--hotpotqa", metavar="JSON", help="HotpotQA distractor sample (camera_ready_nd8_dev_sample100.json)"
    )
    qa.add_argument("--leval", metavar="JSONL", nargs="+", help="L-Eval task files (f1-scored tasks)")
    qa.add_argument(
        "--jsonl", metavar="JSONL", nargs="+", help="LongBench-style records {context, input|question, answers}"
    )
    qa.add_argument("--limit", type=_positive_int, help="questions per dataset")
    qa.add_argument("--per-document", type=_positive_int, default=1, help="L-Eval questions per document (default 1)")
    methods = ",".join(qa_eval.METHODS)
    qa.add_argument("--methods", default=methods, help=f"comma-separated subset of {methods} (default: all)")
    qa.add_argument(
        "--out", default="qa_results.json", help="results JSON; finished (sample, method) pairs are skipped (resume)"
    )
    qa.add_argument(
        "--reference-limit",
        type=_positive_int,
        help="run the (slow) reference package on the first N questions per dataset only",
    )
    qa.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=qa_eval.ANSWER_TOKENS,
        help=f"answer length (default {qa_eval.ANSWER_TOKENS})",
    )
    qa.add_argument(
        "--rag-chunks",
        type=_positive_int,
        default=qa_eval.RAG_CHUNKS,
        help=f"top-k chunks for the RAG and BM25 baselines (default {qa_eval.RAG_CHUNKS})",
    )
    qa.add_argument(
        "--rag-chunk-tokens",
        type=_positive_int,
        default=qa_eval.RAG_CHUNK_TOKENS,
        help=f"chunk size (tokens) for RAG and BM25 (default {qa_eval.RAG_CHUNK_TOKENS})",
    )
    _add_retrieval_options(qa)
    _add_output_options(qa)
    qa.set_defaults(handler=cmd_qa)


def _add_demo(sub: Any) -> None:
    from infiniretri_integrations import demo

    parser = sub.add_parser("demo", help="the main job: a needle in a 32K-token haystack, or your files and question")
    demo.configure_parser(parser)
    parser.set_defaults(handler=cmd_demo)


def _add_evidence(sub: Any) -> None:
    from infiniretri_integrations.evaluation import evidence

    parser = sub.add_parser("evidence", help="reader-free evidence benchmark: kept evidence at equal token budgets")
    evidence.configure_parser(parser)
    parser.set_defaults(handler=lambda args, _lm: evidence.run(args))


COMMANDS: tuple[Callable[[Any], None], ...] = (_add_ask, _add_niah, _add_qa, _add_evidence, _add_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="infiniretri", description="Attention-driven sentence retrieval (InfiniRetri) with a local model."
    )
    add_version_argument(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None, lm: Any = None) -> int:
    """Entry point. ``lm``: a ready :class:`LocalModel` to use instead of ``--model`` (tests, notebooks)."""
    return run_command(build_parser(), argv, lambda args: args.handler(args, lm))


if __name__ == "__main__":
    sys.exit(main())
