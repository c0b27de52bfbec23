"""Calibration of the scoring layer: deterministic, cached, corrupt caches rebuilt, bundled default used."""

from __future__ import annotations

import json

import pytest
import torch

from infiniretri_integrations import calibration
from infiniretri_integrations.calibration import (
    CalibrationReport,
    all_layer_rows,
    cache_path,
    calibrate,
    calibrated_config,
    calibrated_layers,
    clear_calibration_cache,
    load_cached_calibration,
    store_calibration,
    synthetic_cases,
)
from infiniretri_integrations.core.attention import score_rows

TINY = {"lengths": (256,), "depths": (20.0, 80.0), "needles": 1, "distractors": 1, "progress": False}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("INFINIRETRI_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def counted(monkeypatch):
    """Count calls of calibrate() and make the default settings tiny."""
    calls = []
    original = calibration.calibrate

    def fake(lm, **kwargs):
        calls.append(kwargs)
        return original(lm, **{**TINY, **{k: v for k, v in kwargs.items() if k != "progress"}})

    monkeypatch.setattr(calibration, "calibrate", fake)
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
    calibrated_config(tiny_llama, seed=0, **{k: v for k, v in TINY.items() if k != "progress"})
    calibrated_config(tiny_llama, seed=0, **{k: v for k, v in TINY.items() if k != "progress"})
    assert len(counted) == 1
    calibrated_config(tiny_llama, seed=5, **{k: v for k, v in TINY.items() if k != "progress"})
    assert len(counted) == 2


def test_store_is_atomic_and_checksummed(tiny_llama, cache_dir):
    report = calibrate(tiny_llama, **TINY)
    path = store_calibration(tiny_llama, report)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert load_cached_calibration(tiny_llama).to_dict() == report.to_dict()


def test_bundled_calibration_for_default_model(real_lm, cache_dir, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the packaged default must not be calibrated at run time")

    monkeypatch.setattr(calibration, "calibrate", fail)
    layer, heads = calibrated_config(real_lm)
    assert layer == real_lm.default_scoring_layer
    assert heads is None
    assert not cache_path(real_lm).exists()


def test_real_model_short_calibration(real_lm):
    report = calibrate(real_lm, lengths=(384,), depths=(50.0,), needles=1, distractors=1, combine=0, progress=False)
    assert len(report.layers) == real_lm.num_layers == 30
    assert report.proposal["hit_rate"] == 1.0
    assert report.settings["cases"] == 1
