"""Inputs of the reader-free evidence benchmark (:mod:`infiniretri_integrations.evaluation.evidence`).

* **HotpotQA-long**: each HotpotQA distractor question (2 gold + 8 distractor paragraphs) padded with
  paragraphs of the other questions until the input is as close to a target length (tokens of the
  reader's tokenizer) as whole passages allow without passing it. All passages (the question's own
  ten and the fillers) are shuffled, seeded per question and length, so the gold paragraphs sit at
  varied depths. The text is formatted as LongBench does: ``"Passage {n}:\\n{title}\\n{text}"``
  joined by blank lines. The gold supporting-fact sentences are kept as character spans.
* **L-Eval**: long documents with many questions each; only questions whose normalised gold answer
  (at most ``max_answer_words`` words) occurs in the normalised document, so that answer-string
  recall can reach 1.
* **The split**: the questions of each dataset are shuffled once by seed and alternately assigned to
  a calibration half and a test half; a question's half depends only on the seed and the dataset's
  question pool (not on lengths, limits or sample sizes).

Example:
    >>> format_passage(3, "Paris", "Paris is the capital of France.")
    'Passage 3:\\nParis\\nParis is the capital of France.'
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from infiniretri_integrations.evaluation.metrics import normalize_answer

Span = tuple[int, int]
"""A character span ``(start, end)`` of a sample's text."""

COVERAGE = 0.5
"""A gold sentence is covered when at least this fraction of its characters is kept."""


def merge_spans(spans: Sequence[Span]) -> list[Span]:
    """Sorted, with overlapping or touching spans merged.

    Example:
        >>> merge_spans([(5, 8), (0, 2), (2, 3), (7, 10)])
        [(0, 3), (5, 10)]
    """
    merged: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered_fraction(span: Span, kept: Sequence[Span]) -> float:
    """The fraction of ``span``'s characters inside the (merged) ``kept`` spans.

    Example:
        >>> covered_fraction((10, 20), [(0, 12), (15, 30)])
        0.7
    """
    start, end = span
    if end <= start:
        return 0.0
    inside = sum(max(0, min(end, e) - max(start, s)) for s, e in kept)
    return inside / (end - start)


def span_covered(span: Span, kept: Sequence[Span]) -> bool:
    """Whether at least :data:`COVERAGE` (half) of ``span``'s characters lie inside the
    ``kept`` spans (merged first, so overlapping spans count once): the rule for a gold sentence,
    a lexical-gap needle and a hard negative alike.

    Example:
        >>> span_covered((10, 20), [(0, 12), (14, 18)]), span_covered((10, 20), [(0, 14), (12, 14)])
        (True, False)
    """
    return covered_fraction(span, merge_spans(kept)) >= COVERAGE


HALVES = ("calibration", "test")
LEVAL_TASKS = ("natural_question", "scientific_qa", "multidoc_qa", "legal_contract_qa")
"""L-Eval tasks with short extractive answers found verbatim (after normalisation) in the document:
natural_question 105/109 questions, scientific_qa 71/184, legal_contract_qa 23/154 and multidoc_qa
20/158 (answers of at most 20 words). financial_qa (1/68), the multiple-choice tasks (letters) and
topic_retrieval_longchat (positional questions: "the first topic we discussed") do not fit."""

PASSAGE_SEPARATOR = "\n\n"


