"""Throughput of many questions over the same corpus: one call per question vs ``retrieve_many``.

The corpus is a haystack with one planted fact per question (``The password of vault N is
WORD.`` at evenly spread depths), so every mode's speed comes with whether each question's fact
was kept. Modes, measured side by side on the same text in one run:

* ``sequential``: one :meth:`~InfiniRetriEngine.retrieve` call per question (today's ``batch()``);
* ``batched``: :meth:`~InfiniRetriEngine.retrieve_many` with the passes of 4 questions in one batched
  forward (results identical to ``sequential``);
* ``shared``: ``retrieve_many(share_context=True)``, each pass's context encoded once for all.

Example::

    python -m infiniretri_integrations.benchmark --throughput 1 4 16 --essays ../shared/data/niah_paulgraham/PaulGrahamEssays
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from infiniretri_integrations.core.engine import DEFAULT_BATCH_SIZE, InfiniRetriEngine
from infiniretri_integrations.core.segmentation import sentence_spans
from infiniretri_integrations.core.types import RetrievalResult

MODES = ("sequential", "batched", "shared")

_WORDS = (
    "amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "harbor",
    "indigo", "juniper", "kelp", "lagoon", "mistral", "nectar", "onyx", "pumice",
    "quartz", "russet", "sable", "tundra", "umber", "violet", "willow", "xenon",
)  # fmt: skip


@dataclass(frozen=True)
class Fact:
    sentence: str
    question: str
    answer: str


def planted_facts(count: int) -> list[Fact]:
    """``count`` distinct facts with their questions.

    >>> planted_facts(2)[1]
    Fact(sentence='The password of vault 2 is basalt-12.', question='What is the password of vault 2?', answer='basalt-12')
    """
    if count > len(_WORDS) * 4:
        msg = f"at most {len(_WORDS) * 4} planted facts, got {count}"
        raise ValueError(msg)
    facts = []
    for n in range(1, count + 1):
        answer = f"{_WORDS[(n - 1) % len(_WORDS)]}-{n * 11 - 10}"
        facts.append(Fact(f"The password of vault {n} is {answer}.", f"What is the password of vault {n}?", answer))
    return facts


def plant(haystack: str, facts: Sequence[Fact]) -> str:
    """``haystack`` with each fact inserted at a sentence boundary, at depths ``(i + 0.5) / n``."""
    bounds = [end for _, end in sentence_spans(haystack)]
    if not bounds:
        msg = "the haystack has no sentence to plant facts between"
        raise ValueError(msg)
    pieces, previous = [], 0
    for i, fact in enumerate(facts):
        target = len(haystack) * (i + 0.5) / len(facts)
        at = min(bounds, key=lambda b: abs(b - target))
        at = max(at, previous)
        pieces += [haystack[previous:at], f" {fact.sentence} "]
        previous = at
    pieces.append(haystack[previous:])
    return "".join(pieces)


@dataclass
class ThroughputRow:
    mode: str
    questions: int
    input_tokens: int
    seconds: float
    facts_kept: int

    @property
    def question_tokens_per_second(self) -> float:
        """Questions x input tokens per second."""
        return self.questions * self.input_tokens / self.seconds


def run_mode(
    engine: InfiniRetriEngine, text: str, facts: Sequence[Fact], mode: str, **options: object
) -> ThroughputRow:
    """Time one mode on ``text`` for ``facts``' questions; count the facts each question kept."""
    questions = [f.question for f in facts]
    started = time.perf_counter()
    if mode == "sequential":
        results: list[RetrievalResult] = [engine.retrieve(text, q, **options) for q in questions]  # type: ignore[arg-type]
    elif mode == "batched":
        results = engine.retrieve_many(text, questions, batch_size=DEFAULT_BATCH_SIZE, **options)  # type: ignore[arg-type]
    elif mode == "shared":
        results = engine.retrieve_many(text, questions, share_context=True, **options)  # type: ignore[arg-type]
    else:
        msg = f"mode must be one of {MODES}, got {mode!r}"
        raise ValueError(msg)
    seconds = time.perf_counter() - started
    kept = sum(any(f.answer in s.text for s in r.sentences) for f, r in zip(facts, results, strict=True))
    return ThroughputRow(mode, len(facts), results[0].stats.input_tokens, seconds, kept)


def spread(facts: Sequence[Fact], count: int) -> list[Fact]:
    """``count`` of ``facts`` spread over the text (every ``len/count``-th)."""
    step = len(facts) / count
    return [facts[int(i * step)] for i in range(count)]


def run_throughput(
    engine: InfiniRetriEngine,
    haystack: str,
    counts: Sequence[int],
    modes: Sequence[str] = MODES,
    log: Callable[[str], None] = print,
    **options: object,
) -> list[ThroughputRow]:
    """Every mode at every question count, on ONE text holding ``max(counts)`` planted facts."""
    bad = [m for m in modes if m not in MODES]
    if bad:
        msg = f"unknown throughput mode(s) {bad}; expected some of {MODES}"
        raise ValueError(msg)
    facts = planted_facts(max(counts))
    text = plant(haystack, facts)
    engine.retrieve(text[:4000], facts[0].question)  # warm-up (kernels, allocator)
    rows = []
    for count in counts:
        chosen = spread(facts, count)
        for mode in modes:
            row = run_mode(engine, text, chosen, mode, **options)
            rows.append(row)
            log(
                f"{mode:10s} {count:3d} questions  {row.input_tokens:>7d} tok  {row.seconds:8.1f} s  "
                f"{row.question_tokens_per_second:9.0f} q*tok/s  facts kept {row.facts_kept}/{count}"
            )
    return rows


def throughput_table(rows: Sequence[ThroughputRow]) -> str:
    """Markdown: time, q*tok/s, time relative to one question (same mode) and to ``sequential``."""
    lines = [
        "| mode | questions | seconds | questions x tokens / s | time / one question's | time / sequential | facts kept |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    by = {(r.mode, r.questions): r for r in rows}
    for row in rows:
        one = by.get((row.mode, 1)) or by.get(("sequential", 1))
        sequential = by.get(("sequential", row.questions))
        relative_one = f"{row.seconds / one.seconds:.2f}x" if one else "-"
        relative_sequential = f"{row.seconds / sequential.seconds:.2f}x" if sequential else "-"
        lines.append(
            f"| {row.mode} | {row.questions} | {row.seconds:.1f} | {row.question_tokens_per_second:.0f} | "
            f"{relative_one} | {relative_sequential} | {row.facts_kept}/{row.questions} |"
        )
    return "\n".join(lines)
