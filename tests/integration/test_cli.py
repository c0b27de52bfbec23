"""The ``infiniretri`` command as users run it: a subprocess (the installed entry point's module),
the packaged model or a saved tiny model. In-process tests of every subcommand: tests/unit/test_cli.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEXT = (
    "Alice lives in Paris and works as a baker. Bob lives in Rome. The weather in Rome is warm.\n\n"
    "Carol has three cats. Dave plays the violin every evening. The bakery opens at six.\n\n"
    "Erin collects stamps from Norway. Frank repairs old bicycles in his garage on Sundays."
)


def infiniretri(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``infiniretri ARGV`` in a fresh interpreter (offline, one torch thread)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "infiniretri_integrations.cli", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "notes.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_version() -> None:
    from infiniretri_integrations.cli_common import package_version

    run = infiniretri("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"infiniretri-integrations {package_version()}"


def test_demo_help_lists_the_demo_options() -> None:
    run = infiniretri("demo", "--help")
    assert run.returncode == 0, run.stderr
    for option in (
        "--files",
        "--question",
        "--essays",
        "--tokens",
        "--depth",
        "--quiet",
        "--model",
        "--device",
        "--dtype",
    ):
        assert option in run.stdout


@pytest.mark.real_model
def test_demo_runs_on_own_files_with_the_packaged_model(notes: Path) -> None:
    run = infiniretri("demo", "--files", str(notes), "--question", "Where does Bob live?", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "model: SmolLM2-135M-Instruct" in run.stdout
    assert "question: Where does Bob live?" in run.stdout and "answer:" in run.stdout
    kept = [line for line in run.stdout.splitlines() if f"[{notes}:" in line]
    assert kept, run.stdout
    assert "needle retrieved" not in run.stdout  # own files: no needle to look for


def test_device_and_dtype_reach_the_model(notes: Path, tiny_llama_folder: Path) -> None:
    argv = ["ask", str(notes), "-q", "Who has cats?", "--model", str(tiny_llama_folder), "--no-answer", "--json"]
    for dtype in ("float32", "bfloat16"):
        run = infiniretri(*argv, "--device", "cpu", "--dtype", dtype)
        assert run.returncode == 0, run.stderr
        payload = json.loads(run.stdout)
        assert (payload["device"], payload["dtype"]) == ("cpu", dtype)


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--dtype", "float64"], "invalid choice: 'float64'"), (["--device", "tpu9"], "--device")],
)
def test_bad_device_or_dtype_is_one_line_usage_error(notes: Path, options: list[str], message: str) -> None:
    run = infiniretri("ask", str(notes), "-q", "x", *options)
    assert run.returncode == 2
    assert message in run.stderr and run.stderr.count("\n") == 1


def test_unavailable_cuda_names_the_fix(notes: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    run = infiniretri("ask", str(notes), "-q", "x", "--device", "cuda")
    assert run.returncode == 2
    assert "--device cuda" in run.stderr and "--device cpu" in run.stderr and "Traceback" not in run.stderr


def test_show_prints_the_best_sentences_by_score(notes: Path, tiny_llama_folder: Path) -> None:
    argv = [
        "ask",
        str(notes),
        "-q",
        "What does Dave play?",
        "--model",
        str(tiny_llama_folder),
        "--no-answer",
        "--tokens-per-pass",
        "40",
    ]
    everything = json.loads(infiniretri(*argv, "--json").stdout)["sentences"]
    assert len(everything) > 2
    best = sorted(everything, key=lambda s: -s["score"])[:2]
    assert best != everything[:2], "the test needs a case where document order and score order differ"
    run = infiniretri(*argv, "--show", "2")
    assert run.returncode == 0, run.stderr
    shown = [line for line in run.stdout.splitlines() if line.startswith("  [")]
    assert [line.split(") ", 1)[1] for line in shown] == [" ".join(s["text"].split()) for s in best]
    assert f"... {len(everything) - 2} more" in run.stdout


def test_html_highlights_the_kept_sentences(notes: Path, tiny_llama_folder: Path, tmp_path: Path) -> None:
    page = tmp_path / "view.html"
    argv = ["ask", str(notes), "-q", "Who has cats?", "--model", str(tiny_llama_folder), "--no-answer", "--json"]
    run = infiniretri(*argv, "--html", str(page))
    assert run.returncode == 0, run.stderr
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    for sentence in json.loads(run.stdout)["sentences"]:
        assert f">{sentence['text']}</mark>" in html


def test_evidence_subcommand_takes_the_benchmark_options() -> None:
    run = infiniretri("evidence", "--help")
    assert run.returncode == 0, run.stderr
    assert all(option in run.stdout for option in ("--data", "--budgets", "--methods", "--out"))
    missing = infiniretri("evidence")
    assert missing.returncode == 2
    assert "--data" in missing.stderr and missing.stderr.count("\n") == 1
