"""The Ray Data runner (``retrieve_dataset``) on a local 2-CPU Ray instance with the tiny random model
saved to a folder (the actors load it by path): one row per (document, question), each kept sentence
as ``RetrievedSentence.to_dict`` gives it (spans that index the original text), results equal to
``engine.retrieve``, both input forms, answers with their own options, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from infiniretri_integrations import InfiniRetriEngine  # noqa: E402
from infiniretri_integrations.ray_data import OUTPUT_COLUMNS, SENTENCE_FIELDS, retrieve_dataset  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPTIONS = {"chunk_size": 256, "tokens_per_pass": 40, "max_sentence_tokens": 64}
"""Several passes per document on the tiny model (a 4K window)."""


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # The rows form groups by document (a hash shuffle): Ray's default 200 partitions cost a few
    # tiny rows 27 s on a busy 2-core machine, 2 partitions in one aggregator 9 s. Same results.
    saved = (context.default_hash_shuffle_parallelism, context.max_hash_shuffle_aggregators)
    context.default_hash_shuffle_parallelism = 2
    context.max_hash_shuffle_aggregators = 1
    try:
        yield
    finally:
        context.default_hash_shuffle_parallelism, context.max_hash_shuffle_aggregators = saved
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


def _assert_rows_match(rows: list[dict], texts: dict[str, str], reference: InfiniRetriEngine) -> list:
    """Each row equals ``reference.retrieve`` of its document and question; the retrievals, in row order."""
    retrievals = []
    for row in rows:
        text = texts[row["doc_id"]]
        sentences = list(row["sentences"])
        assert sentences and all(set(s) == set(SENTENCE_FIELDS) for s in sentences)
        for sentence in sentences:
            assert text[sentence["start"] : sentence["end"]] == sentence["text"]
        expected = reference.retrieve([text], row["question"])
        wanted = [s.to_dict() for s in expected.sentences]
        assert [s["score"] for s in sentences] == pytest.approx([w["score"] for w in wanted], rel=1e-4, abs=1e-6)
        assert [{**s, "score": None, "metadata": json.loads(s["metadata"])} for s in sentences] == [
            {**w, "score": None, "document_id": row["doc_id"]} for w in wanted
        ]
        assert row["kept_text"] == expected.context
        assert (row["kept_tokens"], row["input_tokens"]) == (expected.stats.kept_tokens, expected.stats.input_tokens)
        assert row["seconds"] > 0
        retrievals.append(expected)
    return retrievals


def test_rows_form_one_row_per_document_question_equal_to_retrieve(local_ray, tiny_llama_folder, texts, reference):
    rows = ray.data.from_items([{"doc_id": d, "text": texts[d], "question": q} for d, q in ROWS])
    out = retrieve_dataset(
        rows, model=tiny_llama_folder, dtype="float32", retrieval_options=OPTIONS, batch_size=1
    ).take_all()
    assert sorted((r["doc_id"], r["question"]) for r in out) == sorted(ROWS)
    assert set(out[0]) == {"doc_id", "question", *OUTPUT_COLUMNS}
    _assert_rows_match(out, texts, reference)


ANSWER_OPTIONS = {"max_new_tokens": 4, "system_prompt": "Answer in a few words."}


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
        retrieval_options=OPTIONS,
        answer_options=ANSWER_OPTIONS,
        text_column="body",
        id_column="id",
    ).take_all()
    assert sorted((r["id"], r["question"]) for r in out) == sorted((d, q) for d in texts for q in questions)
    assert all(isinstance(r["answer"], str) and r["answer"].strip() for r in out)
    retrievals = _assert_rows_match([{**r, "doc_id": r["id"]} for r in out], texts, reference)
    # the answer options reached the actors: each answer is the reference's with the same options
    assert [r["answer"] for r in out] == [reference.answer_from(e, **ANSWER_OPTIONS).text for e in retrievals]


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
        (
            {"retrieval_options": {"max_new_tokens": 4, "chunk_size": 256}},
            TypeError,
            r"max_new_tokens is an answer option, not a retrieval option: "
            r"pass answer=True, answer_options=\{'max_new_tokens': 4\}",
        ),
        ({"retrieval_options": {"stop": "END"}}, TypeError, r"stop is an answer option"),
        ({"answer_options": {"max_new_tokens": 4}}, ValueError, r"given with answer=False; pass answer=True"),
        (
            {"answer": True, "answer_options": {"chunk_size": 256}},
            TypeError,
            r"answer_options got retrieval option\(s\) \['chunk_size'\].*put retrieval options in retrieval_options",
        ),
        ({"answer": True, "answer_options": {"temperature": 0.2}}, TypeError, r"unknown option\(s\) \['temperature'\]"),
        ({"answer": True, "answer_options": {"max_new_tokens": 0}}, ValueError, r"max_new_tokens .* got 0"),
        ({"answer": True, "answer_options": {"generate_kwargs": [1]}}, TypeError, r"generate_kwargs must be a mapping"),
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
