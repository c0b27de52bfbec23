"""Hyperparameters of the method, with the reference package's defaults, validated on construction."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_PROMPT_TEMPLATE = (
    "Read the book and answer the question. Be very concise in your answer.\n\n"
    "{context}\n\nQuestion:\n\n{question}\n\nAnswer:"
)
"""The reference package's template: context first, question after it."""

DEFAULT_CHUNK_SIZE = 4096
"""Document tokens per pass. Left at this default, the engine lowers it for a model whose window
cannot hold it next to the prompt and a working set (to half of what the prompt leaves)."""

DEFAULT_MAX_SENTENCE_TOKENS = 256
"""Longest sentence piece; a smaller ``chunk_size`` lowers it to the chunk size."""

LayerSpec = int | Sequence[int] | Literal["auto"] | None

HeadSpec = Sequence[int] | Sequence[tuple[int, int]] | None
"""Heads that score: ``None`` (all), head indices summed in every scoring layer, or
``(layer, head)`` pairs (query-focused heads spread over several layers)."""

HeadSelection = tuple[int, ...] | tuple[tuple[int, int], ...] | None
"""A :data:`HeadSpec` as the configuration holds it (tuples)."""


def is_head_pairs(heads: object) -> bool:
    """Whether ``heads`` is a sequence of ``(layer, head)`` pairs rather than head indices.

    >>> is_head_pairs([(18, 3), (15, 0)]), is_head_pairs([3, 0]), is_head_pairs(None)
    (True, False, False)
    """
    return (
        isinstance(heads, Sequence)
        and not isinstance(heads, str)
        and bool(heads)
        and all(isinstance(pair, Sequence) and not isinstance(pair, str) for pair in heads)
    )


