"""The ``infiniretri`` command in-process on a tiny random model: exit codes, --json output, resumable NIH
grid, QA run. The command as users run it (a subprocess, the real model) is in tests/integration/test_cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infiniretri_integrations import cli

TEXT = (
    "Alice lives in Paris and works as a baker. Bob lives in Rome. The weather in Rome is warm.\n\n"
    "Carol has three cats. Dave plays the violin every evening. The bakery opens at six."
)


def _run(capsys, argv, lm=None):
    code = cli.main(argv, lm=lm)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_ask_json_and_html(capsys, tiny_llama, doc: Path, tmp_path: Path) -> None:
    html = tmp_path / "out.html"
    code, out, err = _run(
        capsys,
        [
            "ask",
            str(doc),
            "-q",
            "Where does Bob live?",
            "--json",
            "--max-new-tokens",
            "3",
            "--tokens-per-pass",
            "5",
            "--html",
            str(html),
        ],
        tiny_llama,
    )
    assert code == 0, err
    payload = json.loads(out)
    assert payload["question"] == "Where does Bob live?"
    assert isinstance(payload["answer"], str)
    assert payload["sentences"] and all(s["document"] == str(doc) for s in payload["sentences"])
    assert all(s["text"] in TEXT for s in payload["sentences"])
    sentence_keys = {"text", "score", "document_index", "document_id", "sentence_index", "start", "end"}
    for s in payload["sentences"]:  # RetrievedSentence.to_dict, plus the old names "document" and "tokens"
        assert set(s) == sentence_keys | {"token_count", "metadata", "document", "tokens"}
        assert TEXT[s["start"] : s["end"]] == s["text"] == s["text"].strip()  # the stripped text's own span
        assert s["document_id"] == s["document"] and s["document_index"] == 0
        assert s["tokens"] == s["token_count"] > 0 and s["metadata"] == {}
    indices = [s["sentence_index"] for s in payload["sentences"]]
    assert indices == sorted(set(indices))  # document order, each sentence once
    assert payload["stats"]["input_tokens"] > 0 and payload["stats"]["kept_tokens"] <= payload["stats"]["input_tokens"]
    page = html.read_text(encoding="utf-8")
    assert "<mark" in page and "Where does Bob live?" in page


def test_ask_text_output_no_answer(capsys, tiny_llama, doc: Path) -> None:
    code, out, _ = _run(capsys, ["ask", str(doc), "-q", "Who has cats?", "--no-answer", "--no-progress"], tiny_llama)
    assert code == 0
    assert "Kept sentences" in out and "Statistics:" in out and "Answer:" not in out


def test_ask_with_saved_model_path(capsys, tiny_llama_folder: Path, doc: Path) -> None:
    code, out, err = _run(
        capsys,
        ["ask", str(doc), "-q", "Where does Bob live?", "--model", str(tiny_llama_folder), "--json", "--no-answer"],
    )
    assert code == 0, err
    assert json.loads(out)["answer"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["ask", "missing-file.txt", "-q", "x"], "not found"),
        (["ask", "{doc}"], "--question"),
        (["ask", "{doc}", "-q", "   "], "empty"),
        (["ask", "{doc}", "-q", "x", "--model", "/no/such/model.gguf"], "--model"),
        (["ask", "{doc}", "-q", "x", "--top-k", "0"], "positive"),
        (["ask", "{doc}", "-q", "x", "--candidate-tokens", "all"], "'auto' or 'none', got 'all'"),
        (["ask", "{doc}", "-q", "x", "--probe", "/no/such/probe.json"], "probe file '/no/such/probe.json'"),
        (["niah", "--lengths", "8k,abc"], "token"),
        (["niah", "--depths", "150"], "0..100"),
        (["niah", "--essays", "/no/such/dir"], "--essays"),
        (["qa"], "no QA samples"),
        (["qa", "--jsonl", "/no/such.jsonl"], "not found"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, tiny_llama, doc: Path, argv, message) -> None:
    argv = [a.replace("{doc}", str(doc)) for a in argv]
    code, _out, err = _run(capsys, argv, tiny_llama if "--model" not in argv else None)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_empty_input_file_is_usage_error(capsys, tiny_llama, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    code, _, err = _run(capsys, ["ask", str(empty), "-q", "x"], tiny_llama)
    assert code == 2 and "empty" in err


def test_help_exits_0(capsys) -> None:
    code, out, _ = _run(capsys, ["--help"])
    assert code == 0 and "niah" in out and "qa" in out


def test_token_counts_parse() -> None:
    assert cli._int_list("8k,16K, 1M,500") == [8000, 16000, 1_000_000, 500]


def test_niah_grid_json_resume(capsys, tiny_llama, tmp_path: Path) -> None:
    out_json = tmp_path / "grid.json"
    argv = [
        "niah",
        "--lengths",
        "300",
        "--depths",
        "0,100",
        "--out",
        str(out_json),
        "--json",
        "--no-progress",
        "--max-new-tokens",
        "2",
    ]
    code, out, err = _run(capsys, argv, tiny_llama)
    assert code == 0, err
    payload = json.loads(out)
    assert len(payload["cells"]) == 2
    assert Path(payload["heatmap"]).read_bytes()[:4] == b"\x89PNG"
    cell = payload["cells"][0]
    assert {"retrieved", "answered", "answer", "kept_tokens"} <= set(cell["infiniretri"])
    assert {"retrieved", "answered", "prompt_tokens"} <= set(cell["full_context"])
    saved = json.loads(out_json.read_text(encoding="utf-8"))
    assert saved["meta"]["haystack"] == "stdlib docstrings" and len(saved["cells"]) == 2
    # rerun with one more depth: the two finished cells are skipped, one is added
    argv[4] = "0,50,100"
    code, out, _ = _run(capsys, argv, tiny_llama)
    assert code == 0
    cells = json.loads(out)["cells"]
    assert len(cells) == 3 and cells[:2] == payload["cells"]


def test_qa_json(capsys, tiny_llama, tmp_path: Path) -> None:
    data = tmp_path / "lb.jsonl"
    rows = [
        {"context": TEXT, "input": "Where does Bob live?", "answers": ["Rome"]},
        {"context": TEXT, "input": "What does Dave play?", "answers": ["the violin"]},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out_json = tmp_path / "qa.json"
    argv = [
        "qa",
        "--jsonl",
        str(data),
        "--methods",
        "infiniretri,full,bm25",
        "--out",
        str(out_json),
        "--json",
        "--no-progress",
        "--max-new-tokens",
        "2",
        "--rag-chunk-tokens",
        "16",
        "--rag-chunks",
        "1",
    ]
    code, out, err = _run(capsys, argv, tiny_llama)
    assert code == 0, err
    summary = json.loads(out)["summary"]
    rows_by = {(r["dataset"], r["method"]): r for r in summary}
    assert {("lb", "infiniretri"), ("lb", "full"), ("lb", "bm25"), ("all", "bm25")} <= set(rows_by)
    assert all(r["n"] == 2 and 0 <= r["f1"] <= 100 for r in summary)
    assert rows_by[("lb", "bm25")]["context_tokens"] < rows_by[("lb", "full")]["context_tokens"]
    records = json.loads(out_json.read_text(encoding="utf-8"))["records"]
    assert len(records) == 6 and all(set(r) >= {"prediction", "f1", "context_tokens", "seconds"} for r in records)


def test_qa_unknown_method(capsys, tiny_llama, tmp_path: Path) -> None:
    data = tmp_path / "lb.jsonl"
    data.write_text(json.dumps({"context": TEXT, "input": "q?", "answers": ["a"]}), encoding="utf-8")
    code, _, err = _run(capsys, ["qa", "--jsonl", str(data), "--methods", "infiniretri,magic"], tiny_llama)
    assert code == 2 and "magic" in err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], {}),
        (["--similarity", "none"], {"similarity": None}),
        (["--probe", "none"], {"probe": None}),
        (
            ["--similarity", "embeddings", "--candidate-tokens", "64"],
            {"similarity": "embeddings", "candidate_tokens": 64},
        ),
        (["--candidate-tokens", "none"], {"candidate_tokens": None}),
        (["--candidate-tokens", "16k"], {"candidate_tokens": 16000}),
    ],
)
def test_similarity_and_cascade_flags_reach_the_engine(capsys, tiny_llama, doc: Path, monkeypatch, flags, expected):
    from infiniretri_integrations.core.engine import InfiniRetriEngine

    seen: list[tuple] = []
    original = InfiniRetriEngine.retrieve

    def spy(self, documents, question, **options):
        seen.append((self.config.similarity, self.config.candidate_tokens, self.config.probe))
        return original(self, documents, question, **options)

    monkeypatch.setattr(InfiniRetriEngine, "retrieve", spy)
    code, _, err = _run(
        capsys, ["ask", str(doc), "-q", "Who has cats?", "--no-answer", "--no-progress", *flags], tiny_llama
    )
    assert code == 0, err
    assert seen == [
        (
            expected.get("similarity", "hidden"),
            expected.get("candidate_tokens", "auto"),
            expected.get("probe", "auto"),
        )
    ]
