"""Cascade benchmark (#22): long inputs read whole vs through the cascade (``candidate_tokens``).

Per length, on essays with :data:`NEEDLE_COUNT` planted multi-key needles (RULER's multikey
style: several "special magic number" sentences with different keys, one question asking for
all of them, retrieved once; each key's value then asked from the kept sentences), in one run on
one model:

* ``cascade``: ``candidate_tokens`` (default 16,384): seconds, seconds per 1K input tokens, the
  share of each stage (segment, lexical, candidates, passes), tokens the LM read, peak RSS,
  needles kept and answered (values in the generated answer);
* ``full``: the whole input read (today's default), only up to ``--full-up-to`` tokens (a 128K
  full read takes ~15 min on 2 CPU cores), with the ratio full / cascade.

``--lexgap`` instead measures, on the calibration half of the lexical-gap needles
(:mod:`~infiniretri_integrations.evaluation.lexgap`, questions sharing no content word with their
needle), how often the cascade's candidate set contains the needle: the first stage is lexical,
so it cannot be expected to find these beyond chance.

Example::

    python -m infiniretri_integrations.benchmark_cascade --essays ../shared/data/niah_paulgraham/PaulGrahamEssays \\
        --lengths 32K,256K,1M --candidate-tokens 16384 --full-up-to 32K
    python -m infiniretri_integrations.benchmark_cascade --essays ... --lexgap
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from infiniretri_integrations.benchmark import _measured
from infiniretri_integrations.cli_common import (
    Parser,
    UsageError,
    add_model_arguments,
    add_version_argument,
    model_from_args,
    run_command,
)
from infiniretri_integrations.core.cascade import candidate_sentences
from infiniretri_integrations.core.engine import InfiniRetriEngine
from infiniretri_integrations.core.lexical import bm25_passage_scores
from infiniretri_integrations.core.models import LocalModel
from infiniretri_integrations.core.segmentation import segment_documents
from infiniretri_integrations.core.storage import write_atomic
from infiniretri_integrations.evaluation.niah import load_haystack

DEFAULT_JSON = Path("docs/results/benchmark_cascade.json")
DEFAULT_LEXGAP_JSON = Path("docs/results/benchmark_cascade_lexgap.json")
NEEDLE_COUNT = 4
KEYS = ("amber-falcon", "silent-harbor", "copper-meadow", "violet-engine", "frozen-lantern", "hidden-orchard")
NEEDLE_TEMPLATE = " One of the special magic numbers for {key} is: {value}."
DEPTHS = (0.12, 0.38, 0.63, 0.88)
ANSWER_TOKENS = 64


@dataclass
class Needles:
    """The planted needles of one case: keys, values, sentences, and the question for all of them."""

    keys: tuple[str, ...]
    values: tuple[str, ...]

    @property
    def sentences(self) -> list[str]:
        return [NEEDLE_TEMPLATE.format(key=k, value=v) for k, v in zip(self.keys, self.values, strict=True)]

    @property
    def question(self) -> str:
        listed = ", ".join(self.keys[:-1]) + f" and {self.keys[-1]}" if len(self.keys) > 1 else self.keys[0]
        return f"What are the special magic numbers for {listed}?"

    @property
    def key_questions(self) -> list[str]:
        """One question per key (how each needle's answer is asked, from the kept sentences)."""
        return [f"What is the special magic number for {key}?" for key in self.keys]


def make_needles(count: int = NEEDLE_COUNT, seed: int = 0) -> Needles:
    """``count`` keys with seeded 7-digit values.

    Example:
        >>> needles = make_needles(2)
        >>> needles.question
        'What are the special magic numbers for amber-falcon and silent-harbor?'
    """
    if not 1 <= count <= len(KEYS):
        msg = f"needle count must be in 1..{len(KEYS)}, got {count!r}"
        raise ValueError(msg)
    rng = random.Random(f"cascade:{seed}")
    return Needles(KEYS[:count], tuple(str(rng.randrange(1_000_000, 10_000_000)) for _ in range(count)))


def parse_length(text: str) -> int:
    """``"256K"`` -> 256,000 tokens, ``"1M"`` -> 1,000,000, ``"32000"`` -> 32,000.

    Example:
        >>> [parse_length(x) for x in ("32K", "1M", "1.5M", "8000")]
        [32000, 1000000, 1500000, 8000]
    """
    cleaned = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(cleaned[-1:], 1)
    number = cleaned[:-1] if scale > 1 else cleaned
    try:
        value = int(float(number) * scale)
    except ValueError:
        value = 0
    if value <= 0:
        msg = f"a length must be a positive token count such as 32000, 256K or 1M, got {text!r}"
        raise ValueError(msg)
    return value


def build_text(haystack: str, tokenizer: Any, tokens: int, needles: Needles) -> str:
    """The haystack (repeated as needed) cut to about ``tokens`` tokens at a sentence end, with
    the needles inserted after the sentence ends nearest :data:`DEPTHS` (spread evenly for
    other counts)."""
    sentences = needles.sentences
    room = tokens - sum(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sentences)
    chars = room * 5
    text = haystack
    while len(text) < chars:
        text += "\n\n" + haystack
    text = text[:chars]
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    while len(encoded["input_ids"]) < room:
        text += "\n\n" + haystack[: chars // 4]
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    body = text[: encoded["offset_mapping"][room - 1][1]]
    body = body[: body.rfind(". ") + 1] if ". " in body else body
    depths = DEPTHS if len(sentences) == len(DEPTHS) else [(i + 0.5) / len(sentences) for i in range(len(sentences))]
    cuts = []
    for depth in depths:
        at = body.find(". ", int(depth * len(body)))
        cuts.append(len(body) if at < 0 else at + 1)
    pieces, cursor = [], 0
    for cut, sentence in sorted(zip(cuts, sentences, strict=True)):
        pieces.extend([body[cursor:cut], sentence])
        cursor = cut
    pieces.append(body[cursor:])
    return "".join(pieces)


@dataclass
class Row:
    """One measured run."""

    mode: str
    target_tokens: int
    input_tokens: int
    tokens_read: int
    seconds: float
    stage_seconds: dict[str, float]
    peak_rss_mb: float | None
    needles: int
    needles_kept: int
    needles_answered: int
    chunks: int
    answers: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_per_1k(self) -> float:
        return 1000.0 * self.seconds / max(1, self.input_tokens)

    def stage_shares(self) -> dict[str, float]:
        return {name: value / self.seconds for name, value in self.stage_seconds.items()} if self.seconds else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "seconds_per_1k": round(self.seconds_per_1k, 4),
            "stage_shares": {k: round(v, 4) for k, v in self.stage_shares().items()},
        }


def measure(
    lm: LocalModel, text: str, needles: Needles, mode: str, target: int, options: dict[str, Any], answer: bool
) -> Row:
    """One retrieval for all keys (``options`` per call), its needles kept and (``answer``)
    answered: each key's own question answered from the kept sentences holds its value."""
    engine = InfiniRetriEngine(lm, show_progress=False)
    with _measured(lm.device) as record:
        result = engine.retrieve([text], needles.question, **options)
    kept_text = " ".join(s.text for s in result.sentences)
    kept = sum(value in kept_text for value in needles.values)
    replies = (
        [engine.answer_from(result, question, max_new_tokens=ANSWER_TOKENS).text for question in needles.key_questions]
        if answer
        else []
    )
    stats = result.stats
    return Row(
        mode=mode,
        target_tokens=target,
        input_tokens=stats.input_tokens,
        tokens_read=stats.tokens_read,
        seconds=float(record["seconds"] or 0.0),
        stage_seconds={k: round(v, 3) for k, v in stats.stage_seconds.items()},
        peak_rss_mb=record["peak_memory_mb"],
        needles=len(needles.values),
        needles_kept=kept,
        needles_answered=sum(value in reply for value, reply in zip(needles.values, replies, strict=False)),
        chunks=stats.chunks,
        answers=replies,
        extra={"options": options, "kept_tokens": stats.kept_tokens},
    )


def format_row(row: Row, full: Row | None) -> str:
    shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in row.stage_shares().items())
    ratio = f", full/cascade {full.seconds / row.seconds:.1f}x" if full is not None and row.seconds else ""
    rss = f"{row.peak_rss_mb / 1024:.2f} GB" if row.peak_rss_mb is not None else "n/a"
    return (
        f"{row.target_tokens // 1000:>5}K {row.mode:<8} {row.seconds:8.1f}s {row.seconds_per_1k:6.3f} s/1K "
        f"read {row.tokens_read:>8} of {row.input_tokens:>8} in {row.chunks} passes; needles kept "
        f"{row.needles_kept}/{row.needles}, answered {row.needles_answered}/{row.needles}; RSS {rss}; [{shares}]{ratio}"
    )


