"""Answering from kept sentences: the answer prompt, blocking and streamed answers.

The engine's ``build_answer_prompt``, ``answer_from``, ``stream_from`` delegate here; generation
itself (stop conditions, repetition guard, echo stripping) is :mod:`core.generation`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from infiniretri_integrations.core.config import (
    PROMPT_FIELDS,
    GenerationConfig,
    RetrievalConfig,
    generation_option_names,
    option_names,
)
from infiniretri_integrations.core.generation import TokenStream, generate, stream_generate
from infiniretri_integrations.core.inputs import validate_question
from infiniretri_integrations.core.models import LocalModel
from infiniretri_integrations.core.prompting import build_layout, truncate_middle
from infiniretri_integrations.core.segmentation import clean_for_tokenizer
from infiniretri_integrations.core.types import Answer, RetrievalResult, RetrievalStats, RetrievedSentence

AnswerOptions = Mapping[str, Any]
"""Per-call answer options: :class:`GenerationConfig` fields (``max_new_tokens``, ``stop``,
``generate_kwargs``) and the prompt fields of :class:`RetrievalConfig` (:data:`PROMPT_FIELDS`)."""


class AnsweringEngine(Protocol):
    """What answering needs of an engine (``InfiniRetriEngine`` has it)."""

    config: RetrievalConfig
    generation: GenerationConfig
    max_context_tokens: int | None

    @property
    def local_model(self) -> LocalModel: ...


def answer_settings(engine: AnsweringEngine, options: AnswerOptions) -> tuple[RetrievalConfig, GenerationConfig]:
    """The prompt configuration and the generation settings of one answer: the engine's, with
    ``options`` applied (``None`` values leave a setting as it is). Retrieval options that do not
    shape the prompt are refused: they have no effect on an answer.

    Example:
        >>> from infiniretri_integrations import InfiniRetriEngine
        >>> engine = InfiniRetriEngine()
        >>> answer_settings(engine, {"max_new_tokens": 8, "system_prompt": "Be brief."})[1].max_new_tokens
        8
        >>> answer_settings(engine, {"chunk_size": 512})
        Traceback (most recent call last):
        ...
        TypeError: chunk_size is a retrieval option and does not change an answer; answer options are ['generate_kwargs', 'max_new_tokens', 'prompt_template', 'stop', 'system_prompt', 'use_chat_template']
    """
    generation = {k: v for k, v in options.items() if k in generation_option_names()}
    prompt = {k: v for k, v in options.items() if k in PROMPT_FIELDS}
    other = sorted(set(options) - set(generation) - set(prompt))
    if other:
        valid = sorted([*generation_option_names(), *PROMPT_FIELDS])
        kind = "a retrieval option" if set(other) <= set(option_names()) else "not an option"
        msg = f"{', '.join(other)} is {kind} and does not change an answer; answer options are {valid}"
        raise TypeError(msg)
    cfg = engine.config.replace(**prompt) if prompt else engine.config
    return cfg, engine.generation.replace(**generation)


def answer_prompt(
    engine: AnsweringEngine, context: str, question: str, cfg: RetrievalConfig, max_new_tokens: int
) -> list[int]:
    """Token ids of the answering prompt for ``context`` and a validated ``question`` (the
    context's middle is cut when prompt plus answer would not fit the window)."""
    lm = engine.local_model
    layout = build_layout(lm.tokenizer, cfg, question)
    context_ids = lm.tokenizer(clean_for_tokenizer(context), add_special_tokens=False)["input_ids"] if context else []
    window = engine.max_context_tokens or lm.context_window
    room = window - layout.fixed_tokens - max_new_tokens
    ids, *_ = layout.assemble(truncate_middle(context_ids, room, "context"))
    return ids


def _prepared(
    engine: AnsweringEngine, retrieval: RetrievalResult | str, question: str | None, options: AnswerOptions
) -> tuple[RetrievalResult, list[int], GenerationConfig]:
    result = retrieval if isinstance(retrieval, RetrievalResult) else context_only(retrieval, question)
    asked = validate_question(question if question is not None else result.question)
    cfg, generation = answer_settings(engine, options)
    return result, answer_prompt(engine, result.context, asked, cfg, generation.max_new_tokens), generation


def answer_from(
    engine: AnsweringEngine,
    retrieval: RetrievalResult | str,
    question: str | None = None,
    *,
    cancel: threading.Event | None = None,
    **options: Any,
) -> Answer:
    """Answer from an existing retrieval (or any context string) with the engine's model.

    ``options``: see :data:`AnswerOptions`; ``cancel``: an event checked after every generated
    token (see :func:`~infiniretri_integrations.core.generation.generate`).
    """
    result, ids, generation = _prepared(engine, retrieval, question, options)
    generated = generate(
        engine.local_model,
        ids,
        generation.max_new_tokens,
        stop=list(generation.stop),
        generate_kwargs=generation.generate_kwargs,
        cancel=cancel,
    )
    return Answer(
        text=generated.text,
        retrieval=result,
        generation_seconds=generated.seconds,
        generated_tokens=generated.tokens,
    )


def stream_from(
    engine: AnsweringEngine,
    retrieval: RetrievalResult | str,
    question: str | None = None,
    *,
    cancel: threading.Event | None = None,
    **options: Any,
) -> TokenStream:
    """The answer's text pieces for an existing retrieval (or context string), as generated
    (a :class:`~infiniretri_integrations.core.generation.TokenStream`: ``close()`` stops it)."""
    _result, ids, generation = _prepared(engine, retrieval, question, options)
    return stream_generate(
        engine.local_model,
        ids,
        generation.max_new_tokens,
        stop=list(generation.stop),
        generate_kwargs=generation.generate_kwargs,
        cancel=cancel,
    )


class AnswerStream(Iterator[str]):
    """Text pieces of an answer as they are generated; ``retrieval`` holds the kept sentences
    and ``text`` the answer so far.

    Stop early with :meth:`close` or a ``with`` block: the generation ends at the next token and
    the model lock is free when ``close()`` returns (also from another thread). Breaking out of a
    ``for`` loop over a stream nobody else holds stops the generation as the stream is dropped.
    """

    def __init__(self, retrieval: RetrievalResult, pieces: Iterator[str]) -> None:
        self.retrieval = retrieval
        self._pieces = pieces
        self._parts: list[str] = []

    def __next__(self) -> str:
        piece = next(self._pieces)
        self._parts.append(piece)
        return piece

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the generation early; returns once the worker thread has ended."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()

    @property
    def text(self) -> str:
        return "".join(self._parts)


def context_only(context: str, question: str | None) -> RetrievalResult:
    """A context string as a one-sentence retrieval result (to answer from any text)."""
    if not isinstance(context, str):
        msg = f"retrieval must be a RetrievalResult or a context string, got {type(context).__name__}"
        raise TypeError(msg)
    if question is None:
        msg = "question is required when answering from a context string"
        raise ValueError(msg)
    sentence = RetrievedSentence(
        text=context,
        score=0.0,
        document_index=0,
        document_id=None,
        sentence_index=0,
        start=0,
        end=len(context),
        token_count=0,
    )
    return RetrievalResult(question=question, sentences=[sentence] if context else [], stats=RetrievalStats())
