"""InfiniRetri over a Ray Dataset: corpora x questions in an actor pool (``pip install "infiniretri-integrations[ray]"``).

:func:`retrieve_dataset` takes a Ray Dataset of ``(doc_id, text, question)`` rows, or a corpus of
``(doc_id, text)`` rows plus a list of questions asked of every document, reads each document ONCE
for all of its questions (:meth:`InfiniRetriEngine.retrieve_many`) in a pool of actors that each
load the model once, and returns a Dataset with one row per (document, question): the kept
sentences (each as :meth:`RetrievedSentence.to_dict` gives it: text, character span, score,
provenance), the kept text, and optionally an answer.

Ray and pyarrow are imported inside the functions: importing this module (or the package) does not
import them, and calling :func:`retrieve_dataset` without them raises an ``ImportError`` that says
how to install them.

Example:
    >>> import ray  # doctest: +SKIP
    >>> from infiniretri_integrations.ray_data import retrieve_dataset
    >>> corpus = ray.data.from_items([{"doc_id": "a", "text": "Bob lives in Rome. Alice lives in Paris."}])  # doctest: +SKIP
    >>> out = retrieve_dataset(corpus, questions=["Where does Bob live?"], concurrency=2)  # doctest: +SKIP
    >>> out.write_parquet("kept/")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from infiniretri_integrations.core.config import (
    PROMPT_FIELDS,
    GenerationConfig,
    RetrievalConfig,
    generation_option_names,
    option_names,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

    from infiniretri_integrations.core.types import RetrievedSentence

INSTALL_HINT = 'pip install "infiniretri-integrations[ray]"'

DEFAULT_BATCH_SIZE = 4
"""Documents per actor call (each document with all of its questions)."""

OUTPUT_COLUMNS = (
    "kept_text",
    "sentences",
    "kept_tokens",
    "input_tokens",
    "seconds",
)
"""Result columns after the id and question columns (``answer`` is added with ``answer=True``)."""

SENTENCE_FIELDS = (
    "text",
    "score",
    "document_index",
    "document_id",
    "sentence_index",
    "start",
    "end",
    "token_count",
    "metadata",
)
"""The fields of each entry of the ``sentences`` column: :meth:`RetrievedSentence.to_dict`'s keys
(``metadata`` as a JSON string: Arrow and Parquet have no type for an arbitrary dict)."""

ANSWER_OPTIONS = (*generation_option_names(), *PROMPT_FIELDS)
"""What ``answer_options`` takes: :class:`GenerationConfig` fields and the prompt fields."""


def _require_ray() -> Any:
    """The ``ray.data`` module, or an ImportError naming the extra to install."""
    try:
        import pyarrow  # noqa: F401
        import ray.data
    except ImportError as error:
        msg = f"retrieve_dataset needs Ray Data and pyarrow, which are not installed ({error}); install them with: {INSTALL_HINT}"
        raise ImportError(msg) from error
    return ray.data


def retrieve_dataset(
    dataset: ray.data.Dataset,
    *,
    model: str | os.PathLike[str] | None = None,
    questions: Sequence[str] | None = None,
    concurrency: int | tuple[int, int] = 1,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    answer: bool = False,
    retrieval_options: Mapping[str, Any] | None = None,
    answer_options: Mapping[str, Any] | None = None,
    share_context: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    text_column: str = "text",
    id_column: str = "doc_id",
    question_column: str = "question",
) -> ray.data.Dataset:
    """Retrieve the sentences every question attends to in every document, in a Ray actor pool.

    Two input forms:

    * rows of ``(id_column, text_column, question_column)``: one row per (document, question). The
      rows are grouped by ``id_column`` (every row of a document must carry the same text) so that
      each document is read once for all of its questions;
    * a corpus of ``(id_column, text_column)`` rows and ``questions``: every question is asked of
      every document.

    Each actor builds one :class:`~infiniretri_integrations.InfiniRetriEngine` (the model loads
    once per actor) and calls ``engine.retrieve_many([document], its_questions)`` per document,
    so the results equal one ``engine.retrieve(document, question)`` per row (float32).

    Args:
        dataset: a ``ray.data.Dataset`` in one of the two forms above.
        model: a model folder or ``.gguf`` path (each actor loads it), or ``None`` for the packaged
            default (SmolLM2-135M-Instruct). A path, not a model object, so that it travels to the
            actors.
        questions: the questions asked of every document (corpus form); ``None``: the dataset has a
            ``question_column``.
        concurrency: actors in the pool (an int), or ``(min, max)`` for an autoscaling pool.
        num_gpus: GPUs per actor (e.g. ``1``, or ``0.25`` to share one GPU among four actors).
        num_cpus: CPUs per actor (``None``: Ray's default, one). Ray gives each actor as many
            torch threads as CPUs.
        batch_size: documents per actor call.
        answer: add an ``answer`` column, generated with the same model from the kept sentences.
        retrieval_options: :class:`~infiniretri_integrations.RetrievalConfig` fields
            (``tokens_per_pass``, ``token_budget``, ``chunk_size``, ...), checked here before anything
            runs; the prompt fields (``system_prompt``, ...) shape both the scoring passes and the answer.
            Answer options are refused here: they go in ``answer_options``.
        answer_options: with ``answer=True``, how each answer is generated:
            :class:`~infiniretri_integrations.GenerationConfig` fields (``max_new_tokens``, ``stop``,
            ``generate_kwargs``) and the prompt fields (``system_prompt``, ``use_chat_template``,
            ``prompt_template``) for the answer only; checked here before anything runs.
        share_context: passed to ``retrieve_many`` (one context encoding per pass for all questions of a
            document: faster with many questions, a different selection).
        device, dtype: where and how each actor loads the model (default: CUDA if the actor has a
            GPU, else CPU; bfloat16 where the hardware runs it natively, else float32).
        text_column, id_column, question_column: the input column names; the output keeps
            ``id_column`` and ``question_column`` under the same names.

    Returns:
        A lazy Dataset with one row per (document, question), in no guaranteed order:
        ``id_column``, ``question_column``, ``kept_text`` (the kept sentences joined as the answering
        model reads them), ``sentences`` (the kept sentences in document order, each a
        :meth:`RetrievedSentence.to_dict` struct: :data:`SENTENCE_FIELDS`, with
        ``text[start:end] == sentence["text"]``), ``kept_tokens``, ``input_tokens`` (the document's
        tokens), ``seconds`` (the engine call
        for this document and all its questions), and ``answer`` with ``answer=True``. Write it with
        ``.write_parquet(path)``; nothing runs until the Dataset is consumed, and every consumption
        runs it again (``.materialize()`` it first to consume it more than once).

    Raises:
        ImportError: Ray Data or pyarrow is not installed.
        ValueError: a missing column, no questions, an empty question, a bad pool setting,
            ``answer_options`` without ``answer=True``.
        TypeError: a model object instead of a path, an unknown retrieval option, an answer option
            in ``retrieval_options``, a retrieval option in ``answer_options``.

    Example:
        >>> import ray  # doctest: +SKIP
        >>> from infiniretri_integrations.ray_data import retrieve_dataset
        >>> rows = ray.data.from_items([  # doctest: +SKIP
        ...     {"doc_id": "rome", "text": "Bob lives in Rome. He bakes bread.", "question": "Where does Bob live?"},
        ...     {"doc_id": "rome", "text": "Bob lives in Rome. He bakes bread.", "question": "What does Bob bake?"},
        ... ])
        >>> out = retrieve_dataset(rows, concurrency=2, answer=True, answer_options={"max_new_tokens": 32})  # doctest: +SKIP
        >>> out.write_parquet("kept/")  # doctest: +SKIP
        >>> corpus = ray.data.read_parquet("corpus/")  # doc_id, text  # doctest: +SKIP
        >>> out = retrieve_dataset(corpus, questions=["Who founded it?", "When?"], num_gpus=1)  # doctest: +SKIP
    """
    data = _require_ray()
    if not isinstance(dataset, data.Dataset):
        msg = f"dataset must be a ray.data.Dataset, got {type(dataset).__name__}: {dataset!r:.80}"
        raise TypeError(msg)
    model_path = _model_path(model)
    fixed_questions = _fixed_questions(questions)
    compute = _actor_pool(data, concurrency)
    _check_number("num_gpus", num_gpus, minimum=0.0, allow_zero=True)
    if num_cpus is not None:
        _check_number("num_cpus", num_cpus, minimum=0.0, allow_zero=False)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        msg = f"batch_size (documents per actor call) must be a positive integer, got {batch_size!r}"
        raise ValueError(msg)
    options = _retrieval_options(retrieval_options)
    answering = _answer_options(answer_options, answer)
    columns = [text_column, id_column] if fixed_questions is not None else [text_column, id_column, question_column]
    _check_columns(dataset, columns, question_column if fixed_questions is not None else None)

    dataset = dataset.select_columns(columns)
    if fixed_questions is None:
        collect = functools.partial(
            _questions_per_document, id_column=id_column, text_column=text_column, question_column=question_column
        )
        dataset = dataset.groupby(id_column).map_groups(collect, batch_format="pyarrow")
    remote_args: dict[str, Any] = {"num_gpus": num_gpus} if num_gpus else {}
    if num_cpus is not None:
        remote_args["num_cpus"] = num_cpus
    return dataset.map_batches(
        DocumentRetriever,
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=compute,
        fn_constructor_kwargs={
            "model": model_path,
            "questions": fixed_questions,
            "answer": bool(answer),
            "retrieval_options": options,
            "answer_options": answering,
            "share_context": bool(share_context),
            "device": device,
            "dtype": dtype,
            "text_column": text_column,
            "id_column": id_column,
            "question_column": question_column,
        },
        **remote_args,
    )


class DocumentRetriever:
    """The actor of :func:`retrieve_dataset`: builds one engine (loading the model once) and maps
    batches of documents to one row per (document, question).

    An input batch has ``id_column`` and ``text_column``, and ``question_column`` holding each
    document's list of questions unless ``questions`` is given for all documents.

    Example:
        >>> import pyarrow as pa  # doctest: +SKIP
        >>> retriever = DocumentRetriever(questions=["Where does Bob live?"])  # doctest: +SKIP
        >>> retriever(pa.table({"doc_id": ["a"], "text": ["Bob lives in Rome."]})).num_rows  # doctest: +SKIP
        1
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        questions: Sequence[str] | None = None,
        answer: bool = False,
        retrieval_options: Mapping[str, Any] | None = None,
        answer_options: Mapping[str, Any] | None = None,
        share_context: bool = False,
        device: str | None = None,
        dtype: str | None = None,
        text_column: str = "text",
        id_column: str = "doc_id",
        question_column: str = "question",
    ) -> None:
        from infiniretri_integrations.core.engine import InfiniRetriEngine

        self.engine = InfiniRetriEngine(
            model, device=device, dtype=dtype, show_progress=False, **dict(retrieval_options or {})
        )
        _ = self.engine.local_model  # load the model now, once per actor, not inside the first batch
        self.questions = list(questions) if questions is not None else None
        self.answer = answer
        self.answer_options = dict(answer_options or {})
        self.share_context = share_context
        self.text_column = text_column
        self.id_column = id_column
        self.question_column = question_column

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        from infiniretri_integrations.core.types import SourceDocument

        ids = batch.column(self.id_column)
        texts = batch.column(self.text_column).to_pylist()
        per_document = (
            [self.questions] * batch.num_rows
            if self.questions is not None
            else batch.column(self.question_column).to_pylist()
        )
        rows: list[int] = []
        values: dict[str, list[Any]] = {name: [] for name in (self.question_column, *OUTPUT_COLUMNS)}
        answers: list[str] = []
        for row, (doc_id, text, questions) in enumerate(zip(ids.to_pylist(), texts, per_document, strict=True)):
            if doc_id is None:
                msg = f"a row has no {self.id_column!r} (null); every document needs an id"
                raise ValueError(msg)
            if not isinstance(text, str):
                msg = f"document {doc_id!r}: {self.text_column!r} must be a string, got {type(text).__name__}: {text!r:.80}"
                raise TypeError(msg)
            document = SourceDocument(text=text, id=str(doc_id))
            questions = list(questions)
            try:
                results = self.engine.retrieve_many([document], questions, share_context=self.share_context)
            except (TypeError, ValueError) as error:
                msg = f"document {doc_id!r}: {error}"
                raise type(error)(msg) from error
            for question, result in zip(questions, results, strict=True):
                rows.append(row)
                values[self.question_column].append(question)  # as given (the engine strips whitespace)
                values["kept_text"].append(result.context)
                values["sentences"].append([sentence_row(s) for s in result.sentences])
                values["kept_tokens"].append(result.stats.kept_tokens)
                values["input_tokens"].append(result.stats.input_tokens)
                values["seconds"].append(result.stats.seconds)
                if self.answer:
                    answers.append(self.engine.answer_from(result, **self.answer_options).text)
        types = {
            self.question_column: pa.string(),
            "kept_text": pa.string(),
            "sentences": pa.list_(sentence_type()),
            "kept_tokens": pa.int64(),
            "input_tokens": pa.int64(),
            "seconds": pa.float64(),
        }
        arrays = {self.id_column: ids.take(pa.array(rows, type=pa.int64()))}
        arrays.update({name: pa.array(values[name], type=types[name]) for name in types})
        if self.answer:
            arrays["answer"] = pa.array(answers, type=pa.string())
        return pa.table(arrays)


