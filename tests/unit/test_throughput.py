"""The throughput benchmark's corpus (planted facts) and its side-by-side run, on the tiny model."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.evaluation.throughput import (
    ThroughputRow,
    plant,
    planted_facts,
    run_throughput,
    spread,
    throughput_table,
)


def test_planted_facts_are_distinct_and_each_planted_once_in_order(stdlib_haystack):
    facts = planted_facts(16)
    assert len({f.answer for f in facts}) == 16
    text = plant(stdlib_haystack[:20_000], facts)
    positions = [text.index(f.sentence) for f in facts]
    assert all(text.count(f.sentence) == 1 for f in facts)
    assert positions == sorted(positions)
    assert positions[0] < len(text) * 0.1 and positions[-1] > len(text) * 0.9
    assert [f.question for f in spread(facts, 4)] == [facts[i].question for i in (0, 4, 8, 12)]
    with pytest.raises(ValueError, match="at most 96 planted facts, got 97"):
        planted_facts(97)


def test_run_throughput_measures_every_mode_and_count(tiny_llama, stdlib_haystack):
    engine = InfiniRetriEngine(
        tiny_llama, chunk_size=256, tokens_per_pass=40, max_sentence_tokens=64, show_progress=False
    )
    lines: list[str] = []
    rows = run_throughput(engine, stdlib_haystack[:6000], [1, 3], log=lines.append)
    assert [(r.mode, r.questions) for r in rows] == [
        (m, n) for n in (1, 3) for m in ("sequential", "batched", "shared")
    ]
    by = {(r.mode, r.questions): r for r in rows}
    # batched is exactly sequential: same facts kept
    assert by["batched", 3].facts_kept == by["sequential", 3].facts_kept
    assert all(r.seconds > 0 and r.input_tokens > 1000 for r in rows)
    table = throughput_table(rows)
    assert "| shared | 3 |" in table and "time / sequential" in table
    assert len(lines) == 6
    with pytest.raises(ValueError, match="unknown throughput mode"):
        run_throughput(engine, stdlib_haystack[:2000], [1], modes=["parallel"])


def test_table_ratios():
    rows = [ThroughputRow("sequential", 1, 1000, 2.0, 1), ThroughputRow("sequential", 4, 1000, 8.0, 4),
            ThroughputRow("shared", 4, 1000, 3.0, 4)]  # fmt: skip
    table = throughput_table(rows)
    assert "| shared | 4 | 3.0 | 1333 | 1.50x | 0.38x | 4/4 |" in table
    assert "| sequential | 4 | 8.0 | 500 | 4.00x | 1.00x | 4/4 |" in table


def test_benchmark_cli_throughput_option_is_listed():
    out = subprocess.run(
        [sys.executable, "-m", "infiniretri_integrations.benchmark", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--throughput" in out and "--modes" in out and "--soak" in out and "--variant" in out
