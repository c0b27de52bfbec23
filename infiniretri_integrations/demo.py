"""The main job: hide the standard NIH needle in a ~32K-token haystack and answer the standard
question with the packaged default model, offline.

Run ``python -m infiniretri_integrations.demo`` (stdlib docstrings as haystack) or
``python -m infiniretri_integrations.demo --essays ../shared/data/niah_paulgraham/PaulGrahamEssays``.
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

from infiniretri_integrations.core.engine import InfiniRetriEngine
from infiniretri_integrations.core.models import load_model
from infiniretri_integrations.core.types import SourceDocument
from infiniretri_integrations.evaluation.niah import (
    STANDARD_QUESTION,
    answer_has_facts,
    build_case,
    load_haystack,
    needle_retrieved,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infiniretri_integrations.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--essays", type=Path, help="folder of Paul Graham essays (the standard NIH haystack)")
    parser.add_argument("--files", type=Path, nargs="+", help="your own text files (replaces the needle haystack)")
    parser.add_argument("--question", default=None, help=f"question (default: {STANDARD_QUESTION!r})")
    parser.add_argument("--tokens", type=int, default=32_000, help="haystack length in tokens (default 32000)")
    parser.add_argument("--depth", type=float, default=50.0, help="needle depth in percent (default 50)")
    parser.add_argument(
        "--model", default=None, help="model folder or .gguf file (default: packaged SmolLM2-135M-Instruct)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    lm = load_model(args.model)
    print(f"model: {lm.name} on {lm.device} ({lm.dtype}), loaded in {time.perf_counter() - started:.1f}s")
    engine = InfiniRetriEngine(lm, show_progress=not args.quiet)

    needle_text = None
    if args.files:
        documents = [
            SourceDocument(
                text=path.read_text(encoding="utf-8", errors="replace"), id=str(path), metadata={"source": str(path)}
            )
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
    print(f"kept sentences ({stats.kept_sentences}, {stats.kept_tokens} tokens):")
    for sentence in sorted(answer.retrieval.sentences, key=lambda s: -s.score)[:10]:
        snippet = textwrap.shorten(" ".join(sentence.text.split()), 110)
        print(f"  {sentence.score:8.3f}  [{sentence.document_id}:{sentence.start}-{sentence.end}] {snippet}")
    if stats.kept_sentences > 10:
        print(f"  ... {stats.kept_sentences - 10} more")
    print(
        f"\nstats: {stats.input_tokens} tokens read in {stats.chunks} chunks, kept {stats.kept_tokens} "
        f"({100 * stats.kept_ratio:.1f}%), scoring layer(s) {list(stats.scoring_layers)}, retrieval {stats.seconds:.1f}s "
        f"({stats.seconds_per_1k_tokens:.2f}s per 1K tokens), answer {answer.generation_seconds:.1f}s"
    )
    if needle_text is not None:
        found = needle_retrieved([s.text for s in answer.retrieval.sentences], needle_text)
        print(f"needle retrieved: {found}; answer contains its facts: {answer_has_facts(answer.text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
