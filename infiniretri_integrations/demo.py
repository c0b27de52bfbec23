"""The main job: hide the standard NIH needle in a ~32K-token haystack and answer the standard
question with the packaged default model, offline.

Run ``infiniretri demo`` or ``python -m infiniretri_integrations.demo`` (stdlib docstrings as
haystack), or add ``--essays ../shared/data/niah_paulgraham/PaulGrahamEssays``.
Your own files and question replace both: ``--files a.txt b.md --question "..."``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from infiniretri_integrations.cli_common import (
    Parser,
    add_model_arguments,
    add_version_argument,
    model_from_args,
    read_document,
    run_command,
)
from infiniretri_integrations.evaluation.niah import STANDARD_QUESTION

SHOWN_SENTENCES = 10


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The demo's options (shared by ``infiniretri demo`` and ``python -m infiniretri_integrations.demo``)."""
    parser.add_argument("--essays", type=Path, help="folder of Paul Graham essays (the standard NIH haystack)")
    parser.add_argument("--files", nargs="+", help="your own text files (replaces the needle haystack)")
    parser.add_argument("--question", default=None, help=f"question (default: {STANDARD_QUESTION!r})")
    parser.add_argument("--tokens", type=int, default=32_000, help="haystack length in tokens (default 32000)")
    parser.add_argument("--depth", type=float, default=50.0, help="needle depth in percent (default 50)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Retrieve, answer and print the kept sentences and statistics (and whether the needle was found)."""
    from infiniretri_integrations.core.engine import InfiniRetriEngine
    from infiniretri_integrations.core.types import SourceDocument
    from infiniretri_integrations.evaluation.niah import answer_has_facts, build_case, load_haystack, needle_retrieved

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    lm = model_from_args(args)
    print(f"model: {lm.name} on {lm.device} ({lm.dtype}), loaded in {time.perf_counter() - started:.1f}s")
    engine = InfiniRetriEngine(lm, show_progress=False if args.quiet else None)

    needle_text = None
    if args.files:
        documents = [
            SourceDocument(text=read_document(path), id=str(path), metadata={"source": str(path)})
            for path in args.files
        ]
        question = args.question or STANDARD_QUESTION
    else:
        haystack = load_haystack(args.essays)
        case = build_case(haystack, lm.tokenizer, args.tokens, args.depth)
        source = "Paul Graham essays" if args.essays else "Python standard library docstrings"
        print(f"haystack: {source}, {case.context_tokens} tokens, needle at {case.depth_percent:.0f}% depth")
        documents = [SourceDocument(text=case.text, id="haystack")]
        question = args.question or case.question
        needle_text = case.needle

    answer = engine.answer(documents, question)
    stats = answer.retrieval.stats
    print(f"\nquestion: {question}\nanswer:   {answer.text}\n")
    print(f"kept sentences ({stats.kept_sentences}, {stats.kept_tokens} tokens), best first:")
    for sentence in sorted(answer.retrieval.sentences, key=lambda s: -s.score)[:SHOWN_SENTENCES]:
        snippet = textwrap.shorten(" ".join(sentence.text.split()), 110)
        print(f"  {sentence.score:8.3f}  [{sentence.document_id}:{sentence.start}-{sentence.end}] {snippet}")
    if stats.kept_sentences > SHOWN_SENTENCES:
        print(f"  ... {stats.kept_sentences - SHOWN_SENTENCES} more")
    print(
        f"\nstats: {stats.input_tokens} tokens read in {stats.chunks} chunks, kept {stats.kept_tokens} "
        f"({100 * stats.kept_ratio:.1f}%), scoring layer(s) {list(stats.scoring_layers)}, retrieval {stats.seconds:.1f}s "
        f"({stats.seconds_per_1k_tokens:.2f}s per 1K tokens), answer {answer.generation_seconds:.1f}s"
    )
    if needle_text is not None:
        found = needle_retrieved([s.text for s in answer.retrieval.sentences], needle_text)
        print(f"needle retrieved: {found}; answer contains its facts: {answer_has_facts(answer.text)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infiniretri_integrations.demo [options]`` (the same as ``infiniretri demo [options]``)."""
    parser = Parser(prog="python -m infiniretri_integrations.demo", description=__doc__.splitlines()[0])
    add_version_argument(parser)
    configure_parser(parser)
    return run_command(parser, argv, run)


if __name__ == "__main__":
    sys.exit(main())
