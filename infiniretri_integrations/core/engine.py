"""The retrieval loop: read documents chunk by chunk, keep the sentences the question attends to.

A call runs in three stages: :meth:`InfiniRetriEngine._prepare` (inputs validated, options resolved
against the model, sentences segmented, the lexical index built once for all questions, with
``candidate_tokens`` the cascade's candidate sentences chosen (:mod:`core.cascade`), sentences
packed into chunks, one :class:`QuestionRun` per question), the chunk loop (one pass per chunk, :mod:`core.passes`), and the finish (the final
selection, :mod:`core.selection`, as :class:`RetrievalResult` objects).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from infiniretri_integrations.core.answering import (
    AnswerStream,
    answer_from,
    answer_prompt,
    answer_settings,
    stream_from,
)
from infiniretri_integrations.core.cascade import candidate_sentences
from infiniretri_integrations.core.chunking import pack_chunks
from infiniretri_integrations.core.config import (
    CASCADE_SIMILARITY_WEIGHT,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_WORKING_SET_TOKENS,
    PROMPT_FIELDS,
    GenerationConfig,
    HeadSelection,
    RetrievalConfig,
    generation_option_names,
    renamed_options,
)
from infiniretri_integrations.core.inputs import (
    DocumentLike,
    check_batch_size,
    normalize_documents,
    validate_question,
    validate_questions,
)
from infiniretri_integrations.core.lexical import lexical_scores_many
from infiniretri_integrations.core.models import LazyModel, LocalModel, ModelSource
from infiniretri_integrations.core.passes import PASS_MODES, QuestionRun, Scorer, pass_mode
from infiniretri_integrations.core.probe import probe_for
from infiniretri_integrations.core.progress import progress_bar
from infiniretri_integrations.core.prompting import PromptLayout, build_layout
from infiniretri_integrations.core.scoring import rank_fusion
from infiniretri_integrations.core.scoring_setup import scoring_setup
from infiniretri_integrations.core.segmentation import SentenceSplitter, segment_documents
from infiniretri_integrations.core.selection import (
    Carry,
    Kept,
    SentenceSize,
    final_selection,
    scoring_tokens,
)
from infiniretri_integrations.core.similarity import (
    SentenceVectors,
    TokenWeights,
    embedding_vectors,
    sentence_similarity,
    similarity_layer,
)
from infiniretri_integrations.core.types import (
    Answer,
    ChunkProgress,
    ForwardHook,
    ProgressCallback,
    RetrievalCancelled,
    RetrievalResult,
    RetrievalStats,
    RetrievedSentence,
    Sentence,
    SourceDocument,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "AnswerStream",
    "DocumentLike",
    "ForwardHook",
    "InfiniRetriEngine",
    "ProgressCallback",
    "RunSpec",
    "normalize_documents",
    "validate_question",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 4
"""Questions per batched forward in :meth:`InfiniRetriEngine.retrieve_many` on an accelerator
(on a CPU the default is 1: batching saves nothing there)."""


@dataclass(frozen=True)
class RunSpec:
    """How one retrieval call runs, beside its documents and questions."""

    overrides: Mapping[str, Any]
    """Per-call :class:`RetrievalConfig` fields."""
    share_context: bool = False
    batch_size: int | None = None
    """Questions per batched forward (``None``: :data:`DEFAULT_BATCH_SIZE` on an accelerator, 1 on a CPU)."""
    on_progress: ProgressCallback | None = None
    on_forward: ForwardHook | None = None
    cancel: threading.Event | None = None


@dataclass
class _Group:
    """Questions whose passes read the same chunks (all of them, unless the cascade gives each
    question its own candidate sentences)."""

    runs: list[QuestionRun]
    chunks: list[list[Sentence]]

    @property
    def tokens(self) -> int:
        """Document tokens the passes of this group read."""
        return sum(s.token_count for chunk in self.chunks for s in chunk)


@dataclass
class _Prepared:
    """Everything the chunk loop and the finish need, computed once per call."""

    started: float
    docs: list[SourceDocument]
    skipped: list[int]
    sentences: list[Sentence]
    groups: list[_Group]
    scorer: Scorer
    mode: str
    runs: list[QuestionRun]
    stage_seconds: dict[str, float]

    @property
    def total_tokens(self) -> int:
        return sum(s.token_count for s in self.sentences)

    def group_of(self, run: QuestionRun) -> _Group:
        return next(group for group in self.groups if any(r is run for r in group.runs))


class InfiniRetriEngine:
    """Attention-driven sentence retrieval (InfiniRetri) over any number of documents.

    The model is loaded lazily on first use unless given; one model object is shared safely by
    any number of engines and threads.

    Args:
        model: a :class:`LocalModel`, a transformers causal LM (then pass ``tokenizer``), a local
            path / ``.gguf`` file, or ``None`` for the packaged default (SmolLM2-135M-Instruct).
            It answers, and every token budget counts its tokens.
        tokenizer: the tokenizer of a ready-built ``model``.
        scoring_model, scoring_tokenizer: a separate model whose attention scores (same forms as
            ``model``; ``None``: ``model`` scores and answers). ``token_budget``,
            ``working_set_tokens`` and ``token_count`` are still in ``model``'s tokens, so a
            budget is what the answering model reads.
        config: retrieval options; keyword arguments override single fields.
        generation: answer options (:class:`GenerationConfig`); the keyword arguments
            ``max_new_tokens``, ``stop`` and ``generate_kwargs`` override single fields.
        device, dtype: used only when the engine loads a model itself.
        max_context_tokens: prompt length limit (default: the model's window).
        show_progress: progress bar over chunks (``None``: only on an interactive terminal).
        on_forward: called with a :class:`ForwardPass` before every scoring forward pass (what
            is fed to the model); benchmarks and tests use it to see the exact sequences.
        sentence_splitter: a function from a text to its sentences' character spans (pysbd,
            NLTK punkt, ...) instead of the built-in splitter; spans are widened to cover the text.

    Example:
        >>> engine = InfiniRetriEngine(tokens_per_pass=100, max_new_tokens=32)
        >>> engine.config.tokens_per_pass, engine.generation.max_new_tokens, engine.model_loaded
        (100, 32, False)
        >>> result = engine.retrieve(["...long text..."], "What is the best thing to do in San Francisco?")  # doctest: +SKIP
        >>> [s.text for s in result.sentences]  # doctest: +SKIP
    """

    def __init__(
        self,
        model: ModelSource = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        scoring_model: ModelSource = None,
        scoring_tokenizer: PreTrainedTokenizerBase | None = None,
        config: RetrievalConfig | None = None,
        generation: GenerationConfig | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_context_tokens: int | None = None,
        show_progress: bool | None = None,
        on_forward: ForwardHook | None = None,
        sentence_splitter: SentenceSplitter | None = None,
        **options: Any,
    ) -> None:
        options = renamed_options(options)
        generation_options = {k: options.pop(k) for k in list(options) if k in generation_option_names()}
        base = config or RetrievalConfig()
        self.config = base.replace(**options) if options else base
        base_generation = generation or GenerationConfig()
        if generation is None and self.config.legacy_max_new_tokens is not None:
            base_generation = base_generation.replace(max_new_tokens=self.config.legacy_max_new_tokens)
        self.generation = base_generation.replace(**generation_options)
        if max_context_tokens is not None and (not isinstance(max_context_tokens, int) or max_context_tokens <= 0):
            msg = f"max_context_tokens must be a positive integer, got {max_context_tokens!r}"
            raise ValueError(msg)
        self.max_context_tokens = max_context_tokens
        self.show_progress = show_progress
        self.on_forward = on_forward
        self.sentence_splitter = sentence_splitter
        self._answering = LazyModel(model, tokenizer, device=device, dtype=dtype, name="model")
        self._scoring = (
            None
            if scoring_model is None
            else LazyModel(scoring_model, scoring_tokenizer, device=device, dtype=dtype, name="scoring_model")
        )

    @property
    def local_model(self) -> LocalModel:
        """The model that answers (and scores, unless ``scoring_model`` was given), loaded on first access."""
        return self._answering.get()

    @property
    def scoring_local_model(self) -> LocalModel:
        """The model whose attention scores: ``scoring_model`` (loaded on first access), else
        :attr:`local_model`."""
        return self._answering.get() if self._scoring is None else self._scoring.get()

    @property
    def model_loaded(self) -> bool:
        return self._answering.loaded

    def scoring_layers(self, config: RetrievalConfig | None = None) -> tuple[int, ...]:
        """The layer indices that score, after resolving ``None``/``"auto"``/negative indices."""
        return self.scoring_setup(config)[0]

    def scoring_setup(self, config: RetrievalConfig | None = None) -> tuple[tuple[int, ...], HeadSelection]:
        """``(layers, heads)`` that score (see :func:`~infiniretri_integrations.core.scoring_setup.scoring_setup`)."""
        return scoring_setup(self.scoring_local_model, config or self.config)

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
            on_progress: called after each chunk with the progress and the current working set.
            on_forward: called before each scoring forward pass (overrides the engine's hook).
            cancel: an event checked before every pass; once set, the call raises
                :class:`RetrievalCancelled` (async adapters set it when their task is cancelled).
            **overrides: per-call :class:`RetrievalConfig` fields.

        Returns:
            The kept sentences in document order with scores and character spans, and statistics.
        """
        spec = RunSpec(
            renamed_options(overrides), on_progress=on_progress, on_forward=on_forward, cancel=cancel, batch_size=1
        )
        (result,) = self._run(documents, [validate_question(question)], spec)
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
                it: measured 1.1x slower at 4 questions over 32K tokens). Not with
                ``share_context`` or ``content_free``, whose passes run one question at a time
                over a shared encoding.
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
        asked = validate_questions(questions)
        overrides = renamed_options(overrides)
        check_batch_size(batch_size)
        if batch_size is not None and (share_context or self.config.replace(**overrides).content_free):
            reason = "share_context" if share_context else "content_free"
            msg = (
                f"batch_size={batch_size!r} does not apply with {reason} (its passes run one question at a time "
                "over one shared context encoding); leave batch_size unset"
            )
            raise ValueError(msg)
        spec = RunSpec(
            overrides,
            share_context=share_context,
            batch_size=batch_size,
            on_forward=on_forward,
            cancel=cancel,
        )
        if not asked:
            return []
        return self._run(documents, asked, spec)

    def _run(
        self, documents: Iterable[DocumentLike] | DocumentLike, questions: list[str], spec: RunSpec
    ) -> list[RetrievalResult]:
        prepared = self._prepare(documents, questions, spec)
        self._loop(prepared, spec)
        return self._finish(prepared)

    # ------------------------------------------------------------------ stage 1: prepare
    def _prepare(
        self, documents: Iterable[DocumentLike] | DocumentLike, questions: list[str], spec: RunSpec
    ) -> _Prepared:
        started = time.perf_counter()
        docs = normalize_documents(documents)
        cfg = self.config.replace(**spec.overrides) if spec.overrides else self.config
        batch_size = spec.batch_size or self._default_batch_size()
        mode = pass_mode(spec.share_context, cfg.content_free, batch_size)
        lm = self.scoring_local_model
        layers, heads = scoring_setup(lm, cfg)
        layouts = [build_layout(lm.tokenizer, cfg, q) for q in questions]
        chunk_size = self._chunk_size(cfg, max(layout.fixed_tokens for layout in layouts))
        carries = [self._carry(cfg, chunk_size, layout, q) for layout, q in zip(layouts, questions, strict=True)]
        if mode == "shared":
            shared = Carry(min(c.room for c in carries), cfg.working_set_tokens).shared(len(questions))
            carries = [shared] * len(questions)

        skipped = [i for i, doc in enumerate(docs) if not doc.text.strip()]
        if skipped:
            logger.info("Skipped %d empty document(s): %s", len(skipped), skipped)
        clock = time.perf_counter()
        per_document = segment_documents(
            [doc.text for doc in docs],
            lm.tokenizer,
            cfg.effective_max_sentence_tokens(chunk_size),
            self.sentence_splitter,
        )
        sentences = [s for doc_sentences in per_document for s in doc_sentences]
        stages = {"segment": time.perf_counter() - clock}
        clock = time.perf_counter()
        input_tokens = sum(s.token_count for s in sentences)
        budget = cfg.candidate_budget(input_tokens)
        if budget is not None and cfg.candidate_tokens == "auto":
            logger.info(
                "Input of %d tokens: the cascade reads %d candidate tokens (candidate_tokens='auto'; "
                "candidate_tokens=None reads every token)",
                input_tokens,
                budget,
            )
        signal = cfg.fusion or ("bm25" if budget is not None else None)
        lexical = lexical_scores_many(signal, sentences, questions) if signal is not None else None
        stages["lexical"] = time.perf_counter() - clock
        scorer = Scorer(
            lm,
            cfg,
            layers,
            heads,
            spec.on_forward or self.on_forward,
            self._reader_sizes(sentences),
            batch_size,
            similarity_layer(cfg, lm.num_layers, layers),
            probe_for(cfg.probe, lm, layers, mode == "shared", cfg.content_free),
        )
        fused = [dict(zip(sentences, scores, strict=True)) for scores in lexical] if lexical and cfg.fusion else None
        runs = [
            QuestionRun(question, layout, carry, fused[i] if fused else {})
            for i, (question, layout, carry) in enumerate(zip(questions, layouts, carries, strict=True))
        ]
        clock = time.perf_counter()
        first_stage, embeddings = lexical, None
        if budget is not None:
            first_stage, embeddings = first_stage_scores(lm, cfg, sentences, questions, lexical)
        self._attach_vectors(runs, sentences, scorer, embeddings)
        stages["similarity"] = time.perf_counter() - clock
        clock = time.perf_counter()
        groups = _groups(sentences, runs, first_stage, cfg, budget, chunk_size, mode)
        stages["candidates"] = time.perf_counter() - clock
        return _Prepared(started, docs, skipped, sentences, groups, scorer, mode, runs, stages)

    @staticmethod
    def _attach_vectors(
        runs: Sequence[QuestionRun], sentences: Sequence[Sentence], scorer: Scorer, embeddings: SentenceVectors | None
    ) -> None:
        """Each run's sentence vectors for ``similarity``: empty ones the passes fill (``"hidden"``,
        smooth-inverse-frequency weighted over this input's tokens), or one set from the input
        embeddings shared by every run (``"embeddings"``; ``embeddings`` when already built)."""
        if scorer.cfg.similarity is None:
            return
        if scorer.states_layer is not None:
            weights = TokenWeights.of(sentences)
            for run in runs:
                run.vectors = SentenceVectors(weights)
            return
        shared = embeddings or embedding_vectors(scorer.lm, sentences, TokenWeights.uniform())
        for run in runs:
            run.vectors = shared

    def _default_batch_size(self) -> int:
        return 1 if self.scoring_local_model.device.type == "cpu" else DEFAULT_BATCH_SIZE

    def _window(self) -> int:
        return self.max_context_tokens or self.scoring_local_model.context_window

    def _chunk_size(self, cfg: RetrievalConfig, fixed: int) -> int:
        """``chunk_size`` as given, or the default lowered for a window that cannot hold it beside
        the prompt (``fixed`` tokens) and a working set; an explicit one is checked by :meth:`_carry`."""
        if cfg.chunk_size is not None:
            return cfg.chunk_size
        room = self._window() - fixed
        if room >= DEFAULT_CHUNK_SIZE + DEFAULT_WORKING_SET_TOKENS or room < 2:
            return DEFAULT_CHUNK_SIZE
        return max(room // 2, min(room - 1, 64))

    def _carry(self, cfg: RetrievalConfig, chunk_size: int, layout: PromptLayout, question: str) -> Carry:
        """What a pass may carry to the next: the room the window leaves beside the chunk and the
        prompt, and ``working_set_tokens``."""
        window = self._window()
        fixed = layout.fixed_tokens
        if fixed >= window:
            msg = (
                f"The question and prompt template take {fixed} tokens (question: {len(layout.question)}), "
                f"which does not fit the model window of {window} tokens; shorten the question {question[:80]!r}..."
            )
            raise ValueError(msg)
        if fixed >= chunk_size:
            msg = (
                f"chunk_size ({chunk_size}) must be larger than the question and prompt template "
                f"({fixed} tokens); raise chunk_size or shorten the question"
            )
            raise ValueError(msg)
        if chunk_size + fixed > window:
            msg = (
                f"chunk_size ({chunk_size}) plus the question and template ({fixed} tokens) exceeds the "
                f"model window ({window} tokens); use chunk_size <= {window - fixed}"
            )
            raise ValueError(msg)
        return Carry(window - chunk_size - fixed, cfg.working_set_tokens)

    def _reader_sizes(self, sentences: Sequence[Sentence]) -> SentenceSize:
        """Sentence sizes in the answering model's tokens (the scoring model's when it answers too)."""
        if self._scoring is None or self.scoring_local_model is self.local_model:
            return scoring_tokens
        tokenizer = self.local_model.tokenizer
        ids = tokenizer([s.text for s in sentences], add_special_tokens=False)["input_ids"] if sentences else []
        counts = {sentence: len(tokens) for sentence, tokens in zip(sentences, ids, strict=True)}
        return counts.__getitem__

    # ------------------------------------------------------------------ stage 2: the chunk loop
    def _loop(self, prepared: _Prepared, spec: RunSpec) -> None:
        clock = time.perf_counter()
        scorer = prepared.scorer
        run_pass = PASS_MODES[prepared.mode]
        bar = self._progress_bar(sum(len(group.chunks) for group in prepared.groups))
        try:
            for group in prepared.groups:
                chunks, runs, total, read = group.chunks, group.runs, group.tokens, 0
                for index, chunk in enumerate(chunks):
                    if spec.cancel is not None and spec.cancel.is_set():
                        msg = f"retrieval cancelled before pass {index + 1} of {len(chunks)}"
                        raise RetrievalCancelled(msg)
                    run_pass(runs, index, chunk, scorer)
                    read += sum(s.token_count for s in chunk)
                    logger.debug(
                        "chunk %d/%d: kept %s sentences", index + 1, len(chunks), [len(r.working_set) for r in runs]
                    )
                    bar.update(1)
                    if spec.on_progress is not None:
                        spec.on_progress(
                            _progress(index, len(chunks), read, total, runs[0].working_set),
                            [_retrieved(k, prepared.docs, k.sentence.token_count) for k in runs[0].working_set],
                        )
        finally:
            bar.close()
            prepared.stage_seconds["passes"] = time.perf_counter() - clock

    def _progress_bar(self, total: int) -> Any:
        enabled = self.show_progress if self.show_progress is not None else (None if total > 1 else False)
        return progress_bar(total, "InfiniRetri", enabled, unit="chunk")

    # ------------------------------------------------------------------ stage 3: finish
    def _finish(self, prepared: _Prepared) -> list[RetrievalResult]:
        scorer = prepared.scorer
        results = []
        clock = time.perf_counter()
        similarities = [
            None
            if run.vectors is None
            else sentence_similarity(scorer.lm, run.vectors, run.question, scorer.states_layer, list(run.attention))
            for run in prepared.runs
        ]
        prepared.stage_seconds["similarity"] += time.perf_counter() - clock
        for run, similarity in zip(prepared.runs, similarities, strict=True):
            kept = final_selection(
                run.working_set,
                run.attention,
                run.lexical,
                scorer.cfg,
                scorer.reader,
                similarity,
                run.probe_ranking(scorer.probe),
            )
            retrieved = [_retrieved(k, prepared.docs, scorer.reader(k.sentence)) for k in kept]
            group = prepared.group_of(run)
            stats = RetrievalStats(
                documents=len(prepared.docs),
                skipped_documents=list(prepared.skipped),
                sentences=len(prepared.sentences),
                input_tokens=prepared.total_tokens,
                chunks=len(group.chunks),
                scoring_layers=scorer.layers,
                kept_sentences=len(retrieved),
                kept_tokens=sum(s.token_count for s in retrieved),
                seconds=time.perf_counter() - prepared.started,
                tokens_read=group.tokens,
                stage_seconds=dict(prepared.stage_seconds),
            )
            logger.info(
                "Read %d of %d tokens in %d chunks, kept %d sentences (%d tokens) in %.1fs",
                stats.tokens_read,
                stats.input_tokens,
                stats.chunks,
                stats.kept_sentences,
                stats.kept_tokens,
                stats.seconds,
            )
            results.append(RetrievalResult(run.question, retrieved, stats, prepared.docs))
        return results

    # ------------------------------------------------------------------ answering (core/answering.py)
    def build_answer_prompt(self, context: str, question: str, **options: Any) -> list[int]:
        """Token ids of the answering prompt for ``context`` and ``question`` (``options``: the
        prompt fields and ``max_new_tokens``, which decides how much of the window is left)."""
        cfg, generation = answer_settings(self, options)
        return answer_prompt(self, context, validate_question(question), cfg, generation.max_new_tokens)

    def answer_from(
        self,
        retrieval: RetrievalResult | str,
        question: str | None = None,
        *,
        cancel: threading.Event | None = None,
        **options: Any,
    ) -> Answer:
        """Answer from an existing retrieval (or any context string) with the local model.

        Args:
            options: :class:`GenerationConfig` fields (``max_new_tokens``, ``stop``: extra stop
                strings, ``generate_kwargs``: passed to ``model.generate``) and the prompt fields
                (``prompt_template``, ``system_prompt``, ``use_chat_template``) for this answer.
            cancel: an event checked after every generated token; once set, the answer so far
                comes back (``finish_reason="cancelled"``).
        """
        return answer_from(self, retrieval, question, cancel=cancel, **options)

    def answer(
        self,
        documents: Iterable[DocumentLike] | DocumentLike,
        question: str,
        *,
        cancel: threading.Event | None = None,
        **options: Any,
    ) -> Answer:
        """Retrieve, then answer from the kept sentences with the same model.

        ``options``: retrieval options (:class:`RetrievalConfig` fields) and answer options (see
        :meth:`answer_from`); the prompt fields apply to both.

        Example:
            >>> engine.answer(["Alice lives in Paris. Bob lives in Rome."], "Where does Bob live?").text  # doctest: +SKIP
            'Bob lives in Rome.'
        """
        retrieval, answering = _split_options(options)
        result = self.retrieve(documents, question, cancel=cancel, **retrieval)
        return self.answer_from(result, question, cancel=cancel, **answering)

    def stream_from(
        self,
        retrieval: RetrievalResult | str,
        question: str | None = None,
        *,
        cancel: threading.Event | None = None,
        **options: Any,
    ) -> Iterator[str]:
        """Stream the answer's text pieces for an existing retrieval (or context string); options
        as for :meth:`answer_from`. ``close()`` on the stream (or ``cancel``) stops the generation."""
        return stream_from(self, retrieval, question, cancel=cancel, **options)

    def stream_answer(
        self,
        documents: Iterable[DocumentLike] | DocumentLike,
        question: str,
        *,
        cancel: threading.Event | None = None,
        **options: Any,
    ) -> AnswerStream:
        """Retrieve, then stream the answer; the returned iterator also carries ``.retrieval``.
        Options as for :meth:`answer`."""
        retrieval, answering = _split_options(options)
        result = self.retrieve(documents, question, cancel=cancel, **retrieval)
        return AnswerStream(result, self.stream_from(result, question, cancel=cancel, **answering))


def first_stage_scores(
    lm: LocalModel,
    cfg: RetrievalConfig,
    sentences: Sequence[Sentence],
    questions: Sequence[str],
    lexical: list[list[float]] | None,
) -> tuple[list[list[float]] | None, SentenceVectors | None]:
    """The cascade's first-stage score of every sentence per question (``[questions][sentences]``):
    BM25 (``lexical``) fused by reciprocal rank with the input-embedding similarity when
    ``cfg.similarity`` is set (weight :data:`CASCADE_SIMILARITY_WEIGHT`), so that candidates are
    not only what word matching finds; BM25 alone otherwise. Also returns the embedding vectors
    it built (``None`` without them)."""
    if cfg.similarity is None or lexical is None:
        return lexical, None
    vectors = embedding_vectors(lm, sentences, TokenWeights.uniform())
    fused = []
    for question, scores in zip(questions, lexical, strict=True):
        similarity = sentence_similarity(lm, vectors, question, None, sentences)
        fused.append(
            rank_fusion(
                torch.tensor(scores, dtype=torch.float64),
                torch.tensor([similarity[s] for s in sentences], dtype=torch.float64),
                CASCADE_SIMILARITY_WEIGHT,
            ).tolist()
        )
    return fused, vectors


def _groups(
    sentences: list[Sentence],
    runs: list[QuestionRun],
    lexical: list[list[float]] | None,
    cfg: RetrievalConfig,
    budget: int | None,
    chunk_size: int,
    mode: str,
) -> list[_Group]:
    """The chunks each question's passes read: every sentence, or with a candidate ``budget``
    (:meth:`RetrievalConfig.candidate_budget`) each question's candidate sentences
    (:func:`~infiniretri_integrations.core.cascade.candidate_sentences`, in document order). With
    ``share_context`` the questions share one context, so they read the union of their candidate sets."""
    coverage = cfg.effective_candidate_coverage
    if budget is None or coverage is None or lexical is None:
        return [_Group(runs, pack_chunks(sentences, chunk_size))]
    chosen = [candidate_sentences(sentences, scores, budget, coverage) for scores in lexical]
    if mode == "shared":
        union = set().union(*chosen)
        return [_Group(runs, pack_chunks([s for s in sentences if s in union], chunk_size))]
    return [_Group([run], pack_chunks(own, chunk_size)) for run, own in zip(runs, chosen, strict=True)]


def _split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(retrieval options, answer options)`` of a call that does both; the prompt fields go to both."""
    answering = {k: v for k, v in options.items() if k in generation_option_names() or k in PROMPT_FIELDS}
    retrieval = {k: v for k, v in options.items() if k not in generation_option_names()}
    return retrieval, answering


def _progress(index: int, count: int, read: int, total: int, working_set: Sequence[Kept]) -> ChunkProgress:
    return ChunkProgress(
        chunk_index=index,
        chunk_count=count,
        tokens_read=read,
        tokens_total=total,
        cached_sentences=len(working_set),
        cached_tokens=sum(k.sentence.token_count for k in working_set),
    )


def _retrieved(kept: Kept, docs: Sequence[SourceDocument], token_count: int) -> RetrievedSentence:
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
