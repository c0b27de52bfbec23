"""Loaders for long-document QA samples: the HotpotQA distractor sample, L-Eval task files and
LongBench-style jsonl records (``{"context", "input"|"question", "answers"}``)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class QASample:
    """One question over one or more documents, with its gold answers."""

    id: str
    dataset: str
    question: str
    answers: tuple[str, ...]
    documents: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def context(self) -> str:
        """All documents as one text (blank line between documents)."""
        return "\n\n".join(self.documents)


def _check_file(path: str | Path) -> Path:
    file = Path(path)
    if not file.is_file():
        msg = f"QA data file not found: {str(file)!r}"
        raise FileNotFoundError(msg)
    return file


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                msg = f"{path.name} line {number}: not JSON ({error.msg})"
                raise ValueError(msg) from None
            if not isinstance(record, dict):
                msg = f"{path.name} line {number}: expected a JSON object"
                raise ValueError(msg)
            yield record


def _answers(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    msg = f"answers must be a string or a list of strings, got {type(value).__name__}"
    raise ValueError(msg)


def load_hotpotqa(path: str | Path, limit: int | None = None, seed: int = 0) -> list[QASample]:
    """The HotpotQA distractor sample (``camera_ready_nd8_dev_sample100.json``): per question the
    two gold paragraphs and eight distractors, each as one document ``"title\\ntext"``, in an order
    shuffled deterministically per question (so the gold ones are not always first).

    Records that instead look like LongBench records (``context``/``input``/``answers``) are
    accepted too.
    """
    file = _check_file(path)
    if file.suffix == ".jsonl":
        return load_longbench_jsonl(file, limit=limit, dataset="hotpotqa")
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        msg = f"{file.name}: expected a JSON list of HotpotQA records"
        raise ValueError(msg)
    samples: list[QASample] = []
    for index, record in enumerate(data):
        if limit is not None and len(samples) >= limit:
            break
        if "context" in record and ("input" in record or "question" in record):
            samples.append(_longbench_record(record, index, "hotpotqa"))
            continue
        try:
            paragraphs = [
                (record["title_a"], "".join(record["para_a"])),
                (record["title_b"], "".join(record["para_b"])),
                *((item[0], "".join(item[1])) for item in record.get("distractors", [])),  # [title, sentences, score]
            ]
            question, answer = record["question"], record["answer"]
        except (KeyError, TypeError, ValueError) as error:
            msg = f"{file.name} record {index}: not a HotpotQA distractor record (missing {error})"
            raise ValueError(msg) from None
        order = list(range(len(paragraphs)))
        random.Random(f"{seed}:{record.get('_id', index)}").shuffle(order)
        documents = tuple(f"{paragraphs[i][0]}\n{paragraphs[i][1].strip()}" for i in order)
        samples.append(
            QASample(
                id=str(record.get("_id", index)),
                dataset="hotpotqa",
                question=question,
                answers=_answers(answer),
                documents=documents,
                metadata={"gold_titles": [record["title_a"], record["title_b"]]},
            )
        )
    return samples


def load_leval(path: str | Path, limit: int | None = None, questions_per_document: int | None = 1) -> list[QASample]:
    """An L-Eval task file (one document per line with ``instructions``/``outputs``/``input``).

    ``questions_per_document`` questions are taken from each document in turn (``None``: all), up to
    ``limit`` questions. LongBench-style lines are accepted as well.
    """
    file = _check_file(path)
    task = file.stem
    samples: list[QASample] = []
    for index, record in enumerate(_jsonl(file)):
        if limit is not None and len(samples) >= limit:
            break
        if "instructions" not in record:
            samples.append(_longbench_record(record, index, task))
            continue
        try:
            questions, outputs, document = record["instructions"], record["outputs"], record["input"]
        except KeyError as error:
            msg = f"{file.name} line {index + 1}: an L-Eval record needs instructions, outputs and input (missing {error})"
            raise ValueError(msg) from None
        taken = list(zip(questions, outputs, strict=False))[: questions_per_document or None]
        for number, (question, output) in enumerate(taken):
            if limit is not None and len(samples) >= limit:
                break
            samples.append(
                QASample(
                    id=f"{task}-{index}-{number}",
                    dataset=f"leval/{task}",
                    question=str(question).strip(),
                    answers=_answers(output),
                    documents=(document,),
                    metadata={"evaluation": record.get("evaluation"), "source": record.get("source")},
                )
            )
    return samples


def load_longbench_jsonl(path: str | Path, limit: int | None = None, dataset: str | None = None) -> list[QASample]:
    """LongBench-style records: ``context``, ``input`` (or ``question``), ``answers`` (or ``answer``)."""
    file = _check_file(path)
    samples: list[QASample] = []
    for index, record in enumerate(_jsonl(file)):
        if limit is not None and len(samples) >= limit:
            break
        samples.append(_longbench_record(record, index, dataset or record.get("dataset") or file.stem))
    return samples


def _longbench_record(record: dict[str, Any], index: int, dataset: str) -> QASample:
    question = record.get("input", record.get("question"))
    answers = record.get("answers", record.get("answer", record.get("outputs")))
    context = record.get("context")
    if not isinstance(question, str) or not isinstance(context, str) or answers is None:
        msg = f"{dataset} record {index}: a LongBench record needs str 'context', 'input' (or 'question') and 'answers'"
        raise ValueError(msg)
    return QASample(
        id=str(record.get("_id", record.get("id", index))),
        dataset=dataset,
        question=question.strip(),
        answers=_answers(answers),
        documents=(context,),
        metadata={"length": record.get("length")},
    )
