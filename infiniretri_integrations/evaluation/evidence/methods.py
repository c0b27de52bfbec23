"""The evidence benchmark's methods: each chooses among the same units of a sample's text and
fills each token budget by the same rule (:func:`~infiniretri_integrations.core.scoring.fill_budget`:
units in score order, each taken if it still fits, returned in document order).

A method is a :class:`MethodSpec`; its ``run(bench, sample, budgets, options)`` reads what it needs
(units, embeddings, the engine) from a :class:`Bench` (the runner's
:class:`~infiniretri_integrations.evaluation.evidence.runner.EvidenceBench`).

Example:
    >>> sorted(METHODS) == sorted(["infiniretri", "reference", *CHEAP_METHODS])
    True
    >>> base_method("infiniretri[l12]")
    'infiniretri'
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from infiniretri_integrations.evaluation.evidence.data import COVERAGE, Span
from infiniretri_integrations.evaluation.evidence.metrics import covered_fraction, locate_pieces, merge_spans
from infiniretri_integrations.evaluation.evidence_data import EvidenceSample

if TYPE_CHECKING:
    from infiniretri_integrations.core.types import Sentence


class Bench(Protocol):
    """What a method reads from the run's shared state (implemented by
    :class:`~infiniretri_integrations.evaluation.evidence.runner.EvidenceBench`)."""

    seed: int

    @property
    def tokenizer(self) -> Any:
        """The reader's tokenizer (it measures every budget)."""
        ...

    @property
    def engine(self) -> Any:
        """The :class:`~infiniretri_integrations.core.engine.InfiniRetriEngine` of the run."""
        ...

    def sentence_objects(self, sample: EvidenceSample) -> list[Sentence]:
        """The engine's sentences of the sample's text."""
        ...

    def sentences(self, sample: EvidenceSample) -> list[tuple[int, int, int]]:
        """``(start, end, tokens)`` of every sentence."""
        ...

    def chunks(self, sample: EvidenceSample) -> list[tuple[int, int, int]]:
        """``(start, end, tokens)`` of every chunk of the chunk methods."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Normalised MiniLM embeddings of ``texts``."""
        ...

    def shared_retrieval(self, sample: EvidenceSample, budget: int, options: dict[str, Any]) -> tuple[Any, float, int]:
        """The sample's result of one ``share_context`` call over its text's questions, its
        seconds, and how many questions shared it."""
        ...

    def final_variant(self, sample: EvidenceSample, budget: int, options: dict[str, Any]) -> tuple[Any, Any, float]:
        """``(sentences, stats, seconds)`` of the engine with ``options`` and ``token_budget=budget``
        on the sample, variants that differ only in their final options sharing one chunk loop."""
        ...

    def reference_kept_text(self, sample: EvidenceSample) -> str:
        """The text the authors' package keeps for the sample."""
        ...


def rank_by_scores(scores: Sequence[float]) -> list[int]:
    """Indices by descending score; ties keep document order: the order in which
    :func:`~infiniretri_integrations.core.scoring.fill_budget` takes units.

    Example:
        >>> rank_by_scores([0.5, 0.9, 0.5, 0.1])
        [1, 0, 2, 3]
    """
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


@dataclass
class Selection:
    """What a method kept for one question at one budget (``None``: no budget, as kept)."""

    spans: list[Span]
    kept_tokens: int
    units: int
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


MethodFn = Callable[["Bench", EvidenceSample, Sequence[int], dict[str, Any]], dict[int | None, Selection]]


@dataclass(frozen=True)
class MethodSpec:
    """A method of the benchmark: ``run(bench, sample, budgets, options)`` returns one selection
    per budget; ``needs`` names optional pieces it loads (checked before a run)."""

    run: MethodFn
    description: str
    needs: tuple[str, ...] = ()


Scorer = Callable[["Bench", EvidenceSample, list[str]], list[float]]


def units_kept(
    units: Sequence[tuple[int, int, int]], chosen: Sequence[int], seconds: float, extra: dict[str, Any] | None = None
) -> Selection:
    """The :class:`Selection` of the ``chosen`` indices of ``(start, end, tokens)`` units.

    Example:
        >>> units_kept([(0, 5, 2), (6, 9, 1), (10, 20, 4)], [0, 2], 0.5)
        Selection(spans=[(0, 5), (10, 20)], kept_tokens=6, units=2, seconds=0.5, extra={})
    """
    return Selection(
        spans=[(units[i][0], units[i][1]) for i in chosen],
        kept_tokens=sum(units[i][2] for i in chosen),
        units=len(chosen),
        seconds=seconds,
        extra=dict(extra or {}),
    )