class Tokenizer(Protocol):
    def __call__(self, text: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class HotpotRecord:
    """One HotpotQA distractor question: ``gold`` are the two (title, sentences) paragraphs,
    ``supporting`` the supporting sentence indices of each gold paragraph."""

    id: str
    question: str
    answer: str
    gold: tuple[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...]]]
    supporting: tuple[tuple[int, ...], tuple[int, ...]]
    distractors: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class EvidenceSample:
    """One question over one text, with what counts as evidence.

    ``supporting`` holds ``(start, end, gold_paragraph)`` character spans of the supporting
    sentences in ``text`` (gold_paragraph 0 or 1); ``gold_passages`` the spans of the two gold
    paragraphs' text. Both are empty for L-Eval.
    """

    dataset: str
    id: str
    question: str
    answers: tuple[str, ...]
    text: str
    half: str
    task: str = ""
    target_tokens: int | None = None
    input_tokens: int = 0
    supporting: tuple[tuple[int, int, int], ...] = ()
    gold_passages: tuple[tuple[int, int], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def setting(self) -> str:
        """``hotpotqa-long 8K``-style label of the dataset and length."""
        if self.target_tokens is None:
            return self.dataset
        return f"{self.dataset} {token_label(self.target_tokens)}"


def token_label(tokens: int) -> str:
    """``8000`` -> ``"8K"``, ``131072`` -> ``"131K"``, ``500`` -> ``"500"``.

    Example:
        >>> token_label(32000), token_label(1024)
        ('32K', '1K')
    """
    return f"{round(tokens / 1000)}K" if tokens >= 1000 else str(tokens)


def format_passage(number: int, title: str, text: str) -> str:
    """A passage as LongBench's HotpotQA context writes it."""
    return f"Passage {number}:\n{title}\n{text}"


# ------------------------------------------------------------------------------------------ split
def split_halves(ids: Sequence[str], seed: int) -> dict[str, str]:
    """Each id's half: the ids (sorted, so input order does not matter) shuffled with ``seed``,
    then alternately calibration, test, calibration, ...

    Example:
        >>> halves = split_halves(["a", "b", "c", "d"], seed=0)
        >>> sorted(halves.values())
        ['calibration', 'calibration', 'test', 'test']
    """
    order = sorted(set(ids))
    random.Random(f"split:{seed}").shuffle(order)
    return {item: HALVES[position % 2] for position, item in enumerate(order)}


def split_order(ids: Sequence[str], seed: int) -> list[str]:
    """The ids in the seeded order :func:`split_halves` assigns halves in (used to take the first
    N questions of a half)."""
    order = sorted(set(ids))
    random.Random(f"split:{seed}").shuffle(order)
    return order


# ------------------------------------------------------------------------------------- HotpotQA
def load_hotpot_records(path: str | Path) -> list[HotpotRecord]:
    """The HotpotQA distractor sample (``camera_ready_nd8_dev_sample100.json``): paragraphs as
    sentence lists and supporting facts as sentence indices per gold paragraph."""
    file = Path(path)
    if not file.is_file():
        msg = f"HotpotQA file not found: {str(file)!r}"
        raise FileNotFoundError(msg)
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        msg = f"{file.name}: expected a JSON list of HotpotQA records, got {type(data).__name__}"
        raise ValueError(msg)
    records = []
    for index, raw in enumerate(data):
        try:
            facts = raw["supporting_facts"]
            record = HotpotRecord(
                id=str(raw["_id"]),
                question=str(raw["question"]).strip(),
                answer=str(raw["answer"]).strip(),
                gold=((raw["title_a"], tuple(raw["para_a"])), (raw["title_b"], tuple(raw["para_b"]))),
                supporting=(tuple(int(i) for i in facts[0]), tuple(int(i) for i in facts[1])),
                distractors=tuple((item[0], tuple(item[1])) for item in raw.get("distractors", [])),
            )
        except (KeyError, IndexError, TypeError, ValueError) as error:
            msg = f"{file.name} record {index}: not a HotpotQA distractor record with supporting_facts ({error!r})"
            raise ValueError(msg) from None
        for paragraph, indices in zip(record.gold, record.supporting, strict=True):
            if any(not 0 <= i < len(paragraph[1]) for i in indices):
                msg = f"{file.name} record {index}: supporting sentence {indices} outside paragraph {paragraph[0]!r}"
                raise ValueError(msg)
        records.append(record)
    return records


def _paragraph_text(sentences: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The paragraph text (sentences joined as HotpotQA gives them, stripped) and each sentence's
    span in it, without its surrounding whitespace."""
    joined = "".join(sentences)
    lead = len(joined) - len(joined.lstrip())
    text = joined.strip()
    spans = []
    offset = -lead
    for sentence in sentences:
        inner = sentence.strip()
        start = offset + (sentence.find(inner) if inner else 0)
        start = max(0, start)
        spans.append((start, min(len(text), start + len(inner))))
        offset += len(sentence)
    return text, spans


def build_hotpot_long(
    record: HotpotRecord,
    pool: Sequence[tuple[str, tuple[str, ...]]],
    tokenizer: Tokenizer,
    target_tokens: int,
    seed: int,
    half: str,
    costs: dict[str, int] | None = None,
) -> EvidenceSample:
    """The question's ten paragraphs plus paragraphs from ``pool`` (other titles only, in a seeded
    order that is the same for every length) until the next one would pass ``target_tokens``
    tokens; then every passage shuffled (seeded per question and length) and numbered.

    The gold paragraphs and supporting sentences are located as character spans in the result.
    ``costs`` caches each paragraph's token count by title (share it across calls).
    """
    sizes = {} if costs is None else costs
    own = [record.gold[0], record.gold[1], *record.distractors]
    own_titles = {title for title, _ in own}
    fillers = [p for p in pool if p[0] not in own_titles]
    random.Random(f"fill:{seed}:{record.id}").shuffle(fillers)

    def cost(paragraph: tuple[str, tuple[str, ...]]) -> int:
        if paragraph[0] not in sizes:
            body = format_passage(999, paragraph[0], "".join(paragraph[1]).strip())
            sizes[paragraph[0]] = len(tokenizer(PASSAGE_SEPARATOR + body, add_special_tokens=False)["input_ids"])
        return sizes[paragraph[0]]

    estimate = sum(cost(p) for p in own)
    chosen = list(own)
    for paragraph in fillers:
        size = cost(paragraph)
        if estimate + size > target_tokens:
            break
        chosen.append(paragraph)
        estimate += size
    layout = list(range(len(chosen)))
    random.Random(f"layout:{seed}:{record.id}:{target_tokens}").shuffle(layout)
    while True:
        text, spans = _assemble([chosen[i] for i in layout])
        tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if tokens <= target_tokens or len(layout) <= len(own):
            break
        last_filler = max(layout)  # fillers are indices >= len(own); drop the last one added
        layout.remove(last_filler)
    positions = {chosen_index: slot for slot, chosen_index in enumerate(layout)}
    supporting: list[tuple[int, int, int]] = []
    gold_passages: list[tuple[int, int]] = []
    for gold_index in (0, 1):
        body_start, body_end, sentence_spans = spans[positions[gold_index]]
        gold_passages.append((body_start, body_end))
        for sentence in record.supporting[gold_index]:
            start, end = sentence_spans[sentence]
            supporting.append((body_start + start, body_start + end, gold_index))
    return EvidenceSample(
        dataset="hotpotqa-long",
        id=record.id,
        question=record.question,
        answers=(record.answer,),
        text=text,
        half=half,
        target_tokens=target_tokens,
        input_tokens=tokens,
        supporting=tuple(supporting),
        gold_passages=tuple(gold_passages),
        metadata={
            "passages": len(layout),
            "gold_passage_numbers": [positions[0] + 1, positions[1] + 1],
            "gold_depths": [round(gold_passages[0][0] / len(text), 3), round(gold_passages[1][0] / len(text), 3)],
        },
    )


def _assemble(
    paragraphs: Sequence[tuple[str, tuple[str, ...]]],
) -> tuple[str, list[tuple[int, int, list[tuple[int, int]]]]]:
    """The passages joined, and per passage the span of its paragraph text and its sentences' spans
    (relative to the paragraph text)."""
    parts: list[str] = []
    where: list[tuple[int, int, list[tuple[int, int]]]] = []
    offset = 0
    for number, (title, sentences) in enumerate(paragraphs, 1):
        body, sentence_spans = _paragraph_text(sentences)
        passage = format_passage(number, title, body)
        if parts:
            parts.append(PASSAGE_SEPARATOR)
            offset += len(PASSAGE_SEPARATOR)
        body_start = offset + len(passage) - len(body)
        where.append((body_start, body_start + len(body), sentence_spans))
        parts.append(passage)
        offset += len(passage)
    return "".join(parts), where


def hotpot_pool(records: Sequence[HotpotRecord]) -> list[tuple[str, tuple[str, ...]]]:
    """Every paragraph of every question, one per title (first seen), in file order."""
    pool: dict[str, tuple[str, ...]] = {}
    for record in records:
        for title, sentences in (*record.gold, *record.distractors):
            pool.setdefault(title, sentences)
    return list(pool.items())


def hotpot_samples(
    path: str | Path,
    tokenizer: Tokenizer,
    lengths: Sequence[int],
    seed: int,
    split: str = "all",
    limit: int | None = None,
) -> list[EvidenceSample]:
    """HotpotQA-long samples for every length, in split order (the first ``limit`` questions of the
    chosen half, or of both halves alternately for ``split="all"``)."""
    records = load_hotpot_records(path)
    halves = split_halves([r.id for r in records], seed)
    by_id = {r.id: r for r in records}
    order = [i for i in split_order(list(by_id), seed) if split == "all" or halves[i] == split]
    if limit is not None:
        order = order[:limit]
    pool = hotpot_pool(records)
    return [build_hotpot_long(by_id[i], pool, tokenizer, length, seed, halves[i]) for length in lengths for i in order]


# ---------------------------------------------------------------------------------------- L-Eval
def answer_in_text(answers: Sequence[str], text: str) -> bool:
    """Whether a normalised answer (LongBench normalisation: case, punctuation, articles, spaces)
    occurs in the normalised text as whole words (``"10"`` is not found in ``"2010"``).

    Example:
        >>> answer_in_text(["The Eiffel Tower"], "He saw the eiffel  tower, twice.")
        True
        >>> answer_in_text(["10"], "In 2010.")
        False
    """
    haystack = f" {normalize_answer(text)} "
    return any((needle := normalize_answer(answer)) != "" and f" {needle} " in haystack for answer in answers)


def leval_samples(
    folder: str | Path,
    tokenizer: Tokenizer,
    seed: int,
    tasks: Sequence[str] = LEVAL_TASKS,
    questions: int = 80,
    max_document_tokens: int | None = 32000,
    max_answer_words: int = 20,
    split: str = "all",
) -> list[EvidenceSample]:
    """A seeded sample of about ``questions`` L-Eval questions, spread evenly over ``tasks``.

    The eligible pool of a task is every question whose gold answer (at most ``max_answer_words``
    normalised words) occurs in its document (:func:`answer_in_text`); halves are assigned per
    task over its pool (so a question's half depends on neither the other tasks, nor the sample
    size, nor the length cap); then
    documents over ``max_document_tokens`` are dropped and questions are taken from the tasks in
    turn, each in its seeded order, until ``questions`` are taken (a task with fewer leaves its
    share to the others). ``split`` then keeps one half of that selection, so a half's questions
    are the same whichever split a run asks for.
    """
    root = Path(folder)
    pools: dict[str, list[tuple[str, str, str, int]]] = {}
    documents: dict[tuple[str, int], str] = {}
    for task in tasks:
        file = root / f"{task}.jsonl"
        if not file.is_file():
            msg = f"L-Eval task file not found: {str(file)!r} (tasks: {list(tasks)})"
            raise FileNotFoundError(msg)
        pool: list[tuple[str, str, str, int]] = []
        for line_number, line in enumerate(file.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            record = json.loads(line)
            document = str(record["input"])
            documents[(task, line_number)] = document
            for number, (question, output) in enumerate(zip(record["instructions"], record["outputs"], strict=False)):
                answer = str(output).strip()
                if len(normalize_answer(answer).split()) > max_answer_words or not answer_in_text([answer], document):
                    continue
                pool.append((f"{task}-{line_number}-{number}", str(question).strip(), answer, line_number))
        pools[task] = pool
    halves = {item: half for pool in pools.values() for item, half in split_halves([x[0] for x in pool], seed).items()}
    lengths: dict[tuple[str, int], int] = {}
    queues: dict[str, list[tuple[str, str, str, int]]] = {}
    for task, pool in pools.items():
        by_id = {item[0]: item for item in pool}
        ordered = [by_id[i] for i in split_order(list(by_id), seed)]
        kept = []
        for item in ordered:
            key = (task, item[3])
            if key not in lengths:
                lengths[key] = len(tokenizer(documents[key], add_special_tokens=False)["input_ids"])
            if max_document_tokens is None or lengths[key] <= max_document_tokens:
                kept.append(item)
        queues[task] = kept
    taken: list[EvidenceSample] = []
    while len(taken) < questions and any(queues.values()):
        for task in tasks:
            if queues[task] and len(taken) < questions:
                sample_id, question, answer, line_number = queues[task].pop(0)
                taken.append(
                    EvidenceSample(
                        dataset="leval",
                        id=sample_id,
                        question=question,
                        answers=(answer,),
                        text=documents[(task, line_number)],
                        half=halves[sample_id],
                        task=task,
                        input_tokens=lengths[(task, line_number)],
                    )
                )
    return [sample for sample in taken if split == "all" or sample.half == split]
