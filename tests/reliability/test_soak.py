"""Issue #14 soak check: mixed sync/async/cancelled/streamed calls on one engine from several
threads end with no error, the model lock free and no generation thread left (tiny model)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from infiniretri_integrations import InfiniRetriEngine
from infiniretri_integrations.evaluation import soak
from infiniretri_integrations.evaluation.soak import KINDS, SoakReport, main, rss_mb, run_soak, soak_documents

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCUMENTS = soak_documents(0, sizes=(20, 80))


@pytest.fixture
def engine(tiny_llama) -> InfiniRetriEngine:
    return InfiniRetriEngine(tiny_llama, tokens_per_pass=16, chunk_size=128, show_progress=False)


def test_twelve_mixed_calls_on_four_threads(engine, tiny_llama):
    report = run_soak(engine, calls=12, threads=4, seed=0, documents=DOCUMENTS, max_new_tokens=8)
    assert report.errors == {}, report.error_examples
    assert report.ok
    assert report.calls == 12 and sum(report.kinds.values()) == 12
    assert set(report.kinds) <= set(KINDS) and len(report.kinds) >= 3
    assert report.lock_free and report.generation_threads_left == 0
    assert tiny_llama.lock.acquire(blocking=False)
    tiny_llama.lock.release()
    assert not [t for t in threading.enumerate() if t.name == "infiniretri-generate"]
    assert 0 < report.rss_start_mb <= report.rss_peak_mb
    assert report.growth_mb == pytest.approx(report.rss_end_mb - report.rss_start_mb, abs=0.11)
    assert "errors: none" in report.summary()


def test_errors_are_counted_by_type(engine, monkeypatch):
    """The soak reports failures instead of hiding them (so the test above can fail)."""
    calls = {"n": 0}
    real = engine.retrieve

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            msg = "flaky retrieval"
            raise RuntimeError(msg)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "retrieve", flaky)
    report = run_soak(engine, calls=12, threads=2, seed=1, documents=DOCUMENTS, max_new_tokens=4)
    assert report.errors.get("RuntimeError", 0) > 0
    assert not report.ok
    assert any("flaky retrieval" in example for example in report.error_examples)


def test_a_different_result_is_a_mismatch(engine, monkeypatch):
    from infiniretri_integrations.core.types import RetrievalResult

    real = engine.retrieve
    calls = {"n": 0}

    def changing(*args, **kwargs):
        calls["n"] += 1
        result = real(*args, **kwargs)
        if calls["n"] % 2:
            return result
        return RetrievalResult(question=result.question, sentences=result.sentences[1:], stats=result.stats)

    monkeypatch.setattr(engine, "retrieve", changing)
    documents = [(DOCUMENTS[0][0], DOCUMENTS[0][1][:1])]
    report = run_soak(engine, calls=6, threads=1, seed=0, documents=documents, max_new_tokens=4)
    assert report.errors.get("ResultMismatch", 0) > 0


def test_rss_is_read():
    value, source = rss_mb()
    assert value > 10
    assert source in ("/proc/self/status", "getrusage")


def test_bad_arguments_are_named(engine):
    with pytest.raises(ValueError, match="calls must be a positive integer, got 0"):
        run_soak(engine, calls=0)
    with pytest.raises(ValueError, match="threads must be a positive integer, got -1"):
        run_soak(engine, threads=-1)


def test_command_line_writes_the_report(tiny_llama_folder, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(soak, "soak_documents", lambda seed=0, sizes=(): DOCUMENTS)
    out = tmp_path / "soak.json"
    code = main(["--model", str(tiny_llama_folder), "--calls", "4", "--threads", "2", "--json", str(out)])
    assert code == 0, capsys.readouterr()
    data = json.loads(out.read_text())
    extra = {"command", "chunk_size", "torch_threads", "cpu_count", "torch"}
    report = SoakReport(**{k: v for k, v in data.items() if k not in extra})
    assert report.calls == 4 and report.errors == {}
    assert "--calls 4" in data["command"] and data["chunk_size"] == 1024
    assert "soak: 4 calls" in capsys.readouterr().out
