"""The retrieval loop: read documents chunk by chunk, keep the sentences the question attends to."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

from infiniretri_integrations.core.answering import AnswerStream, answer_from, answer_prompt, stream_from
from infiniretri_integrations.core.attention import (
    batched_question_attention,
    question_attention,
    resolve_layers,
    shared_prefix_attention,
)
from infiniretri_integrations.core.chunking import pack_chunks
from infiniretri_integrations.core.config import DEFAULT_CHUNK_SIZE, HeadSelection, RetrievalConfig, is_head_pairs
from infiniretri_integrations.core.lexical import lexical_signal
from infiniretri_integrations.core.models import LocalModel, as_local_model
from infiniretri_integrations.core.progress import progress_bar
from infiniretri_integrations.core.prompting import PromptLayout, build_layout
from infiniretri_integrations.core.scoring import (
    content_free_scores,
    context_scores,
    fill_budget,
    question_weights,
    rank_fusion,
    select_sentences,
    token_sentence_index,
)
from infiniretri_integrations.core.segmentation import SentenceSplitter, clean_for_tokenizer, segment_documents
from infiniretri_integrations.core.types import (
    Answer,
    ChunkProgress,
    ForwardPass,
    RetrievalCancelled,
    RetrievalResult,
    RetrievalStats,
    RetrievedSentence,
    Sentence,
    SourceDocument,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DocumentLike = str | SourceDocument | Mapping[str, Any]
ProgressCallback = Callable[[ChunkProgress, list[RetrievedSentence]], None]
ForwardHook = Callable[[ForwardPass], None]


@dataclass
class _Kept:
    sentence: Sentence
    score: float


class InfiniRetriEngine:
    """Attention-driven sentence retrieval (InfiniRetri) over any number of documents.

    The model is loaded lazily on first use unless given; one model object is shared safely by
    any number of engines and threads.

    Args:
        model: a :class:`LocalModel`, a transformers causal LM (then pass ``tokenizer``), a local
            path / ``.gguf`` file, or ``None`` for the packaged default (SmolLM2-135M-Instruct).
        tokenizer: the tokenizer of a ready-built ``model``.
        scoring_model, scoring_tokenizer: a separate model whose attention scores (same forms as
            ``model``; ``None``: ``model`` scores and answers). ``model`` still answers, and
            ``token_budget`` and ``token_count`` are in ``model``'s tokens, so the budget is what
            the answering model reads.
        config: retrieval hyperparameters; keyword arguments override single fields.
        device, dtype: used only when the engine loads the model itself.
        max_context_tokens: prompt length limit (default: the model's window).
        show_progress: progress bar over chunks (``None``: only on an interactive terminal).
        on_forward: called with a :class:`ForwardPass` before every scoring forward pass (what
            is fed to the model); benchmarks and tests use it to see the exact sequences.
        sentence_splitter: a function from a text to its sentences' character spans (pysbd,
            NLTK punkt, ...) instead of the built-in splitter; spans are widened to cover the text.

    Example:
        >>> engine = InfiniRetriEngine(top_k=100)  # doctest: +SKIP
        >>> result = engine.retrieve(["...long text..."], "What is the best thing to do in San Francisco?")  # doctest: +SKIP
        >>> [s.text for s in result.sentences]  # doctest: +SKIP
    """

    def __init__(
        self,
        model: LocalModel | PreTrainedModel | str | os.PathLike[str] | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        scoring_model: LocalModel | PreTrainedModel | str | os.PathLike[str] | None = None,
        scoring_tokenizer: PreTrainedTokenizerBase | None = None,
        config: RetrievalConfig | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_context_tokens: int | None = None,
        show_progress: bool | None = None,
        on_forward: ForwardHook | None = None,
        sentence_splitter: SentenceSplitter | None = None,
        **config_overrides: Any,
    ) -> None:
        base = config or RetrievalConfig()
        self.config = base.replace(**config_overrides) if config_overrides else base
        if max_context_tokens is not None and (not isinstance(max_context_tokens, int) or max_context_tokens <= 0):
            msg = f"max_context_tokens must be a positive integer, got {max_context_tokens!r}"
            raise ValueError(msg)
        self.max_context_tokens = max_context_tokens
        self.show_progress = show_progress
        self.on_forward = on_forward
        self.sentence_splitter = sentence_splitter
        self._device = device
        self._dtype = dtype
        self._model_source = model
        self._tokenizer = tokenizer
        for name, value in (("model", model), ("scoring_model", scoring_model)):
            if isinstance(value, (int, float, bool, bytes, list, tuple, dict)):
                msg = (
                    f"{name} must be a LocalModel, a transformers causal LM (with its tokenizer), a local folder "
                    f"or .gguf path, or None for the packaged default; got {type(value).__name__}: {value!r:.80}"
                )
                raise TypeError(msg)
        self._local: LocalModel | None = model if isinstance(model, LocalModel) else None
        if self._local is None and model is not None and not isinstance(model, (str, os.PathLike)):
            self._local = as_local_model(model, tokenizer)
        self._loading = threading.Lock()
        self._scoring_source = scoring_model
        self._scoring_tokenizer = scoring_tokenizer
        self._scoring: LocalModel | None = scoring_model if isinstance(scoring_model, LocalModel) else None
        if self._scoring is None and scoring_model is not None and not isinstance(scoring_model, (str, os.PathLike)):
            self._scoring = as_local_model(scoring_model, scoring_tokenizer)

    @property
    def local_model(self) -> LocalModel:
        """The model and tokenizer, loaded on first access (once, whatever the number of threads)."""
        if self._local is None:
            with self._loading:
                if self._local is None:
                    self._local = as_local_model(
                        self._model_source,  # type: ignore[arg-type]
                        self._tokenizer,
                        device=self._device,
                        dtype=self._dtype,
                    )
        return self._local

    @property
    def scoring_local_model(self) -> LocalModel:
        """The model whose attention scores: ``scoring_model`` (loaded on first access), else
        :attr:`local_model`."""
        if self._scoring_source is None:
            return self.local_model
        if self._scoring is None:
            with self._loading:
                if self._scoring is None:
                    self._scoring = as_local_model(
                        self._scoring_source,  # type: ignore[arg-type]
                        self._scoring_tokenizer,
                        device=self._device,
                        dtype=self._dtype,
                    )
        return self._scoring

    @property
    def model_loaded(self) -> bool:
        return self._local is not None

    def scoring_layers(self, config: RetrievalConfig | None = None) -> tuple[int, ...]:
        """The layer indices that score, after resolving ``None``/``"auto"``/negative indices."""
        return self.scoring_setup(config)[0]

    def scoring_setup(self, config: RetrievalConfig | None = None) -> tuple[tuple[int, ...], HeadSelection]:
        """``(layers, heads)`` that score: ``"auto"`` takes both from the model's calibration
        (heads only where ``scoring_heads`` is unset); ``None`` the model's known default layer
        (the last layer for unknown models). ``(layer, head)`` pairs set the layers themselves
        (returned with their layers resolved)."""
        cfg = config or self.config
        lm = self.scoring_local_model
        spec = cfg.scoring_layer
        heads = cfg.scoring_heads
        if spec == "auto":
            from infiniretri_integrations.core.calibration import calibrated_scoring

            spec, calibrated_heads = calibrated_scoring(lm)
            heads = heads if heads is not None else calibrated_heads
            if is_head_pairs(heads):
                spec = None  # the pairs name their layers
        if heads is not None and is_head_pairs(heads):
            given = cast("tuple[tuple[int, int], ...]", heads)
            pairs = tuple((resolve_layers(layer, lm.num_layers)[0], head) for layer, head in given)
            layers = tuple(sorted({layer for layer, _ in pairs}))
            if spec is not None and resolve_layers(spec, lm.num_layers) != layers:  # type: ignore[arg-type]
                msg = (
                    f"scoring_heads pairs {list(heads)} score layers {list(layers)}, but scoring_layer is {spec!r}; "
                    "leave scoring_layer unset (or 'auto') with (layer, head) pairs"
                )
                raise ValueError(msg)
            return layers, pairs
        if spec is None:
            spec = lm.default_scoring_layer if lm.default_scoring_layer is not None else -1
        return resolve_layers(spec, lm.num_layers), heads  # type: ignore[arg-type]

    # ------------------------------------------------------------------ retrieval
    def retrieve(
        self,
        documents: Iterable[DocumentLike] | DocumentLike,
        question: str,
        *,
        on_progress: ProgressCallback | None = None,
        on_forward: ForwardHook | None = None,
        cancel: threading.Event | None = None,
        **overrides: Any,
    ) -> RetrievalResult:
        """Read ``documents`` chunk by chunk and return the sentences the question attends to.

        Args:
            documents: texts, :class:`SourceDocument` objects or mappings with ``text`` (or
                ``page_content``) and optional ``id``/``metadata``. Empty or whitespace-only
                documents are skipped and listed in ``stats.skipped_documents``.
            question: the question (non-empty).
            on_progress: called after each chunk with the progress and the current cache.
            on_forward: called before each scoring forward pass (overrides the engine's hook).
            cancel: an event checked before every pass; once set, the call raises
                :class:`RetrievalCancelled` (async adapters set it when their task is cancelled).
            **overrides: per-call :class:`RetrievalConfig` fields.

        Returns:
            The kept sentences in document order with scores and character spans, and statistics.
        """
        (result,) = self._run(documents, [question], overrides, on_progress, on_forward, cancel, False, 1)
        return result

    def retrieve_many(
        self,
        documents: Iterable[DocumentLike] | DocumentLike,
        questions: Sequence[str],
        *,
        share_context: bool = False,
        batch_size: int | None = None,
        on_forward: ForwardHook | None = None,
        cancel: threading.Event | None = None,
        **overrides: Any,
    ) -> list[RetrievalResult]:
        """Several questions over the same documents, reading them once.

        The documents are segmented and tokenized once. By default every question keeps its own
        working set and the passes of up to ``batch_size`` questions over a chunk run as ONE
        batched forward (right-padded: attention is causal, so padding changes no score); the
        results equal one :meth:`retrieve` call per question.

        With ``share_context=True`` the questions share the context of each pass: one working set
        (the union of every question's kept sentences, each question holding an equal share of
        the room) and the chunk are encoded once, and each question then runs alone over that
        encoding. A pass then costs about one question's, whatever the number of questions; the
        selection differs from :meth:`retrieve` (a question also sees the others' kept
        sentences, and keeps fewer of its own between passes).

        Args:
            documents: as for :meth:`retrieve`.
            questions: the questions (a sequence of non-empty strings).
            share_context: share each pass's context encoding among the questions (see above).
            batch_size: questions per batched forward (default: 4 on an accelerator, 1 on a CPU,
                where a batched forward costs as much as the separate ones and padding adds to
                it: measured 1.1x slower at 4 questions over 32K tokens); ignored with ``share_context``
                and with ``content_free`` (one question at a time).
            on_forward: called before each scoring forward pass, once per question in a batch.
            cancel: as for :meth:`retrieve`.
            **overrides: per-call :class:`RetrievalConfig` fields, the same for every question.

        Returns:
            One :class:`RetrievalResult` per question, in the order of ``questions``;
            ``stats.seconds`` is the time of the whole call.

        Example:
            >>> results = engine.retrieve_many(docs, ["Who founded it?", "When?"])  # doctest: +SKIP
            >>> [len(r.sentences) for r in results]  # doctest: +SKIP
        """
        if isinstance(questions, str) or not isinstance(questions, Sequence):
            msg = (
                f"questions must be a sequence of strings (a list), got {type(questions).__name__}: "
                f"{questions!r:.80}; use retrieve() for one question"
            )
            raise TypeError(msg)
        if batch_size is not None and (
            not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0
        ):
            msg = f"batch_size must be a positive integer or None, got {batch_size!r}"
            raise ValueError(msg)
        if not questions:
            return []
        return self._run(
            documents,
            list(questions),
            overrides,
            None,
            on_forward,
            cancel,
            share_context,
            batch_size or self._default_batch_size(),
        )

    def _default_batch_size(self) -> int:
        return 1 if self.scoring_local_model.device.type == "cpu" else DEFAULT_BATCH_SIZE

    def _run(
        self,
        documents: Iterable[DocumentLike] | DocumentLike,
        questions: list[str],
        overrides: Mapping[str, Any],
        on_progress: ProgressCallback | None,
        on_forward: ForwardHook | None,
        cancel: threading.Event | None,
        share_context: bool,
        batch_size: int,
    ) -> list[RetrievalResult]:
        started = time.perf_counter()
        docs = normalize_documents(documents)
        questions = [validate_question(q) for q in questions]
        cfg = self.config.replace(**overrides) if overrides else self.config
        lm = self.scoring_local_model
        layers, heads = self.scoring_setup(cfg)
        layouts = [build_layout(lm.tokenizer, cfg, q) for q in questions]
        cfg = self._fit_default_chunk(cfg, max(layouts, key=lambda layout: layout.fixed_tokens))
        budgets = [self._cache_budget(cfg, layout, q) for layout, q in zip(layouts, questions, strict=True)]
        if share_context:
            budgets = [min(budgets) // len(questions)] * len(questions)

        skipped = [i for i, doc in enumerate(docs) if not doc.text.strip()]
        per_document = segment_documents(
            [doc.text for doc in docs], lm.tokenizer, cfg.max_sentence_tokens, self.sentence_splitter
        )
        sentences = [s for doc_sentences in per_document for s in doc_sentences]
        chunks = pack_chunks(sentences, cfg.chunk_size)
        total_tokens = sum(s.token_count for s in sentences)
        if skipped:
            logger.info("Skipped %d empty document(s): %s", len(skipped), skipped)

        hook = on_forward or self.on_forward
        runs = [
            _QuestionRun(
                question,
                budget,
                _PassScorer(lm, cfg, layout, layers, heads, hook),
                _lexical_scores(sentences, question, cfg),
            )
            for question, layout, budget in zip(questions, layouts, budgets, strict=True)
        ]
        read = 0
        bar = self._progress_bar(len(chunks))
        try:
            for index, chunk in enumerate(chunks):
                if cancel is not None and cancel.is_set():
                    msg = f"retrieval cancelled before pass {index + 1} of {len(chunks)}"
                    raise RetrievalCancelled(msg)
                if share_context:
                    _shared_pass(runs, index, chunk, cfg)
                elif cfg.content_free or batch_size == 1:
                    for run in runs:
                        candidates = run.candidates(chunk)
                        scores, run.weights = run.scorer.score(index, _ids(candidates), run.weights)
                        run.keep(candidates, scores, cfg)
                else:
                    for group in (runs[i : i + batch_size] for i in range(0, len(runs), batch_size)):
                        _batched_pass(group, index, chunk, cfg)
                read += sum(s.token_count for s in chunk)
                logger.debug("chunk %d/%d: kept %s sentences", index + 1, len(chunks), [len(r.cache) for r in runs])
                bar.update(1)
                if on_progress is not None:
                    cache = runs[0].cache
                    on_progress(
                        ChunkProgress(
                            chunk_index=index,
                            chunk_count=len(chunks),
                            tokens_read=read,
                            tokens_total=total_tokens,
                            cached_sentences=len(cache),
                            cached_tokens=sum(k.sentence.token_count for k in cache),
                        ),
                        [_retrieved(k, docs, k.sentence.token_count) for k in cache],
                    )
        finally:
            bar.close()

        reader_tokens = self._reader_token_counts(sentences)
        results = []
        for run in runs:
            cache = run.cache
            if run.lexical and cfg.fusion_stage == "final":
                amount = cfg.token_budget or sum(reader_tokens(k.sentence) for k in cache)
                cache = _fuse_final(run.attention, run.lexical, cfg, amount, reader_tokens)
            if cfg.token_budget is not None:
                cache = _fit_budget(cache, cfg.token_budget, reader_tokens)
            retrieved = [_retrieved(k, docs, reader_tokens(k.sentence)) for k in cache]
            stats = RetrievalStats(
                documents=len(docs),
                skipped_documents=list(skipped),
                sentences=len(sentences),
                input_tokens=total_tokens,
                chunks=len(chunks),
                scoring_layers=layers,
                kept_sentences=len(retrieved),
                kept_tokens=sum(s.token_count for s in retrieved),
                seconds=time.perf_counter() - started,
            )
            logger.info(
                "Read %d tokens in %d chunks, kept %d sentences (%d tokens) in %.1fs",
                stats.input_tokens,
                stats.chunks,
                stats.kept_sentences,
                stats.kept_tokens,
                stats.seconds,
            )
            results.append(RetrievalResult(question=run.question, sentences=retrieved, stats=stats, documents=docs))
        return results

    def _reader_token_counts(self, sentences: Sequence[Sentence]) -> Callable[[Sentence], int]:
        """Sentence sizes in the answering model's tokens (the scoring model's when it answers too)."""
        if self._scoring_source is None or self.scoring_local_model is self.local_model:
            return _scoring_tokens
        tokenizer = self.local_model.tokenizer
        counts = {
            sentence: len(ids)
            for sentence, ids in zip(
                sentences,
                tokenizer([s.text for s in sentences], add_special_tokens=False)["input_ids"] if sentences else [],
                strict=True,
            )
        }
        return counts.__getitem__

    def _fit_default_chunk(self, cfg: RetrievalConfig, layout: PromptLayout) -> RetrievalConfig:
        """The default chunk size, lowered for a window that cannot hold it beside the prompt and
        a working set; an explicit ``chunk_size`` is left to :meth:`_cache_budget` to check."""
        window = self.max_context_tokens or self.scoring_local_model.context_window
        room = window - layout.fixed_tokens
        if cfg.chunk_size != DEFAULT_CHUNK_SIZE or room >= DEFAULT_CHUNK_SIZE + BUDGET_WORKING_SET_TOKENS or room < 2:
            return cfg
        chunk = max(room // 2, min(room - 1, 64))
        return cfg.replace(chunk_size=chunk, max_sentence_tokens=min(cfg.max_sentence_tokens, chunk))

    def _cache_budget(self, cfg: RetrievalConfig, layout: PromptLayout, question: str) -> int:
        window = self.max_context_tokens or self.scoring_local_model.context_window
        fixed = layout.fixed_tokens
        if fixed >= window:
            msg = (
                f"The question and prompt template take {fixed} tokens (question: {len(layout.question)}), "
                f"which does not fit the model window of {window} tokens; shorten the question {question[:80]!r}..."
            )
            raise ValueError(msg)
        if fixed >= cfg.chunk_size:
            msg = (
                f"chunk_size ({cfg.chunk_size}) must be larger than the question and prompt template "
                f"({fixed} tokens); raise chunk_size or shorten the question"
            )
            raise ValueError(msg)
        if cfg.chunk_size + fixed > window:
            msg = (
                f"chunk_size ({cfg.chunk_size}) plus the question and template ({fixed} tokens) exceeds the "
                f"model window ({window} tokens); use chunk_size <= {window - fixed}"
            )
            raise ValueError(msg)
        budget = window - cfg.chunk_size - fixed
        return min(budget, cfg.max_cache_tokens) if cfg.max_cache_tokens is not None else budget

    def _progress_bar(self, total: int) -> Any:
        enabled = self.show_progress if self.show_progress is not None else (None if total > 1 else False)
        return progress_bar(total, "InfiniRetri", enabled, unit="chunk")

    # ------------------------------------------------------------------ answering (core/answering.py)
    def build_answer_prompt(self, context: str, question: str, **overrides: Any) -> list[int]:
        """Token ids of the answering prompt for ``context`` and ``question``."""
        return answer_prompt(self, context, validate_question(question), **overrides)

    def answer_from(
        self,
        retrieval: RetrievalResult | str,
        question: str | None = None,
        *,
        stop: Sequence[str] | str | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Answer:
        """Answer from an existing retrieval (or any context string) with the local model.

        ``stop``: extra stop strings; ``generate_kwargs``: passed to ``model.generate``.
        """
        return answer_from(self, retrieval, question, stop=stop, generate_kwargs=generate_kwargs, **overrides)

    def answer(
        self,
        documents: Iterable[DocumentLike] | DocumentLike,
        question: str,
        *,
        stop: Sequence[str] | str | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Answer:
        """Retrieve, then answer from the kept sentences with the same model.

        Example:
            >>> engine.answer(["Alice lives in Paris. Bob lives in Rome."], "Where does Bob live?").text  # doctest: +SKIP
            'Bob lives in Rome.'
        """
        result = self.retrieve(documents, question, **overrides)
        return self.answer_from(result, question, stop=stop, generate_kwargs=generate_kwargs, **overrides)

    def stream_from(
        self,
        retrieval: RetrievalResult | str,
        question: str | None = None,
        *,
        stop: Sequence[str] | str | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Iterator[str]:
        """Stream the answer's text pieces for an existing retrieval (or context string)."""
        return stream_from(self, retrieval, question, stop=stop, generate_kwargs=generate_kwargs, **overrides)

    def stream_answer(
        self,
        documents: Iterable[DocumentLike] | DocumentLike,
        question: str,
        *,
        stop: Sequence[str] | str | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> AnswerStream:
        """Retrieve, then stream the answer; the returned iterator also carries ``.retrieval``."""
        result = self.retrieve(documents, question, **overrides)
        pieces = self.stream_from(result, question, stop=stop, generate_kwargs=generate_kwargs, **overrides)
        return AnswerStream(result, pieces)


BUDGET_WORKING_SET_TOKENS = 1024
"""With ``token_budget``, each pass carries at least this many tokens to the next (unless
``max_cache_tokens`` says otherwise), so that a small budget still lets later chunks compete with
a working set; the final result is cut to the budget by the last pass's scores."""


def working_set_tokens(cfg: RetrievalConfig) -> int:
    """Tokens each budgeted pass carries at least: ``max_cache_tokens``, else
    :data:`BUDGET_WORKING_SET_TOKENS`. Budgets up to this size run the very same passes and
    differ only in the final cut."""
    return cfg.max_cache_tokens or BUDGET_WORKING_SET_TOKENS


SHAPE_BUCKET = 64
"""Scoring passes are right-padded to a multiple of this many tokens. Padding after the last real
token changes no score (attention is causal), and a few dozen distinct sequence lengths, instead
of one per chunk, keep the kernels' per-shape caches (oneDNN primitives, allocator blocks) small."""


class _PassScorer:
    """Scores the context tokens of one pass: question-row attention (or, with ``content_free``,
    its excess over a content-free question's, on one shared encoding of the context)."""

    def __init__(
        self,
        lm: LocalModel,
        cfg: RetrievalConfig,
        layout: PromptLayout,
        layers: tuple[int, ...],
        heads: HeadSelection,
        hook: ForwardHook | None,
    ) -> None:
        self.lm, self.cfg, self.layout, self.layers, self.heads, self.hook = lm, cfg, layout, layers, heads, hook
        self.pad_id = _pad_token_id(lm)
        self.neutral = (
            torch.tensor([[*build_layout(lm.tokenizer, cfg, CONTENT_FREE_QUESTION).question, *layout.tail]])
            if cfg.content_free
            else None
        )

    def score(
        self, index: int, context_ids: list[int], weights: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``([context tokens] scores, question weights)``; weights are computed on the first pass."""
        ids, context_start, context_end, question_start = self.layout.assemble(context_ids)
        if self.neutral is None:
            fed = _bucketed(ids, self.pad_id)
            if self.hook is not None:
                self.hook(ForwardPass(index, fed, len(ids), question_start, self.layers))
            rows = question_attention(self.lm, fed, question_start, self.layers, self.heads)
            rows = rows[: len(ids) - question_start, : len(ids)].cpu()
            neutral_rows = None
        else:
            fed = torch.tensor([ids])
            if self.hook is not None:
                self.hook(ForwardPass(index, fed, len(ids), question_start, self.layers))
            rows, neutral_rows = (
                r.cpu()
                for r in shared_prefix_attention(
                    self.lm, fed[:, :question_start], [fed[:, question_start:], self.neutral], self.layers, self.heads
                )
            )
        if weights is None and self.cfg.question_weights:
            weights = question_weights(rows, question_start)
        if neutral_rows is None:
            return context_scores(rows, context_start, context_end, weights, self.cfg.phrase_window), weights
        scores = content_free_scores(rows, neutral_rows, context_start, context_end, weights, self.cfg.phrase_window)
        return scores, weights


DEFAULT_BATCH_SIZE = 4
"""Questions per batched forward in :meth:`InfiniRetriEngine.retrieve_many` on an accelerator
(on a CPU the default is 1: batching saves nothing there)."""


@dataclass
class _QuestionRun:
    """One question's state through the chunk loop."""

    question: str
    budget: int
    scorer: _PassScorer
    lexical: dict[Sentence, float]
    attention: dict[Sentence, float] = field(default_factory=dict)
    cache: list[_Kept] = field(default_factory=list)
    weights: torch.Tensor | None = None

    def candidates(self, chunk: Sequence[Sentence]) -> list[Sentence]:
        return [*(k.sentence for k in self.cache), *chunk]

    def keep(self, candidates: Sequence[Sentence], scores: torch.Tensor, cfg: RetrievalConfig) -> None:
        """This pass's selection among ``candidates``, cut to the question's working-set budget."""
        token_sentence = token_sentence_index([s.token_count for s in candidates])
        pass_lexical = self.lexical if cfg.fusion_stage == "pass" else {}
        kept = _keep(candidates, scores, token_sentence, pass_lexical, cfg, self.attention)
        self.cache = _fit_budget(kept, self.budget)


def _ids(sentences: Sequence[Sentence]) -> list[int]:
    return [t for s in sentences for t in s.token_ids]


def _batched_pass(runs: Sequence[_QuestionRun], index: int, chunk: Sequence[Sentence], cfg: RetrievalConfig) -> None:
    """One pass of several questions, each over its own working set and the chunk, as ONE
    right-padded batched forward (identical scores to one forward per question)."""
    candidates = [run.candidates(chunk) for run in runs]
    assembled = [run.scorer.layout.assemble(_ids(c)) for run, c in zip(runs, candidates, strict=True)]
    first = runs[0].scorer
    width = -(-max(len(ids) for ids, *_ in assembled) // SHAPE_BUCKET) * SHAPE_BUCKET
    fed = torch.tensor([ids + [first.pad_id] * (width - len(ids)) for ids, *_ in assembled])
    if first.hook is not None:
        for row, (ids, _, _, question_start) in enumerate(assembled):
            first.hook(ForwardPass(index, fed[row : row + 1], len(ids), question_start, first.layers))
    spans = [(question_start, len(ids)) for ids, _, _, question_start in assembled]
    rows = batched_question_attention(first.lm, fed, spans, first.layers, first.heads)
    for run, sentences, (_, context_start, context_end, question_start), question_rows in zip(
        runs, candidates, assembled, rows, strict=True
    ):
        question_rows = question_rows.cpu()
        if run.weights is None and cfg.question_weights:
            run.weights = question_weights(question_rows, question_start)
        scores = context_scores(question_rows, context_start, context_end, run.weights, cfg.phrase_window)
        run.keep(sentences, scores, cfg)


def _shared_pass(runs: Sequence[_QuestionRun], index: int, chunk: Sequence[Sentence], cfg: RetrievalConfig) -> None:
    """One pass of several questions over ONE shared context: the union of their working sets
    and the chunk, encoded once; each question (and, with ``content_free``, the content-free
    question) then runs alone over that encoding."""
    union = sorted({k.sentence for run in runs for k in run.cache}, key=lambda s: (s.document_index, s.sentence_index))
    candidates = [*union, *chunk]
    first = runs[0].scorer
    layout = first.layout
    ids, context_start, context_end, question_start = layout.assemble(_ids(candidates))
    prefix = torch.tensor([ids[:question_start]])
    suffixes = [torch.tensor([[*run.scorer.layout.question, *run.scorer.layout.tail]]) for run in runs]
    if first.neutral is not None:
        suffixes.append(first.neutral)
    if first.hook is not None:
        for suffix in suffixes[: len(runs)]:
            fed = torch.cat([prefix, suffix], dim=1)
            first.hook(ForwardPass(index, fed, fed.shape[1], question_start, first.layers))
    rows = [r.cpu() for r in shared_prefix_attention(first.lm, prefix, suffixes, first.layers, first.heads)]
    neutral_rows = rows[len(runs)] if first.neutral is not None else None
    for run, question_rows in zip(runs, rows, strict=False):
        if run.weights is None and cfg.question_weights:
            run.weights = question_weights(question_rows, question_start)
        if neutral_rows is None:
            scores = context_scores(question_rows, context_start, context_end, run.weights, cfg.phrase_window)
        else:
            scores = content_free_scores(
                question_rows, neutral_rows, context_start, context_end, run.weights, cfg.phrase_window
            )
        run.keep(candidates, scores, cfg)


CONTENT_FREE_QUESTION = "N/A"
"""The content-free question of ``content_free`` scoring (as ICR uses)."""


def _bucketed(ids: list[int], pad_id: int) -> torch.Tensor:
    padded = -(-len(ids) // SHAPE_BUCKET) * SHAPE_BUCKET
    return torch.tensor([ids + [pad_id] * (padded - len(ids))])


def _pad_token_id(lm: LocalModel) -> int:
    tokenizer = lm.tokenizer
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if isinstance(candidate, int):
            return candidate
    return 0


def _scoring_tokens(sentence: Sentence) -> int:
    return sentence.token_count


def _fit_budget(kept: list[_Kept], budget: int, size: Callable[[Sentence], int] = _scoring_tokens) -> list[_Kept]:
    """The best-scoring sentences that fit in ``budget`` tokens (document order kept)."""
    sizes = [size(k.sentence) for k in kept]
    if sum(sizes) <= budget:
        return kept
    chosen = fill_budget([k.score for k in kept], sizes, budget)
    return [kept[i] for i in chosen]


def _lexical_scores(sentences: Sequence[Sentence], question: str, cfg: RetrievalConfig) -> dict[Sentence, float]:
    """The fusion signal of every sentence of the input (empty without fusion)."""
    if cfg.fusion is None or cfg.fusion_weight == 0:
        return {}
    values = lexical_signal(cfg.fusion)(sentences, question)
    return dict(zip(sentences, values, strict=True))


def _keep(
    candidates: Sequence[Sentence],
    token_scores: torch.Tensor,
    token_sentence: torch.Tensor,
    lexical: Mapping[Sentence, float],
    cfg: RetrievalConfig,
    attention: dict[Sentence, float],
) -> list[_Kept]:
    """One pass's selection among ``candidates`` (cache + chunk), in document order.

    Without a budget or fusion this is the method's rule: every sentence holding one of the
    ``top_k`` best tokens. With fusion, the top-k rule decides how many tokens to keep and the
    fused score decides which sentences; with ``token_budget``, sentences are taken by score
    until ``max(token_budget, max_cache_tokens or BUDGET_WORKING_SET_TOKENS)`` tokens.
    """
    kept, best = select_sentences(token_scores, token_sentence, cfg.top_k)
    attention.update(zip(candidates, best.tolist(), strict=True))
    scores = best
    if lexical:
        other = torch.tensor([lexical[s] for s in candidates], dtype=torch.float64)
        scores = rank_fusion(best.to(torch.float64), other, cfg.fusion_weight).to(best.dtype)
    sizes = [s.token_count for s in candidates]
    if cfg.token_budget is not None:
        chosen = fill_budget(scores, sizes, max(cfg.token_budget, working_set_tokens(cfg)))
    elif lexical:
        chosen = fill_budget(scores, sizes, sum(sizes[i] for i in kept.tolist()))
    else:
        chosen = kept.tolist()
    return [_Kept(candidates[i], float(scores[i])) for i in chosen]


def _fuse_final(
    attention: Mapping[Sentence, float],
    lexical: Mapping[Sentence, float],
    cfg: RetrievalConfig,
    budget: int,
    size: Callable[[Sentence], int] = _scoring_tokens,
) -> list[_Kept]:
    """Late fusion over every sentence of the input: each sentence's attention score from the
    last pass that scored it, fused by reciprocal rank with its lexical score; taken by fused
    score until ``budget`` tokens, in document order."""
    pool = list(attention)
    fused = rank_fusion(
        torch.tensor([attention[s] for s in pool], dtype=torch.float64),
        torch.tensor([lexical[s] for s in pool], dtype=torch.float64),
        cfg.fusion_weight,
    )
    chosen = fill_budget(fused, [size(s) for s in pool], budget)
    ordered = sorted(chosen, key=lambda i: (pool[i].document_index, pool[i].sentence_index))
    return [_Kept(pool[i], float(fused[i])) for i in ordered]


def _retrieved(kept: _Kept, docs: Sequence[SourceDocument], token_count: int) -> RetrievedSentence:
    sentence = kept.sentence
    doc = docs[sentence.document_index]
    return RetrievedSentence(
        text=sentence.text,
        score=kept.score,
        document_index=sentence.document_index,
        document_id=doc.id,
        sentence_index=sentence.sentence_index,
        start=sentence.start,
        end=sentence.end,
        token_count=token_count,
        metadata=doc.metadata,
    )


def validate_question(question: object) -> str:
    if not isinstance(question, str):
        msg = f"question must be a str, got {type(question).__name__}: {question!r}"
        raise TypeError(msg)
    if not question.strip():
        msg = f"question must be a non-empty string, got {question!r}"
        raise ValueError(msg)
    return clean_for_tokenizer(question.strip())


def normalize_documents(documents: Iterable[DocumentLike] | DocumentLike) -> list[SourceDocument]:
    """Accept texts, :class:`SourceDocument` or mappings; a single text is one document.

    Raises:
        ValueError: no documents at all.
        TypeError: an element that is not text (e.g. ``bytes``: decode it first).
    """
    if isinstance(documents, (str, SourceDocument, Mapping)):
        documents = [documents]
    if documents is None or not isinstance(documents, Iterable):
        msg = f"documents must be a text, a SourceDocument, a mapping or an iterable of them, got {documents!r:.80}"
        raise TypeError(msg)
    if isinstance(documents, (bytes, bytearray)):
        msg = "documents must be text, got bytes; decode them first (e.g. data.decode('utf-8', errors='replace'))"
        raise TypeError(msg)
    result: list[SourceDocument] = []
    for index, item in enumerate(documents):
        if isinstance(item, SourceDocument):
            doc = item
        elif isinstance(item, str):
            doc = SourceDocument(text=item)
        elif isinstance(item, Mapping):
            text = item.get("text", item.get("page_content"))
            if not isinstance(text, str):
                msg = f"document {index} must have a str 'text' (or 'page_content'), got {type(text).__name__}"
                raise TypeError(msg)
            raw_id = item.get("id")
            metadata = item.get("metadata") or {}
            if not isinstance(metadata, Mapping):
                msg = f"document {index} 'metadata' must be a mapping (e.g. a dict), got {type(metadata).__name__}: {metadata!r:.80}"
                raise TypeError(msg)
            doc = SourceDocument(text=text, id=None if raw_id is None else str(raw_id), metadata=dict(metadata))
        else:
            hint = "; decode bytes first" if isinstance(item, (bytes, bytearray)) else ""
            msg = f"document {index} must be a str, SourceDocument or mapping, got {type(item).__name__}{hint}"
            raise TypeError(msg)
        if not isinstance(doc.text, str):
            msg = f"document {index} text must be a str, got {type(doc.text).__name__}"
            raise TypeError(msg)
        result.append(doc)
    if not result:
        msg = "documents is empty; expected at least one document"
        raise ValueError(msg)
    return result
