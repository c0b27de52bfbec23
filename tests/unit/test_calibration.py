"""Calibration of the scoring layer: deterministic, cached, corrupt caches rebuilt, bundled default used,
one store and one file format for bundled and cached calibrations."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from infiniretri_integrations.core.attention import question_attention as score_rows
from infiniretri_integrations.core.calibration import (
    CalibrationReport,
    all_layer_rows,
    cache_path,
    calibrate,
    calibrated_layers,
    calibrated_scoring,
    clear_calibration_cache,
    find_calibration,
    known_default_layer,
    load_cached_calibration,
    runner,
    store_calibration,
    synthetic_cases,
)
from infiniretri_integrations.core.calibration import store as calibration_store
from infiniretri_integrations.core.scoring_setup import default_scoring_layer

TINY = {"lengths": (256,), "depths": (20.0, 80.0), "needles": 1, "distractors": 1, "progress": False}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("INFINIRETRI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibration_store, "_IN_MEMORY", {})
    return tmp_path


@pytest.fixture
def counted(monkeypatch):
    """Count calls of calibrate() and make the default settings tiny."""
    calls = []
    original = runner.calibrate

    def fake(lm, **kwargs):
        calls.append(kwargs)
        return original(lm, **{**TINY, **{k: v for k, v in kwargs.items() if k != "progress"}})

    monkeypatch.setattr(runner, "calibrate", fake)
    return calls


def _without_time(report: CalibrationReport) -> dict:
    data = report.to_dict()
    data.pop("seconds")
    return data


def test_synthetic_cases_deterministic(tokenizer):
    a = synthetic_cases(tokenizer, seed=3, lengths=(256,), depths=(0.0, 50.0, 100.0), needles=2)
    b = synthetic_cases(tokenizer, seed=3, lengths=(256,), depths=(0.0, 50.0, 100.0), needles=2)
    c = synthetic_cases(tokenizer, seed=4, lengths=(256,), depths=(0.0, 50.0, 100.0), needles=2)
    assert a == b
    assert a != c
    assert len(a) == 6
    for case in a:
        assert case.needle in case.text
        assert all(d in case.text for d in case.distractors)
        assert case.needle not in case.distractors


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gemma"])
def test_all_layer_rows_match_score_rows(name, request, tokenizer):
    lm = request.getfixturevalue(name)
    ids = torch.tensor([tokenizer("The cat sat on the mat. " * 30 + "Where did the cat sit?")["input_ids"]])
    start = ids.shape[1] - 6
    rows = all_layer_rows(lm, ids, start)
    assert sorted(rows) == list(range(lm.num_layers))
    assert rows[0].shape == (lm.num_heads, 6, ids.shape[1])
    for layer in (0, lm.num_layers - 1):
        torch.testing.assert_close(rows[layer].sum(dim=0), score_rows(lm, ids, start, [layer]))
    torch.testing.assert_close(rows[1][[0, 2]].sum(dim=0), score_rows(lm, ids, start, [1], heads=[0, 2]))


def test_calibration_is_deterministic(tiny_llama, tmp_path):
    first = calibrate(tiny_llama, seed=1, heads=True, **TINY)
    second = calibrate(tiny_llama, seed=1, heads=True, **TINY)
    assert _without_time(first) == _without_time(second)
    assert len(first.layers) == tiny_llama.num_layers
    assert len(first.heads) == tiny_llama.num_layers and len(first.heads[0]) == tiny_llama.num_heads
    layers = first.scoring_layer if isinstance(first.scoring_layer, tuple) else (first.scoring_layer,)
    assert all(0 <= layer < tiny_llama.num_layers for layer in layers)
    assert 0 < first.proposal["cost"] <= 1
    table = first.to_markdown()
    assert "| layer |" in table and "Proposed" in table
    assert CalibrationReport.from_dict(json.loads(json.dumps(first.to_dict()))).to_dict() == first.to_dict()
    pytest.importorskip("matplotlib")
    assert first.plot(tmp_path / "calibration.png").stat().st_size > 1000


def test_cache_used_on_second_call(tiny_llama, cache_dir, counted):
    assert load_cached_calibration(tiny_llama) is None
    first = calibrated_layers(tiny_llama)
    assert len(counted) == 1
    assert cache_path(tiny_llama).is_file()
    assert cache_path(tiny_llama).parent == cache_dir / "calibrations"
    second = calibrated_layers(tiny_llama)
    assert len(counted) == 1, "the second call must reuse the cached calibration"
    assert first == second
    assert clear_calibration_cache(tiny_llama) == 1
    assert not cache_path(tiny_llama).exists()
    calibrated_layers(tiny_llama)
    assert len(counted) == 2


def test_engine_auto_uses_calibration(tiny_llama, cache_dir, counted):
    from infiniretri_integrations import InfiniRetriEngine

    engine = InfiniRetriEngine(tiny_llama, scoring_layer="auto", show_progress=False)
    layers = engine.scoring_layers()
    assert len(counted) == 1
    assert engine.scoring_layers() == layers
    assert len(counted) == 1
    result = engine.retrieve("Alice lives in Paris. Bob lives in Rome. " * 5, "Where does Bob live?")
    assert result.stats.scoring_layers == layers


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_text("{not json", encoding="utf-8"),
        lambda path: path.write_bytes(b"\x00\xff" * 10),
        lambda path: path.write_text(
            path.read_text().replace('"scoring_layer": ', '"scoring_layer": 1', 1), encoding="utf-8"
        ),
        lambda path: path.write_text(
            json.dumps({**json.loads(path.read_text()), "schema_version": 0}), encoding="utf-8"
        ),
        lambda path: path.write_text("[]", encoding="utf-8"),
    ],
    ids=["truncated", "binary", "edited", "old-schema", "not-an-object"],
)
def test_corrupt_cache_is_detected_and_rebuilt(tiny_llama, cache_dir, counted, damage, caplog):
    calibrated_layers(tiny_llama)
    path = cache_path(tiny_llama)
    good = json.loads(path.read_text())
    damage(path)
    with caplog.at_level("WARNING"):
        again = calibrated_layers(tiny_llama)
    assert len(counted) == 2, "a corrupt cache must be rebuilt"
    assert "Discarding cached calibration" in caplog.text
    rebuilt = json.loads(path.read_text())
    assert rebuilt["layers"] == good["layers"] and rebuilt["proposal"] == good["proposal"]
    assert again == CalibrationReport.from_dict(good).scoring_layer


def test_other_settings_rebuild(tiny_llama, cache_dir, counted):
    calibrated_scoring(tiny_llama, seed=0, **{k: v for k, v in TINY.items() if k != "progress"})
    calibrated_scoring(tiny_llama, seed=0, **{k: v for k, v in TINY.items() if k != "progress"})
    assert len(counted) == 1
    calibrated_scoring(tiny_llama, seed=5, **{k: v for k, v in TINY.items() if k != "progress"})
    assert len(counted) == 2


def test_store_is_atomic_and_checksummed(tiny_llama, cache_dir):
    report = calibrate(tiny_llama, **TINY)
    path = store_calibration(tiny_llama, report)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert load_cached_calibration(tiny_llama).to_dict() == report.to_dict()


def test_bundled_calibration_for_default_model(real_lm, cache_dir, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the packaged default must not be calibrated at run time")

    monkeypatch.setattr(runner, "calibrate", fail)
    layer, heads = calibrated_scoring(real_lm)
    assert layer == default_scoring_layer(real_lm) == 18
    assert heads is None
    assert not cache_path(real_lm).exists()


def test_real_model_short_calibration(real_lm):
    report = calibrate(real_lm, lengths=(384,), depths=(50.0,), needles=1, distractors=1, combine=0, progress=False)
    assert len(report.layers) == real_lm.num_layers == 30
    assert report.proposal["hit_rate"] == 1.0
    assert report.settings["cases"] == 1


def test_one_store_one_format(tiny_llama, cache_dir, counted, monkeypatch):
    """A calibration shipped with the package and one in the user cache are the same kind of file,
    found by the same lookup (user cache first)."""
    bundled_dir = cache_dir / "bundled"
    bundled_dir.mkdir()
    monkeypatch.setattr(calibration_store, "BUNDLED_DIR", bundled_dir)
    shipped = calibrate(tiny_llama, seed=2, **TINY)
    shipped.proposal["scoring_layer"] = 0
    calibration_store.bundled_path(tiny_llama).write_text(calibration_store.encode(shipped), encoding="utf-8")
    assert find_calibration(tiny_llama).to_dict() == shipped.to_dict()
    assert known_default_layer(tiny_llama) == 0
    assert calibrated_layers(tiny_llama) == 0
    assert not counted, "a bundled calibration is used as it is"

    mine = calibrate(tiny_llama, seed=3, **TINY)
    mine.proposal["scoring_layer"] = [1, 2]
    path = store_calibration(tiny_llama, mine)
    assert find_calibration(tiny_llama).to_dict() == mine.to_dict()
    assert calibrated_layers(tiny_llama) == (1, 2)
    assert known_default_layer(tiny_llama) == 0, "the shipped default stays the bundled one"
    assert path.read_text(encoding="utf-8") == calibration_store.encode(mine)
    store_calibration(tiny_llama, shipped)
    assert path.read_text(encoding="utf-8") == calibration_store.bundled_path(tiny_llama).read_text(encoding="utf-8")


def test_bundled_file_is_a_store_file(real_lm, cache_dir):
    path = calibration_store.bundled_path(real_lm)
    report = find_calibration(real_lm)
    assert path.is_file() and report is not None
    assert report.scoring_layer == default_scoring_layer(real_lm) == 18
    assert report.notes["nih_retrieval"]["18"]["8K"] == "5/5"
    assert calibration_store.encode(report) == path.read_text(encoding="utf-8").rstrip("\n")
    assert not cache_path(real_lm).exists()


def test_bundled_file_damaged_is_ignored(tiny_llama, cache_dir, monkeypatch, caplog):
    monkeypatch.setattr(calibration_store, "BUNDLED_DIR", cache_dir)
    report = calibrate(tiny_llama, **TINY)
    path = calibration_store.bundled_path(tiny_llama)
    path.write_text(calibration_store.encode(report).replace('"mrr": ', '"mrr": 1', 1), encoding="utf-8")
    with caplog.at_level("WARNING"):
        assert find_calibration(tiny_llama) is None
        assert known_default_layer(tiny_llama) is None
    assert "Ignoring bundled calibration" in caplog.text and "checksum" in caplog.text
    assert path.is_file(), "a bundled file is never deleted"


def test_unwritable_cache_warns_and_keeps_result_in_memory(tiny_llama, tmp_path, monkeypatch, counted, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be", encoding="utf-8")
    monkeypatch.setenv("INFINIRETRI_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(calibration_store, "_IN_MEMORY", {})
    with caplog.at_level("WARNING"):
        layer, heads = calibrated_scoring(tiny_llama)
    assert "Could not write the calibration cache" in caplog.text and "kept in memory" in caplog.text
    assert len(counted) == 1
    assert heads is None and 0 <= max(layer if isinstance(layer, tuple) else (layer,)) < tiny_llama.num_layers
    assert calibrated_scoring(tiny_llama) == (layer, heads)
    assert len(counted) == 1, "the in-memory result is reused for the rest of the process"
    assert clear_calibration_cache(tiny_llama) == 1
    calibrated_scoring(tiny_llama)
    assert len(counted) == 2


def test_calibrated_scoring_returns_heads(tiny_llama, cache_dir, counted):
    report = calibrate(tiny_llama, seed=4, heads=True, **TINY)
    report.proposal.update(scoring_layer=1, scoring_heads=[0, 2])
    store_calibration(tiny_llama, report)
    assert calibrated_scoring(tiny_llama) == (1, (0, 2))
    assert calibrated_layers(tiny_llama) == 1
    assert not counted


def test_command_line_writes_a_store_file(tiny_llama, tiny_llama_folder, tmp_path):
    folder = tiny_llama_folder
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    env = {**os.environ, "INFINIRETRI_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "infiniretri_integrations.calibration", "--model", str(folder), "--out", str(out)]
    options = ["--lengths", "256", "--depths", "50", "--needles", "1", "--distractors", "1", "--store"]
    done = subprocess.run(command + options, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| layer |" in done.stdout and "Proposed" in done.stdout
    (written,) = out.glob("calibration-*.json")
    assert {p.suffix for p in out.glob(f"{written.stem}.*")} >= {".json", ".md"}
    (stored,) = (cache / "calibrations").glob("*.json")
    assert stored.read_text(encoding="utf-8") == written.read_text(encoding="utf-8"), "one file format"
    report = CalibrationReport.from_dict(json.loads(written.read_text(encoding="utf-8")))
    assert report.settings["cases"] == 1 and report.num_layers == tiny_llama.num_layers
    bad = subprocess.run(
        [*command[:4], str(tmp_path / "missing.gguf")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert bad.returncode == 2 and "missing.gguf" in bad.stderr


def test_synthetic_cases_keep_every_distractor_in_dense_text(tokenizer):
    # code-like paragraphs hold ~2 characters per token: a placement by character estimate falls past the cut
    dense = "\n\n".join(f">>> d[{i}]['k{i}']\n[{i}, {i + 1}, {{'a': {i}}}]\n>>> f({i})(x)[::-1]" for i in range(400))
    for seed in range(4):
        for case in synthetic_cases(tokenizer, seed=seed, lengths=(256,), depths=(0.0, 50.0), needles=2, filler=dense):
            assert case.needle in case.text
            assert all(d in case.text for d in case.distractors), (seed, case.depth_percent)