def run_lengths(
    lm: LocalModel,
    haystack: str,
    lengths: Sequence[int],
    candidate_tokens: int,
    full_up_to: int,
    needles: Needles,
    chunk_sizes: Sequence[int | None],
    answer: bool,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Cascade (once per chunk size, ``None``: the default) and, up to ``full_up_to`` tokens, the
    full read, at every length."""
    warm = build_text(haystack, lm.tokenizer, 3000, needles)
    measure(lm, warm, needles, "warm-up", 3000, {"candidate_tokens": 1024}, answer=False)
    rows: list[Row] = []
    for length in lengths:
        text = build_text(haystack, lm.tokenizer, length, needles)
        cascades = []
        for chunk_size in chunk_sizes:
            options: dict[str, Any] = {"candidate_tokens": candidate_tokens}
            mode = "cascade"
            if chunk_size is not None:
                options["chunk_size"] = chunk_size
                mode = f"cascade[chunk={chunk_size}]"
            cascades.append(measure(lm, text, needles, mode, length, options, answer))
        full = (
            measure(lm, text, needles, "full", length, {"candidate_tokens": None}, answer)
            if length <= full_up_to
            else None
        )
        for cascade in cascades:
            log(format_row(cascade, full))
        if full is not None:
            log(format_row(full, None))
        rows.extend([*cascades] if full is None else [*cascades, full])
    return rows


def lexgap_recall(
    lm: LocalModel,
    essays: str | Path,
    length: int,
    candidate_tokens: int,
    coverage: float,
    limit: int | None,
    split: str = "calibration",
) -> dict[str, Any]:
    """On one half of the lexical-gap pairs: how often the candidate set holds the
    needle, with the engine's first stage as it is (BM25 fused with the input-embedding
    similarity) and with BM25 alone (``similarity=None``), against what a random set of the same
    size would hold (its share of the tokens)."""
    from infiniretri_integrations.core.config import RetrievalConfig
    from infiniretri_integrations.core.engine import first_stage_scores
    from infiniretri_integrations.evaluation.lexgap import build_samples, span_kept

    samples = build_samples(essays, lm.tokenizer, [length], split=split, limit=limit)
    held = {"bm25+embeddings": 0, "bm25": 0}
    shares = []
    for sample in samples:
        (sentences,) = segment_documents([sample.text], lm.tokenizer, 256)
        lexical = [bm25_passage_scores(sentences, sample.question)]
        start, end, _ = sample.supporting[0]
        for name, similarity in (("bm25+embeddings", "embeddings"), ("bm25", None)):
            cfg = RetrievalConfig(similarity=similarity, candidate_tokens=candidate_tokens)
            first, _ = first_stage_scores(lm, cfg, sentences, [sample.question], lexical)
            assert first is not None  # BM25 scores were given
            (scores,) = first
            chosen = candidate_sentences(sentences, scores, candidate_tokens, coverage)
            held[name] += span_kept((start, end), [(s.start, s.end) for s in chosen])
        shares.append(sum(s.token_count for s in chosen) / max(1, sum(s.token_count for s in sentences)))
    return {
        "samples": len(samples),
        "split": split,
        "length": length,
        "candidate_tokens": candidate_tokens,
        "candidate_coverage": coverage,
        "needle_in_candidates": held,
        "random_expectation": round(sum(shares), 1),
    }


def _meta(lm: LocalModel) -> dict[str, Any]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return {
        "model": getattr(lm, "name", None),
        "dtype": str(lm.dtype),
        "device": str(lm.device),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": "avx512_bf16" in flags,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m infiniretri_integrations.benchmark_cascade", description=__doc__.split("\n")[0])
    add_version_argument(parser)
    add_model_arguments(parser)
    parser.add_argument("--essays", default=None, help="Paul Graham essays folder (default: stdlib docstrings)")
    parser.add_argument("--lengths", default="256K,1M", help="comma-separated input lengths, e.g. 32K,256K,1M")
    parser.add_argument("--candidate-tokens", type=int, default=16384, help="the cascade's candidate_tokens")
    parser.add_argument(
        "--chunk-sizes",
        default="default",
        help="comma-separated chunk_size values for the cascade's passes, each run side by side ('default': unset)",
    )
    parser.add_argument("--full-up-to", default="32K", help="also read inputs up to this length whole")
    parser.add_argument("--needles", type=int, default=NEEDLE_COUNT, help="multi-key needles planted")
    parser.add_argument("--no-answer", action="store_true", help="skip generating answers")
    parser.add_argument("--json", type=Path, default=None, help=f"results file (default: {DEFAULT_JSON})")
    parser.add_argument("--lexgap", action="store_true", help="lexical-gap candidate recall instead")
    parser.add_argument("--lexgap-length", type=int, default=16000)
    parser.add_argument("--lexgap-limit", type=int, default=None, help="first N pairs of the half only")
    parser.add_argument("--lexgap-split", choices=("calibration", "test"), default="calibration", help="which half")
    parser.add_argument("--coverage", type=float, default=0.25, help="candidate_coverage (lexgap mode)")
    return parser


def _handle(args: argparse.Namespace) -> int:
    try:
        lengths = [parse_length(x) for x in args.lengths.split(",") if x.strip()]
        full_up_to = parse_length(args.full_up_to)
        needles = make_needles(args.needles)
        chunk_sizes = [None if x.strip() == "default" else parse_length(x) for x in args.chunk_sizes.split(",")]
    except ValueError as error:
        raise UsageError(str(error)) from error
    if args.candidate_tokens <= 0:
        msg = f"--candidate-tokens must be a positive integer, got {args.candidate_tokens!r}"
        raise UsageError(msg)
    lm = model_from_args(args)
    if args.lexgap:
        if args.essays is None:
            msg = "--lexgap needs --essays (the Paul Graham essays folder)"
            raise UsageError(msg)
        candidate_tokens = args.candidate_tokens if args.candidate_tokens != 16384 else 4096
        summary = lexgap_recall(
            lm, args.essays, args.lexgap_length, candidate_tokens, args.coverage, args.lexgap_limit, args.lexgap_split
        )
        print(
            f"lexical-gap {summary['split']} half, {summary['length']} tokens, candidate_tokens {candidate_tokens}: "
            "needle in the candidate set "
            + ", ".join(f"{name} {held}/{summary['samples']}" for name, held in summary["needle_in_candidates"].items())
            + f" (a random set of the same size: {summary['random_expectation']})"
        )
        write_atomic(args.json or DEFAULT_LEXGAP_JSON, json.dumps({"meta": _meta(lm), **summary}, indent=2) + "\n")
        return 0
    haystack = load_haystack(args.essays)
    rows = run_lengths(
        lm, haystack, lengths, args.candidate_tokens, full_up_to, needles, chunk_sizes, not args.no_answer
    )
    payload = {
        "meta": {**_meta(lm), "candidate_tokens": args.candidate_tokens, "chunk_sizes": chunk_sizes},
        "question": needles.question,
        "values": list(needles.values),
        "rows": [row.to_dict() for row in rows],
    }
    write_atomic(args.json or DEFAULT_JSON, json.dumps(payload, indent=2) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv, _handle)


if __name__ == "__main__":
    raise SystemExit(main())
