from __future__ import annotations

import pytest
import torch

from infiniretri_integrations.core import models, storage
from infiniretri_integrations.core.models import LocalModel, resolve_device, resolve_dtype


def test_device_never_defaults_to_missing_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device().type == "cpu"
    assert resolve_device("cpu").type == "cpu"


def test_dtype_follows_cpu_support(monkeypatch):
    monkeypatch.delenv(models.CPU_BF16_ENV, raising=False)  # INFINIRETRI_TEST_DTYPE sets it for the suite
    cpu = torch.device("cpu")
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: True)
    assert resolve_dtype(cpu) is torch.bfloat16
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: False)
    assert resolve_dtype(cpu) is torch.float32
    assert resolve_dtype(cpu, "float16") is torch.float16
    with pytest.raises(ValueError, match=r"got 'fp33'"):
        resolve_dtype(cpu, "fp33")


@pytest.mark.parametrize("flags", [True, False])
def test_cpu_bf16_env_overrides_the_cpu_flags(monkeypatch, flags):
    cpu = torch.device("cpu")
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: flags)
    monkeypatch.setenv(models.CPU_BF16_ENV, "0")
    assert resolve_dtype(cpu) is torch.float32
    assert resolve_dtype(cpu, "bfloat16") is torch.bfloat16, "an explicit dtype wins over the override"
    monkeypatch.setenv(models.CPU_BF16_ENV, "1")
    assert resolve_dtype(cpu) is torch.bfloat16
    monkeypatch.setenv(models.CPU_BF16_ENV, " Auto ")
    assert resolve_dtype(cpu) is (torch.bfloat16 if flags else torch.float32)
    monkeypatch.delenv(models.CPU_BF16_ENV)
    assert resolve_dtype(cpu) is (torch.bfloat16 if flags else torch.float32)


def test_cpu_bf16_env_bad_value_is_named(monkeypatch):
    monkeypatch.setenv(models.CPU_BF16_ENV, "maybe")
    with pytest.raises(ValueError, match=r"INFINIRETRI_CPU_BF16='maybe'.*expected 0 \(float32\), 1 \(bfloat16\)"):
        resolve_dtype(torch.device("cpu"))
    assert resolve_dtype(torch.device("cpu"), torch.float32) is torch.float32, "explicit dtype never reads it"


@pytest.mark.parametrize(("test_dtype", "expected"), [("float32", "0"), ("bfloat16", "1")])
def test_test_dtype_sets_the_library_override_for_subprocesses(monkeypatch, test_dtype, expected):
    """tests/conftest.py turns INFINIRETRI_TEST_DTYPE into INFINIRETRI_CPU_BF16, which CLI subprocesses inherit."""
    import os
    import subprocess
    import sys

    from tests.conftest import TEST_DTYPE_ENV, _apply_test_dtype

    monkeypatch.setenv(TEST_DTYPE_ENV, test_dtype)
    monkeypatch.setenv(models.CPU_BF16_ENV, "auto")  # monkeypatch restores it after _apply_test_dtype's write
    assert _apply_test_dtype() == test_dtype
    assert os.environ[models.CPU_BF16_ENV] == expected
    code = "import torch; from infiniretri_integrations.core import models; print(models.resolve_dtype(torch.device('cpu')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == f"torch.{test_dtype}"
    monkeypatch.setenv(TEST_DTYPE_ENV, "fp32")
    with pytest.raises(ValueError, match=r"INFINIRETRI_TEST_DTYPE='fp32'.*\['bfloat16', 'float32'\]"):
        _apply_test_dtype()


def test_cuda_dtype(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype(torch.device("cuda")) is torch.float16


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("INFINIRETRI_CACHE_DIR", str(tmp_path))
    assert models.cache_dir() == tmp_path


def test_local_model_rejects_non_models(tokenizer):
    with pytest.raises(TypeError, match="model must be a transformers causal LM"):
        LocalModel(model=object(), tokenizer=tokenizer)  # type: ignore[arg-type]


def test_missing_gguf_file_is_named(tmp_path):
    missing = tmp_path / "nothing.gguf"
    with pytest.raises(FileNotFoundError, match=r"nothing\.gguf"):
        models.load_model(missing)


def test_lock_is_shared_per_model(tiny_llama, tokenizer):
    again = LocalModel(model=tiny_llama.model, tokenizer=tokenizer)
    assert again.lock is tiny_llama.lock
    assert again.fingerprint() == tiny_llama.fingerprint() or again.name != tiny_llama.name


def test_load_model_from_saved_folder(tiny_llama, tmp_path):
    tiny_llama.model.save_pretrained(tmp_path)
    tiny_llama.tokenizer.save_pretrained(tmp_path)
    loaded = models.load_model(tmp_path, dtype="float32")
    assert loaded.num_layers == tiny_llama.num_layers
    assert loaded.model.config._attn_implementation == "sdpa"


def test_storage_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("INFINIRETRI_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert storage.cache_dir() == tmp_path / "infiniretri"
    assert models.cache_dir is storage.cache_dir


def test_atomic_write_replaces_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "deep" / "results.json"
    storage.write_atomic(target, "old")
    with pytest.raises(RuntimeError, match="disk full"), storage.staged_path(target) as staging:
        staging.write_text("half of the new", encoding="utf-8")
        raise RuntimeError("disk full")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in target.parent.iterdir()] == ["results.json"], "no staging file left behind"
    storage.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"


def test_staged_folder_replaces_an_existing_one(tmp_path):
    target = tmp_path / "converted"
    target.mkdir()
    (target / "stale.bin").write_bytes(b"x")
    with storage.staged_path(target) as staging:
        staging.mkdir()
        (staging / "config.json").write_text("{}", encoding="utf-8")
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted"]


def test_unwritable_storage_raises_oserror(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("in the way", encoding="utf-8")
    with pytest.raises(OSError):
        storage.write_atomic(blocker / "sub" / "a.json", "{}")


def test_gguf_cache_is_written_through_the_atomic_writer(tiny_llama, tmp_path):
    target = tmp_path / "models" / "tiny-0123"
    models._store_converted(tiny_llama.model, tiny_llama.tokenizer, target)
    assert (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["tiny-0123"], "no staging folder left behind"