def sentence_row(sentence: RetrievedSentence) -> dict[str, Any]:
    """One kept sentence as a ``sentences`` entry: :meth:`RetrievedSentence.to_dict`, with its
    ``metadata`` as JSON text (an Arrow column needs one type; a dict's keys vary).

    Example:
        >>> from infiniretri_integrations.core.types import RetrievedSentence
        >>> sentence_row(RetrievedSentence(" Bob lives in Rome.", 2.5, 0, "a", 0, 0, 19, 6))["metadata"]
        '{}'
    """
    row = sentence.to_dict()
    row["metadata"] = json.dumps(row["metadata"], default=str, sort_keys=True)
    return row


def sentence_type() -> pa.DataType:
    """The Arrow type of one ``sentences`` entry (fields :data:`SENTENCE_FIELDS`)."""
    import pyarrow as pa

    types = {
        "text": pa.string(),
        "score": pa.float64(),
        "document_index": pa.int64(),
        "document_id": pa.string(),
        "sentence_index": pa.int64(),
        "start": pa.int64(),
        "end": pa.int64(),
        "token_count": pa.int64(),
        "metadata": pa.string(),
    }
    return pa.struct([(name, types[name]) for name in SENTENCE_FIELDS])


def _retrieval_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``retrieval_options`` checked before anything runs: answer options are refused, naming
    where they go; unknown or invalid retrieval options fail as :class:`RetrievalConfig` says."""
    given = dict(options or {})
    answering = sorted(name for name in given if name in generation_option_names())
    if answering:
        moved = {name: given[name] for name in answering}
        msg = (
            f"{', '.join(answering)} "
            f"{'is an answer option, not a retrieval option' if len(answering) == 1 else 'are answer options, not retrieval options'}: "
            f"pass answer=True, answer_options={moved!r} "
            f"(retrieval_options takes {list(option_names())})"
        )
        raise TypeError(msg)
    RetrievalConfig().replace(**given)  # unknown or invalid options fail here, not in an actor
    return given


def _answer_options(options: Mapping[str, Any] | None, answer: bool) -> dict[str, Any]:
    """``answer_options`` checked before anything runs (values too): only with ``answer=True``,
    only :data:`ANSWER_OPTIONS`."""
    given = dict(options or {})
    if not given:
        return given
    if not answer:
        msg = f"answer_options={given!r} given with answer=False; pass answer=True to add an 'answer' column"
        raise ValueError(msg)
    other = sorted(set(given) - set(ANSWER_OPTIONS))
    if other:
        kind = "retrieval option(s)" if set(other) <= set(option_names()) else "unknown option(s)"
        where = "; put retrieval options in retrieval_options" if kind.startswith("retrieval") else ""
        msg = f"answer_options got {kind} {other}; answer options are {sorted(ANSWER_OPTIONS)}{where}"
        raise TypeError(msg)
    GenerationConfig().replace(**{k: v for k, v in given.items() if k in generation_option_names()})
    RetrievalConfig().replace(**{k: v for k, v in given.items() if k in PROMPT_FIELDS})
    return given


def _questions_per_document(group: pa.Table, *, id_column: str, text_column: str, question_column: str) -> pa.Table:
    """One group of rows (one document) -> one row: its id, its text, the list of its questions."""
    import pyarrow as pa

    texts = group.column(text_column).to_pylist()
    doc_id = group.column(id_column)[0].as_py()
    if any(text != texts[0] for text in texts):
        msg = (
            f"document {doc_id!r} has rows with different {text_column!r} values; rows of one "
            f"{id_column!r} must carry the same text (give different documents different ids)"
        )
        raise ValueError(msg)
    questions = group.column(question_column).to_pylist()
    for question in questions:
        if not isinstance(question, str) or not question.strip():
            msg = f"document {doc_id!r}: every {question_column!r} must be a non-empty string, got {question!r}"
            raise ValueError(msg)
    return pa.table(
        {
            id_column: group.column(id_column).slice(0, 1),
            text_column: pa.array(texts[:1], type=group.schema.field(text_column).type),
            question_column: pa.array([questions], type=pa.list_(group.schema.field(question_column).type)),
        }
    )


def _model_path(model: object) -> str | None:
    if model is None or isinstance(model, str):
        return model
    if isinstance(model, os.PathLike):
        return os.fspath(model)  # type: ignore[return-value]
    msg = (
        f"model must be a model folder or .gguf path (each actor loads it), or None for the packaged default; "
        f"got {type(model).__name__}: {model!r:.80}; save a transformers model with save_pretrained(folder) first"
    )
    raise TypeError(msg)


def _fixed_questions(questions: object) -> list[str] | None:
    if questions is None:
        return None
    if isinstance(questions, str) or not isinstance(questions, Sequence):
        msg = f"questions must be a list of strings, got {type(questions).__name__}: {questions!r:.80}"
        raise TypeError(msg)
    if not questions:
        msg = f"questions is empty ({questions!r}); give at least one question, or None to read the question column"
        raise ValueError(msg)
    for question in questions:
        if not isinstance(question, str) or not question.strip():
            msg = f"every question must be a non-empty string, got {question!r} in {questions!r:.120}"
            raise ValueError(msg)
    return list(questions)


def _actor_pool(data: Any, concurrency: object) -> Any:
    """``concurrency`` as Ray Data's compute strategy: a fixed pool, or ``(min, max)`` autoscaling."""
    if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency > 0:
        return data.ActorPoolStrategy(size=concurrency)
    if (
        isinstance(concurrency, tuple)
        and len(concurrency) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in concurrency)
        and concurrency[0] <= concurrency[1]
    ):
        return data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    msg = f"concurrency must be a positive integer (actors) or a (min, max) tuple of them, got {concurrency!r}"
    raise ValueError(msg)


def _check_number(name: str, value: object, *, minimum: float, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value < minimum or (not allow_zero and value == 0):  # type: ignore[operator]
        bound = ">= 0" if allow_zero else "> 0"
        msg = f"{name} must be a number {bound}, got {value!r}"
        raise ValueError(msg)


def _check_columns(dataset: ray.data.Dataset, required: Sequence[str], unexpected: str | None) -> None:
    """Missing columns fail before anything runs, naming what the dataset has."""
    schema = dataset.schema()
    if schema is None:  # an empty dataset: nothing to check, nothing will run
        return
    names = list(schema.names)
    missing = [name for name in required if name not in names]
    if missing:
        msg = f"dataset has no column(s) {missing}; its columns are {names} (name them with text_column=, id_column=, question_column=)"
        raise ValueError(msg)
    if unexpected is not None and unexpected in names:
        msg = (
            f"the dataset has a {unexpected!r} column and questions= was given; pass questions=None to ask each "
            f"row's question, or drop the column (dataset.drop_columns([{unexpected!r}])) to ask questions= of "
            "every document"
        )
        raise ValueError(msg)