def _ranked(scorer: Scorer, granularity: str) -> MethodFn:
    """A method that scores units of ``granularity`` ("sentences" or "chunks") once and fills every
    budget from that ranking."""

    def run(
        bench: Bench, sample: EvidenceSample, budgets: Sequence[int], options: dict[str, Any]
    ) -> dict[int | None, Selection]:
        from infiniretri_integrations.core.scoring import fill_budget

        started = time.perf_counter()
        units = bench.sentences(sample) if granularity == "sentences" else bench.chunks(sample)
        texts = [sample.text[s:e] for s, e, _ in units]
        scores = scorer(bench, sample, texts)
        sizes = [size for _, _, size in units]
        seconds = time.perf_counter() - started
        selections: dict[int | None, Selection] = {}
        for budget in budgets:
            selections[budget] = units_kept(units, fill_budget(scores, sizes, budget), seconds)
        return selections

    return run


def _bm25_scores(bench: Bench, sample: EvidenceSample, texts: list[str]) -> list[float]:
    import bm25s

    corpus = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
    query = bm25s.tokenize([sample.question], stopwords="en", return_ids=False, show_progress=False)[0]
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)
    if not query:
        return [0.0] * len(texts)
    return [float(x) for x in index.get_scores(query)]


def _bm25_passage_scores(bench: Bench, sample: EvidenceSample, texts: list[str]) -> list[float]:
    from infiniretri_integrations.core.lexical import bm25_passage_scores

    return bm25_passage_scores(bench.sentence_objects(sample), sample.question)


def _minilm_scores(bench: Bench, sample: EvidenceSample, texts: list[str]) -> list[float]:
    vectors = bench.embed(texts)
    query = bench.embed([sample.question])[0]
    return [float(sum(a * b for a, b in zip(row, query, strict=True))) for row in vectors]


def _random_scores(bench: Bench, sample: EvidenceSample, texts: list[str]) -> list[float]:
    rng = random.Random(f"random:{bench.seed}:{sample.dataset}:{sample.id}:{sample.target_tokens}")
    return [rng.random() for _ in texts]


def _infiniretri(
    bench: Bench, sample: EvidenceSample, budgets: Sequence[int], options: dict[str, Any]
) -> dict[int | None, Selection]:
    """The engine through its chunk loop, one exact result per budget. Budgets up to the engine's
    budgeted pass floor (``working_set_tokens``, else ``DEFAULT_WORKING_SET_TOKENS``) run the very
    same passes and differ only in the final selection, so one recorded chunk loop serves them
    all (:meth:`Bench.final_variant`); with ``share_context`` one run at the largest of them is
    cut to each (:func:`cut_to_budgets`)."""
    from infiniretri_integrations.core.selection import budgeted_pass_floor

    options = dict(options)
    share_context = bool(options.pop("share_context", False))
    selections: dict[int | None, Selection] = {}
    if share_context:
        working = budgeted_pass_floor(bench.engine.config.replace(**options))
        shared = sorted(b for b in budgets if b <= working)
        for run_budgets in [*([shared] if shared else []), *([b] for b in budgets if b > working)]:
            result, seconds, sharing = bench.shared_retrieval(sample, max(run_budgets), options)
            extra = {
                "scoring_layers": list(result.stats.scoring_layers),
                "chunks": result.stats.chunks,
                "questions_sharing": sharing,
                "shared_run_budget": max(run_budgets),
            }
            for budget, kept in cut_to_budgets(result.sentences, run_budgets).items():
                selections[budget] = _selection(kept, seconds, extra)
        return selections
    for budget in budgets:
        sentences, stats, seconds = bench.final_variant(sample, budget, options)
        extra = {"scoring_layers": list(stats.scoring_layers), "chunks": stats.chunks}
        selections[budget] = _selection(sentences, seconds, extra)
    return selections


def _selection(kept: Sequence[Any], seconds: float, extra: dict[str, Any]) -> Selection:
    return Selection(
        spans=[(s.start, s.end) for s in kept],
        kept_tokens=sum(s.token_count for s in kept),
        units=len(kept),
        seconds=seconds,
        extra=dict(extra),
    )


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
    bench: Bench, sample: EvidenceSample, budgets: Sequence[int], options: dict[str, Any]
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
        chosen = in_document_order(inside, sizes, budget)
        selections[budget] = units_kept(units, chosen, seconds, {"cut": "reference-kept sentences in document order"})
    return selections


def in_document_order(indices: Sequence[int], sizes: Sequence[int], budget: int) -> list[int]:
    """The budget rule on units without scores: ``indices`` taken in document order while they fit
    in ``budget`` tokens (a unit that does not fit is skipped, later smaller ones may still fit).

    Example:
        >>> in_document_order([0, 2, 3], [4, 9, 5, 2], 8)
        [0, 3]
    """
    from infiniretri_integrations.core.scoring import fill_budget

    chosen = fill_budget([0.0] * len(indices), [sizes[i] for i in indices], budget)
    return [indices[j] for j in chosen]


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
