"""The Ray Data runner (``retrieve_dataset``) on a local 2-CPU Ray instance with the tiny random model
saved to a folder (the actors load it by path): one row per (document, question), spans that index
the original text, results equal to ``engine.retrieve``, both input forms, answers, clear errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from infiniretri_integrations import InfiniRetriEngine  # noqa: E402
from infiniretri_integrations.ray_data import OUTPUT_COLUMNS, retrieve_dataset  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPTIONS = {"chunk_size": 256, "tokens_per_pass": 40, "max_sentence_tokens": 64}
"""Several passes per document on the tiny model (a 4K window)."""


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def texts(stdlib_haystack: str) -> dict[str, str]:
    return {"csv": stdlib_haystack[:2500], "json": stdlib_haystack[6000:8500]}


@pytest.fixture(scope="module")
def reference(tiny_llama_folder: Path) -> InfiniRetriEngine:
    """The engine each actor builds, in this process (same folder, float32, same options)."""
    return InfiniRetriEngine(str(tiny_llama_folder), dtype="float32", show_progress=False, **OPTIONS)


ROWS = [
    ("csv", "How do I read a CSV file?"),
    ("csv", "Which module handles regular expressions?"),
    ("json", "  What does the json module do?\n"),  # kept as given in the output (the engine strips it)
]


def _assert_rows_match(rows: list[dict], texts: dict[str, str], reference: InfiniRetriEngine) -> None:
    for row in rows:
        text = texts[row["doc_id"]]
        assert len(row["sentences"]) == len(row["starts"]) == len(row["ends"]) == len(row["scores"]) > 0
        for sentence, start, end in zip(row["sentences"], row["starts"], row["ends"], strict=True):
            assert text[start:end] == sentence
        expected = reference.retrieve([text], row["question"])
        assert list(row["sentences"]) == [s.text for s in expected.sentences]
        assert (list(row["starts"]), list(row["ends"])) == (
            [s.start for s in expected.sentences],
            [s.end for s in expected.sentences],
        )
        assert list(row["scores"]) == pytest.approx([s.score for s in expected.sentences], rel=1e-4, abs=1e-6)
        assert row["kept_text"] == expected.context
        assert (row["kept_tokens"], row["input_tokens"]) == (expected.stats.kept_tokens, expected.stats.input_tokens)
        assert row["seconds"] > 0


def test_rows_form_one_row_per_document_question_equal_to_retrieve(local_ray, tiny_llama_folder, texts, reference):
    rows = ray.data.from_items([{"doc_id": d, "text": texts[d], "question": q} for d, q in ROWS])
    out = retrieve_dataset(
        rows, model=tiny_llama_folder, dtype="float32", retrieval_options=OPTIONS, batch_size=1
    ).take_all()
    assert sorted((r["doc_id"], r["question"]) for r in out) == sorted(ROWS)
    assert set(out[0]) == {"doc_id", "question", *OUTPUT_COLUMNS}
    _assert_rows_match(out, texts, reference)


def test_corpus_and_questions_with_answers_in_a_pool_of_two(local_ray, tiny_llama_folder, texts, reference):
    questions = ["How do I read a CSV file?", "What does the json module do?"]
    corpus = ray.data.from_items([{"id": d, "body": t, "year": 2024} for d, t in texts.items()])
    out = retrieve_dataset(
        corpus,
        model=str(tiny_llama_folder),
        questions=questions,
        concurrency=2,
        batch_size=1,
        answer=True,
        dtype="float32",
        retrieval_options={**OPTIONS, "max_new_tokens": 4},
        text_column="body",
        id_column="id",
    ).take_all()
    assert sorted((r["id"], r["question"]) for r in out) == sorted((d, q) for d in texts for q in questions)
    assert all(isinstance(r["answer"], str) and r["answer"].strip() for r in out)
    _assert_rows_match([{**r, "doc_id": r["id"]} for r in out], texts, reference)


def test_one_document_with_two_texts_fails_naming_it(local_ray, tiny_llama_folder):
    rows = ray.data.from_items(
        [{"doc_id": "x", "text": "One text.", "question": "Q?"}, {"doc_id": "x", "text": "Another.", "question": "Q?"}]
    )
    with pytest.raises(ValueError, match=r"document 'x' has rows with different 'text' values"):
        retrieve_dataset(rows, model=tiny_llama_folder).take_all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"questions": []}, ValueError, r"questions is empty \(\[\]\)"),
        ({"questions": ["ok?", "  "]}, ValueError, r"non-empty string, got '  '"),
        ({"questions": "Where?"}, TypeError, r"list of strings, got str: 'Where\?'"),
        (
            {"id_column": "name"},
            ValueError,
            r"no column\(s\) \['name'\]; its columns are \['doc_id', 'text', 'question'\]",
        ),
        ({"questions": ["Where?"]}, ValueError, r"has a 'question' column and questions= was given"),
        ({"model": object()}, TypeError, r"model must be a model folder or \.gguf path"),
        ({"retrieval_options": {"topk": 3}}, TypeError, r"Unknown retrieval option\(s\) \['topk'\]"),
        ({"concurrency": 0}, ValueError, r"concurrency must be .* got 0"),
        ({"concurrency": (3, 1)}, ValueError, r"got \(3, 1\)"),
        ({"batch_size": 0}, ValueError, r"batch_size .* got 0"),
        ({"num_gpus": -1}, ValueError, r"num_gpus must be a number >= 0, got -1"),
    ],
)
def test_bad_inputs_fail_before_running_naming_the_value(local_ray, kwargs, error, match):
    rows = ray.data.from_items([{"doc_id": "a", "text": "Bob lives in Rome.", "question": "Where does Bob live?"}])
    with pytest.raises(error, match=match):
        retrieve_dataset(rows, **kwargs)


def test_not_a_dataset_and_missing_ray(monkeypatch):
    with pytest.raises(TypeError, match=r"dataset must be a ray\.data\.Dataset, got list"):
        retrieve_dataset([{"doc_id": "a", "text": "t"}], questions=["q?"])  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(ImportError, match=r'pip install "infiniretri-integrations\[ray\]"'):
        retrieve_dataset(None, questions=["q?"])  # type: ignore[arg-type]


def test_importing_the_package_does_not_import_ray():
    code = "import sys, infiniretri_integrations, infiniretri_integrations.ray_data; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
