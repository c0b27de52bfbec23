"""Issue #14 item 1: concurrent first use of an engine built from a path loads the model once and
never poisons the process (tiny model saved as a folder)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from infiniretri_integrations import InfiniRetriEngine, load_model
from infiniretri_integrations.core import models as models_module

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXT = "The vault code is 4812. The garden has roses. Trains leave at noon. " * 20


@pytest.fixture
def counted_loads(monkeypatch):
    """Count model loads; each takes a little while, as a real one does, so that threads overlap."""
    calls: list[object] = []
    real = models_module.as_local_model

    def slow_load(*args, **kwargs):
        calls.append(args[0])
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(models_module, "as_local_model", slow_load)
    return calls


def test_threads_on_a_fresh_engine_from_a_folder_load_once_and_agree(tiny_llama_folder, counted_loads):
    engine = InfiniRetriEngine(str(tiny_llama_folder), device="cpu", dtype="float32", tokens_per_pass=8)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: engine.retrieve(TEXT, "What is the vault code?"), range(4)))
    assert len(counted_loads) == 1, f"the model was loaded {len(counted_loads)} times"
    assert len({tuple(s.text for s in r.sentences) for r in results}) == 1
    # the process is not poisoned: loading again works
    assert load_model(tiny_llama_folder, device="cpu", dtype="float32").num_layers == engine.local_model.num_layers


def test_engines_sharing_a_folder_load_concurrently(tiny_llama_folder):
    engines = [
        InfiniRetriEngine(str(tiny_llama_folder), device="cpu", dtype="float32", tokens_per_pass=8) for _ in range(3)
    ]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda e: e.retrieve(TEXT, "When do trains leave?"), engines))
    assert len({tuple(s.text for s in r.sentences) for r in results}) == 1