def normalize_heads(heads: object) -> HeadSelection:
    """``scoring_heads`` as a hashable tuple, validated: head indices >= 0, or ``(layer, head)``
    pairs (a layer may be negative: it counts from the end).

    >>> normalize_heads([3, 0]), normalize_heads([[18, 3], [15, 0]])
    ((3, 0), ((18, 3), (15, 0)))
    >>> normalize_heads([])
    Traceback (most recent call last):
    ...
    ValueError: scoring_heads must be None, a non-empty sequence of head indices >= 0 or of (layer, head) pairs, got []
    """
    if heads is None:
        return None

    def index(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if isinstance(heads, Sequence) and not isinstance(heads, str) and heads:
        if is_head_pairs(heads):
            pairs = tuple(tuple(pair) for pair in heads)  # type: ignore[arg-type]
            if all(len(p) == 2 and index(p[0]) and index(p[1]) and p[1] >= 0 for p in pairs):
                return pairs  # type: ignore[return-value]
        elif all(index(h) and h >= 0 for h in heads):
            return tuple(heads)
    msg = (
        "scoring_heads must be None, a non-empty sequence of head indices >= 0 or of (layer, head) pairs, "
        f"got {heads!r}"
    )
    raise ValueError(msg)


@dataclass(frozen=True)
class RetrievalConfig:
    """Every knob of InfiniRetri retrieval.

    Args:
        chunk_size: tokens of document text read per forward pass (reference: 1024; default 4096:
            measured as good on evidence recall and ~1.6x cheaper, since each pass re-reads the
            working set; lowered automatically for models with a small window).
        top_k: highest-scoring context tokens kept per pass; every sentence holding one is kept
            whole (reference: 300).
        phrase_window: width of the moving sum over neighbouring key positions (reference: 8;
            the paper reportedly uses 15).
        question_weights: weight each question row by the attention it puts on the question itself,
            squared, computed on the first chunk and then frozen (reference: on).
        scoring_layer: the layer whose attention scores the context. ``None`` uses the model's
            known default (measured for the packaged model, otherwise the last layer); an int picks
            one layer (negative counts from the end); a sequence sums several layers; ``"auto"``
            uses (or runs and caches) a calibration for the model.
        scoring_heads: heads to sum (``None``: all heads, as the reference): head indices, summed
            in every scoring layer, or ``(layer, head)`` pairs (query-focused heads, e.g. chosen by
            :func:`~infiniretri_integrations.core.calibration.query_focused_heads`), which then
            set the scoring layers themselves (``scoring_layer`` must be unset, ``"auto"`` or
            the same layers).
        max_cache_tokens: cap on the kept-sentence cache in tokens (``None``: only the model window
            limits it). When the cap is hit the lowest-scoring sentences are dropped.
        max_sentence_tokens: longer "sentences" (text without punctuation, code, junk) are split at
            line breaks, then spaces, then token boundaries into pieces of at most this many tokens.
            Left at its default, it is lowered to ``chunk_size`` when the chunk is smaller.
        prompt_template: must contain ``{context}`` before ``{question}``.
        system_prompt: optional system message for chat templates.
        use_chat_template: ``None`` wraps the prompt in the tokenizer's chat template when it has one.
        max_new_tokens: answer length (reference: 128).
        token_budget: keep the best-scoring sentences until this many tokens (of the scoring
            model's tokenizer) are kept; the result is in document order. ``None`` keeps what the
            ``top_k`` rule keeps. Each pass keeps ``max(token_budget, max_cache_tokens)`` tokens
            (``max_cache_tokens`` unset: 1,024) so that later chunks compete with a working set;
            the final cut uses the last pass's scores.
        fusion: a lexical signal fused with attention by reciprocal rank (default ``"bm25"``: BM25
            of each sentence with its passage's first line, over the same sentences), or ``None``
            for attention alone (the paper's method).
        fusion_weight: weight of the lexical signal's reciprocal rank relative to attention's
            (default 2.5, chosen on the calibration half of HotpotQA-long; see docs/evaluation.md).
        fusion_stage: ``"final"`` fuses once, over every sentence of the input (each with the
            attention score of the last pass that read it), after the chunk loop; ``"pass"``
            fuses inside every pass, so the fused score also chooses what each pass carries on.
        content_free: subtract the attention a content-free question (``"N/A"``) puts on each
            context token (ICR). The context is encoded once per pass and shared by both
            questions, so the extra cost is one pass over the question tokens.

    Example:
        >>> RetrievalConfig(top_k=100).top_k
        100
        >>> RetrievalConfig(top_k=0)
        Traceback (most recent call last):
        ...
        ValueError: top_k must be a positive integer, got 0
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE
    top_k: int = 300
    phrase_window: int = 8
    question_weights: bool = True
    scoring_layer: LayerSpec = None
    scoring_heads: HeadSelection = None
    max_cache_tokens: int | None = None
    max_sentence_tokens: int = DEFAULT_MAX_SENTENCE_TOKENS
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    system_prompt: str | None = None
    use_chat_template: bool | None = None
    max_new_tokens: int = 128
    token_budget: int | None = None
    fusion: str | None = "bm25"
    fusion_weight: float = 2.5
    fusion_stage: Literal["final", "pass"] = "final"
    content_free: bool = False

    def __post_init__(self) -> None:
        _require_positive_int("chunk_size", self.chunk_size)
        _require_positive_int("top_k", self.top_k)
        _require_positive_int("phrase_window", self.phrase_window)
        _require_positive_int("max_sentence_tokens", self.max_sentence_tokens)
        _require_positive_int("max_new_tokens", self.max_new_tokens)
        if self.max_cache_tokens is not None:
            _require_positive_int("max_cache_tokens", self.max_cache_tokens)
        if self.token_budget is not None:
            _require_positive_int("token_budget", self.token_budget)
        if self.fusion is not None:
            from infiniretri_integrations.core.lexical import LEXICAL_SIGNALS

            if self.fusion not in LEXICAL_SIGNALS:
                msg = f"fusion must be None or one of {sorted(LEXICAL_SIGNALS)}, got {self.fusion!r}"
                raise ValueError(msg)
        if self.fusion_stage not in ("final", "pass"):
            msg = f"fusion_stage must be 'final' or 'pass', got {self.fusion_stage!r}"
            raise ValueError(msg)
        if (
            not isinstance(self.fusion_weight, (int, float))
            or isinstance(self.fusion_weight, bool)
            or not 0 <= self.fusion_weight < float("inf")
        ):
            msg = f"fusion_weight must be a finite number >= 0, got {self.fusion_weight!r}"
            raise ValueError(msg)
        if self.max_sentence_tokens == DEFAULT_MAX_SENTENCE_TOKENS and self.chunk_size < self.max_sentence_tokens:
            object.__setattr__(self, "max_sentence_tokens", self.chunk_size)
        if self.max_sentence_tokens > self.chunk_size:
            msg = (
                f"max_sentence_tokens ({self.max_sentence_tokens}) must not exceed chunk_size "
                f"({self.chunk_size}): a sentence has to fit in a chunk"
            )
            raise ValueError(msg)
        _validate_layer_spec(self.scoring_layer)
        object.__setattr__(self, "scoring_heads", normalize_heads(self.scoring_heads))
        if isinstance(self.scoring_layer, Sequence) and not isinstance(self.scoring_layer, str):
            object.__setattr__(self, "scoring_layer", tuple(self.scoring_layer))
        _validate_template(self.prompt_template)

    def replace(self, **changes: Any) -> RetrievalConfig:
        """A copy with some fields changed (validated again).

        Example:
            >>> RetrievalConfig().replace(phrase_window=15).phrase_window
            15
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            msg = f"Unknown retrieval option(s) {sorted(unknown)}; expected some of {[f.name for f in dataclasses.fields(self)]}"
            raise TypeError(msg)
        return dataclasses.replace(self, **changes)


def _require_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        msg = f"{name} must be a positive integer, got {value!r}"
        raise ValueError(msg)


def _validate_layer_spec(spec: object) -> None:
    if spec is None or spec == "auto":
        return
    if isinstance(spec, int) and not isinstance(spec, bool):
        return
    if (
        isinstance(spec, Sequence)
        and not isinstance(spec, str)
        and spec
        and all(isinstance(x, int) and not isinstance(x, bool) for x in spec)
    ):
        return
    msg = f"scoring_layer must be None, 'auto', a layer index or a non-empty sequence of layer indices, got {spec!r}"
    raise ValueError(msg)


def _validate_template(template: object) -> None:
    if not isinstance(template, str):
        msg = f"prompt_template must be a str, got {type(template).__name__}"
        raise TypeError(msg)
    context_at, question_at = template.find("{context}"), template.find("{question}")
    if context_at < 0 or question_at < 0:
        msg = f"prompt_template must contain '{{context}}' and '{{question}}', got {template!r}"
        raise ValueError(msg)
    if question_at < context_at:
        msg = (
            "prompt_template must put '{context}' before '{question}' (only later tokens attend to "
            f"earlier ones, so the question has to come after the context), got {template!r}"
        )
        raise ValueError(msg)
    if template.count("{context}") != 1 or template.count("{question}") != 1:
        msg = f"prompt_template must contain '{{context}}' and '{{question}}' exactly once each, got {template!r}"
        raise ValueError(msg)
