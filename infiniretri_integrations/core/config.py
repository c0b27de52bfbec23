"""Hyperparameters of the method, with the reference package's defaults, validated on construction."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from typing import Any, Literal

DEFAULT_PROMPT_TEMPLATE = (
    "Read the book and answer the question. Be very concise in your answer.\n\n"
    "{context}\n\nQuestion:\n\n{question}\n\nAnswer:"
)
"""The reference package's template: context first, question after it."""

DEFAULT_CHUNK_SIZE = 4096
"""Document tokens per pass when ``chunk_size`` is unset. For a model whose window cannot hold it
next to the prompt and a working set, the unset chunk size is lowered (to half of what the prompt
leaves); an explicit ``chunk_size`` is never changed."""

DEFAULT_MAX_SENTENCE_TOKENS = 256
"""Longest sentence piece when ``max_sentence_tokens`` is unset (lowered to the chunk size when
the chunk is smaller)."""

DEFAULT_TOKENS_PER_PASS = 300
"""Context tokens the top-k rule keeps per pass when ``tokens_per_pass`` is unset (the reference
package's ``topk``)."""

DEFAULT_WORKING_SET_TOKENS = 1024
"""With ``token_budget`` and no ``working_set_tokens``: each pass keeps the best sentences up to
``max(token_budget, 1024)`` tokens for the next, so that a small budget still lets later chunks
compete with a working set."""

DEFAULT_FUSION_WEIGHT = 2.5
"""Weight of the lexical signal's reciprocal rank relative to attention's when ``fusion_weight``
is unset (chosen on the calibration half of HotpotQA-long; see docs/evaluation.md)."""

DEFAULT_SIMILARITY_WEIGHT = 1.5
"""Weight of the similarity signal's reciprocal rank relative to attention's when
``similarity_weight`` is unset (chosen on the calibration halves; see docs/evaluation.md)."""

SIMILARITY_SIGNALS = ("hidden", "embeddings")
"""``similarity`` values: ``"hidden"``: hidden states entering ``similarity_layer``, captured in the
scoring passes; ``"embeddings"``: the scoring model's input embeddings (no forward pass)."""

SIMILARITY_DEPTH = 0.3
"""With ``similarity_layer`` unset, the similarity reads the hidden states entering this fraction
of the model's depth (layer 9 of SmolLM2's 30), or the deepest scoring layer when that is shallower."""

CASCADE_SIMILARITY_WEIGHT = 1.0
"""Weight of the input-embedding similarity's reciprocal rank relative to BM25's in the cascade's
first stage (with ``similarity`` set)."""

AUTO_CANDIDATE_TOKENS = 16384
"""The candidate budget of ``candidate_tokens="auto"`` (scoring-model tokens): about four passes
of the default chunk, so an input of any length costs about what 16K tokens cost to read."""

AUTO_CASCADE_ABOVE = 65536
"""Under ``candidate_tokens="auto"``, inputs longer than this many scoring-model tokens go through
the cascade; shorter ones are read whole. Up to here the full read takes about two minutes on two
CPU cores, and the cascade was measured to lose evidence that shares no word with the question at
64K (docs/cascade.md), so the full read is kept where it is affordable."""

DEFAULT_CANDIDATE_COVERAGE = 0.25
"""Share of ``candidate_tokens`` spent on evenly spaced coverage windows when
``candidate_coverage`` is unset (the rest goes to the best BM25 sentences and their neighbours)."""

DEFAULT_MAX_NEW_TOKENS = 128
"""Answer length in tokens (the reference package's)."""

PROMPT_FIELDS = ("prompt_template", "system_prompt", "use_chat_template")
"""The :class:`RetrievalConfig` fields that shape the prompt: the scoring passes read it, and the
answer is generated from the same prompt around the kept sentences."""

RENAMED_OPTIONS: dict[str, str] = {"top_k": "tokens_per_pass", "max_cache_tokens": "working_set_tokens"}
"""Old option name -> new name; the old names work for one more release, with a ``DeprecationWarning``."""


def renamed_option(old: str, stacklevel: int = 3) -> str:
    """The new name of a renamed option, warning the caller that the old one is deprecated."""
    new = RENAMED_OPTIONS[old]
    warnings.warn(f"{old!r} is deprecated, use {new!r} (same meaning)", DeprecationWarning, stacklevel=stacklevel)
    return new


def renamed_options(options: Mapping[str, Any], stacklevel: int = 3) -> dict[str, Any]:
    """``options`` with renamed option names replaced by the new ones (each old name warns the
    caller ``stacklevel`` frames up); giving both names with different values is an error.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     renamed_options({"top_k": 50, "chunk_size": 512})
        {'tokens_per_pass': 50, 'chunk_size': 512}
    """
    result: dict[str, Any] = {}
    for name, value in options.items():
        if name not in RENAMED_OPTIONS:
            result.setdefault(name, value)
            continue
        new = renamed_option(name, stacklevel + 1)
        if new in options and options[new] != value:
            msg = f"{name}={value!r} and {new}={options[new]!r} are the same option: pass {new} only"
            raise ValueError(msg)
        result[new] = value
    return result


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
    """Every knob of InfiniRetri retrieval; each option means one thing whatever the others are.

    Options left at ``None`` take a default that may depend on the model or on other options
    (said per option); a value you set is used as given, or refused with an error naming it.

    Args:
        chunk_size: document tokens read per forward pass (unset: :data:`DEFAULT_CHUNK_SIZE`,
            4096, lowered for a model whose window cannot hold it; the reference uses 1024;
            4096 measured as good on evidence recall and ~1.6x cheaper, since each pass re-reads
            the working set).
        tokens_per_pass: the top-k rule: the highest-scoring context tokens kept per pass, every
            sentence holding one kept whole (unset: :data:`DEFAULT_TOKENS_PER_PASS`, 300, as the
            reference). Not with ``token_budget``, which keeps by score up to a token count
            (a per-call ``token_budget`` replaces an engine's ``tokens_per_pass``, and the
            other way round: see :meth:`replace`).
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
        working_set_tokens: the most tokens of kept sentences each pass carries to the next
            (the working set, read again beside the next chunk). Unset: what the model window
            leaves beside the chunk and the prompt; with ``token_budget``, each pass keeps the
            best sentences up to ``max(token_budget, working_set_tokens or`` :data:`DEFAULT_WORKING_SET_TOKENS`
            ``)`` and carries at most ``working_set_tokens`` of them. The window always caps it.
        max_sentence_tokens: longer "sentences" (text without punctuation, code, junk) are split at
            line breaks, then spaces, then token boundaries into pieces of at most this many
            tokens (unset: :data:`DEFAULT_MAX_SENTENCE_TOKENS`, 256, or the chunk size when smaller).
        prompt_template: must contain ``{context}`` before ``{question}``; the scoring passes
            read this prompt and the answer is generated from it.
        system_prompt: optional system message for chat templates (scoring passes and answer).
        use_chat_template: ``None`` wraps the prompt in the tokenizer's chat template when it has one.
        token_budget: the result: the best-scoring sentences until this many tokens of the
            answering model (the engine's ``model``, which reads them) are kept, in document
            order. ``None`` keeps what the top-k rule keeps.
        fusion: a lexical signal fused with attention by reciprocal rank (default ``"bm25"``: BM25
            of each sentence with its passage's first line, over the same sentences), or ``None``
            for attention alone (the paper's method). The one way to switch fusion off.
        fusion_weight: weight (> 0) of the lexical signal's reciprocal rank relative to
            attention's (unset: :data:`DEFAULT_FUSION_WEIGHT`, 2.5; relative to a ``probe``, the
            probe's own, 1.25 for the shipped one). Only with ``fusion``.
        fusion_stage: ``"final"`` (unset) fuses once, over every sentence of the input (each with
            the attention score of the last pass that read it), after the chunk loop; ``"pass"``
            fuses inside every pass, so the fused score also chooses what each pass carries on.
            Only with ``fusion``.
        content_free: subtract the attention a content-free question (``"N/A"``) puts on each
            context token (ICR). The context is encoded once per pass and shared by both
            questions, so the extra cost is one pass over the question tokens.
        similarity: a second signal of the scoring model's own, fused with attention by
            reciprocal rank over every sentence read (:mod:`~infiniretri_integrations.core.similarity`):
            the cosine between the question and each sentence in the model's standardised hidden
            states. ``"hidden"`` (default) reads the states entering ``similarity_layer``, captured in
            the scoring passes (no extra pass over the context; one short forward of the question
            alone); ``"embeddings"`` reads the input embeddings (no forward at all); ``None`` leaves
            attention (and ``fusion``) alone. It finds evidence that shares no word with the
            question, which neither attention nor BM25 does. With ``fusion_stage="pass"`` the lexical
            signal also chooses what each pass carries, and the final cut fuses all three signals
            over every sentence read.
        similarity_layer: the layer whose incoming hidden states ``"hidden"`` reads (unset:
            :data:`SIMILARITY_DEPTH` of the model's depth, at most the deepest scoring layer; a
            deeper layer makes every pass run further). Only with ``similarity="hidden"``.
        similarity_weight: weight (> 0) of the similarity's reciprocal rank relative to
            attention's (unset: :data:`DEFAULT_SIMILARITY_WEIGHT`; relative to a ``probe``, the
            probe's own, 0.25 for the shipped one). Only with ``similarity``.
        candidate_tokens: the cascade for long inputs. A number: the chunk loop reads only a
            candidate set of at most this many tokens (of the scoring model) chosen by a first
            stage over all sentences (BM25 fused with the input-embedding similarity): each
            document's first sentence, evenly spaced coverage windows, then the best-scoring
            sentences with one neighbour on each side (:mod:`~infiniretri_integrations.core.cascade`).
            Kept sentences keep their document offsets. An input that fits is read whole.
            ``"auto"`` (default): :data:`AUTO_CANDIDATE_TOKENS` for inputs longer than
            :data:`AUTO_CASCADE_ABOVE` tokens, every token read below. ``None``: every token is
            read, whatever the length (the full read).
        candidate_coverage: share of ``candidate_tokens`` spent first on evenly spaced coverage
            windows of ~128 tokens, so the attention also sees text that shares no word with
            the question (unset: :data:`DEFAULT_CANDIDATE_COVERAGE`, 0.25), in ``[0, 1)``.
            Only with ``candidate_tokens``.
        probe: rank by a probe on every head's attention instead of the scoring layer's attention
            alone (:mod:`~infiniretri_integrations.core.probe`; Sentinel, arXiv 2505.23277): the
            passes record each sentence's attention density under every head of the layers up to
            the scoring layer, and a logistic regression fitted per model turns them into the
            sentence's score, fused with ``fusion`` and ``similarity`` as attention is (with the
            probe's own weights where ``fusion_weight``/``similarity_weight`` are unset).
            ``"auto"`` (default): the probe shipped for the scoring model (attention as read when
            there is none, or where it does not fit the call: a shallower ``scoring_layer``,
            ``content_free``, ``share_context``); a path: a probe file
            (:meth:`~infiniretri_integrations.core.probe.AttentionProbe.save`), which must fit;
            ``None``: the scoring layer's attention (the paper's method).

    Renamed (the old names work until the next release, with a ``DeprecationWarning``):
    ``top_k`` is ``tokens_per_pass``, ``max_cache_tokens`` is ``working_set_tokens``;
    ``max_new_tokens`` moved to :class:`GenerationConfig`.

    Example:
        >>> RetrievalConfig(tokens_per_pass=100).tokens_per_pass
        100
        >>> RetrievalConfig(tokens_per_pass=0)
        Traceback (most recent call last):
        ...
        ValueError: tokens_per_pass must be a positive integer, got 0
        >>> RetrievalConfig(token_budget=512, tokens_per_pass=100)
        Traceback (most recent call last):
        ...
        ValueError: tokens_per_pass=100 does nothing with token_budget=512 (each pass then keeps sentences by score up to working_set_tokens); set one of them
    """

    chunk_size: int | None = None
    tokens_per_pass: int | None = None
    phrase_window: int = 8
    question_weights: bool = True
    scoring_layer: LayerSpec = None
    scoring_heads: HeadSelection = None
    working_set_tokens: int | None = None
    max_sentence_tokens: int | None = None
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    system_prompt: str | None = None
    use_chat_template: bool | None = None
    token_budget: int | None = None
    fusion: str | None = "bm25"
    fusion_weight: float | None = None
    fusion_stage: Literal["final", "pass"] | None = None
    content_free: bool = False
    similarity: str | None = "hidden"
    similarity_layer: int | None = None
    similarity_weight: float | None = None
    candidate_tokens: int | Literal["auto"] | None = "auto"
    candidate_coverage: float | None = None
    probe: str | None = "auto"
    top_k: InitVar[int | None] = None
    max_cache_tokens: InitVar[int | None] = None
    max_new_tokens: InitVar[int | None] = None
    legacy_max_new_tokens: int | None = field(default=None, init=False, repr=False, compare=False)
    """``max_new_tokens`` given here (deprecated): the engine takes it as its generation default."""

    def __post_init__(self, top_k: int | None, max_cache_tokens: int | None, max_new_tokens: int | None) -> None:
        for old, value in (("top_k", top_k), ("max_cache_tokens", max_cache_tokens)):
            if value is not None:
                new = renamed_option(old, stacklevel=4)
                if getattr(self, new) is not None and getattr(self, new) != value:
                    msg = f"{old}={value!r} and {new}={getattr(self, new)!r} are the same option: pass {new} only"
                    raise ValueError(msg)
                object.__setattr__(self, new, value)
        if max_new_tokens is not None:
            warnings.warn(
                "RetrievalConfig(max_new_tokens=...) is deprecated: answer length is a generation option, "
                "use GenerationConfig(max_new_tokens=...) or InfiniRetriEngine(max_new_tokens=...)",
                DeprecationWarning,
                stacklevel=3,
            )
            _require_positive_int("max_new_tokens", max_new_tokens)
            object.__setattr__(self, "legacy_max_new_tokens", max_new_tokens)
        for name in (
            "chunk_size",
            "tokens_per_pass",
            "working_set_tokens",
            "max_sentence_tokens",
            "token_budget",
        ):
            if getattr(self, name) is not None:
                _require_positive_int(name, getattr(self, name))
        _require_positive_int("phrase_window", self.phrase_window)
        if self.tokens_per_pass is not None and self.token_budget is not None:
            msg = (
                f"tokens_per_pass={self.tokens_per_pass!r} does nothing with token_budget={self.token_budget!r} "
                "(each pass then keeps sentences by score up to working_set_tokens); set one of them"
            )
            raise ValueError(msg)
        self._validate_fusion()
        self._validate_similarity()
        self._validate_cascade()
        self._validate_probe()
        if (
            self.max_sentence_tokens is not None
            and self.chunk_size is not None
            and self.max_sentence_tokens > self.chunk_size
        ):
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

    def _validate_fusion(self) -> None:
        if self.fusion is not None:
            from infiniretri_integrations.core.lexical import LEXICAL_SIGNALS

            if self.fusion not in LEXICAL_SIGNALS:
                msg = f"fusion must be None or one of {sorted(LEXICAL_SIGNALS)}, got {self.fusion!r}"
                raise ValueError(msg)
        elif self.fusion_weight is not None or self.fusion_stage is not None:
            given = {"fusion_weight": self.fusion_weight, "fusion_stage": self.fusion_stage}
            named = ", ".join(f"{k}={v!r}" for k, v in given.items() if v is not None)
            msg = f"{named} applies only with fusion; fusion=None (attention alone) uses no fusion options"
            raise ValueError(msg)
        if self.fusion_stage is not None and self.fusion_stage not in ("final", "pass"):
            msg = f"fusion_stage must be 'final', 'pass' or None (final), got {self.fusion_stage!r}"
            raise ValueError(msg)
        if self.fusion_weight is not None and (
            not isinstance(self.fusion_weight, (int, float))
            or isinstance(self.fusion_weight, bool)
            or not 0 < self.fusion_weight < float("inf")
        ):
            msg = (
                f"fusion_weight must be a finite number > 0, got {self.fusion_weight!r}; "
                "fusion=None switches fusion off"
            )
            raise ValueError(msg)

    def _validate_similarity(self) -> None:
        if self.similarity is None:
            given = {"similarity_layer": self.similarity_layer, "similarity_weight": self.similarity_weight}
            named = ", ".join(f"{k}={v!r}" for k, v in given.items() if v is not None)
            if named:
                msg = f"{named} applies only with similarity; similarity=None uses no similarity options"
                raise ValueError(msg)
            return
        if self.similarity not in SIMILARITY_SIGNALS:
            msg = f"similarity must be None or one of {list(SIMILARITY_SIGNALS)}, got {self.similarity!r}"
            raise ValueError(msg)
        if self.similarity_layer is not None:
            if self.similarity != "hidden":
                msg = (
                    f"similarity_layer={self.similarity_layer!r} applies only with similarity='hidden' "
                    f"(similarity={self.similarity!r} reads no layer)"
                )
                raise ValueError(msg)
            if not isinstance(self.similarity_layer, int) or isinstance(self.similarity_layer, bool):
                msg = f"similarity_layer must be a layer index (int), got {self.similarity_layer!r}"
                raise ValueError(msg)
        weight = self.similarity_weight
        if weight is not None and (
            not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 < weight < float("inf")
        ):
            msg = f"similarity_weight must be a finite number > 0, got {weight!r}; similarity=None switches it off"
            raise ValueError(msg)

    def _validate_probe(self) -> None:
        if self.probe is None:
            return
        if isinstance(self.probe, os.PathLike):
            object.__setattr__(self, "probe", os.fspath(self.probe))
        if not isinstance(self.probe, str) or not self.probe.strip():
            msg = f"probe must be None, 'auto' or the path of a probe file, got {self.probe!r}"
            raise ValueError(msg)
        if self.content_free and self.probe != "auto":
            msg = f"probe={self.probe!r} does not combine with content_free=True (the probe reads the question's own rows)"
            raise ValueError(msg)

    def _validate_cascade(self) -> None:
        budget = self.candidate_tokens
        if (
            budget is not None
            and budget != "auto"
            and (not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0)
        ):
            msg = f"candidate_tokens must be a positive integer, 'auto' or None (read everything), got {budget!r}"
            raise ValueError(msg)
        coverage = self.candidate_coverage
        if coverage is None:
            return
        if self.candidate_tokens is None:
            msg = (
                f"candidate_coverage={coverage!r} applies only with candidate_tokens (the cascade); "
                "set candidate_tokens too, or leave candidate_coverage unset"
            )
            raise ValueError(msg)
        if not isinstance(coverage, (int, float)) or isinstance(coverage, bool) or not 0 <= coverage < 1:
            msg = (
                f"candidate_coverage must be a number in [0, 1) (the share of candidate_tokens spent on "
                f"coverage windows), got {coverage!r}"
            )
            raise ValueError(msg)

    # ------------------------------------------------------------------ resolved values
    @property
    def effective_tokens_per_pass(self) -> int | None:
        """The top-k rule's tokens per pass: ``tokens_per_pass`` or its default; ``None`` with a
        ``token_budget`` (passes then keep by score)."""
        if self.token_budget is not None:
            return None
        return self.tokens_per_pass if self.tokens_per_pass is not None else DEFAULT_TOKENS_PER_PASS

    @property
    def effective_fusion_weight(self) -> float | None:
        """``fusion_weight`` or its default; ``None`` without fusion."""
        if self.fusion is None:
            return None
        return float(self.fusion_weight) if self.fusion_weight is not None else DEFAULT_FUSION_WEIGHT

    @property
    def effective_similarity_weight(self) -> float | None:
        """``similarity_weight`` or its default; ``None`` without ``similarity``."""
        if self.similarity is None:
            return None
        return float(self.similarity_weight) if self.similarity_weight is not None else DEFAULT_SIMILARITY_WEIGHT

    def candidate_budget(self, input_tokens: int) -> int | None:
        """The cascade's candidate budget for an input of ``input_tokens`` scoring-model tokens, or
        ``None`` when the passes read every token (``candidate_tokens=None``, an input that fits,
        or under ``"auto"`` one of at most :data:`AUTO_CASCADE_ABOVE` tokens).

        Example:
            >>> config = RetrievalConfig()  # candidate_tokens="auto"
            >>> config.candidate_budget(20_000), config.candidate_budget(1_000_000)
            (None, 16384)
            >>> RetrievalConfig(candidate_tokens=4096).candidate_budget(5000)
            4096
        """
        if self.candidate_tokens is None:
            return None
        if self.candidate_tokens == "auto":
            return AUTO_CANDIDATE_TOKENS if input_tokens > AUTO_CASCADE_ABOVE else None
        return self.candidate_tokens if input_tokens > self.candidate_tokens else None

    @property
    def effective_candidate_coverage(self) -> float | None:
        """``candidate_coverage`` or its default; ``None`` without the cascade (``candidate_tokens``)."""
        if self.candidate_tokens is None:
            return None
        return float(self.candidate_coverage) if self.candidate_coverage is not None else DEFAULT_CANDIDATE_COVERAGE

    @property
    def fuses_every_pass(self) -> bool:
        """Whether fusion runs inside every pass (``fusion_stage="pass"``) rather than once at the end."""
        return self.fusion is not None and self.fusion_stage == "pass"

    def effective_max_sentence_tokens(self, chunk_size: int) -> int:
        """``max_sentence_tokens``, or its default lowered to ``chunk_size``."""
        if self.max_sentence_tokens is not None:
            return self.max_sentence_tokens
        return min(DEFAULT_MAX_SENTENCE_TOKENS, chunk_size)

    def replace(self, **changes: Any) -> RetrievalConfig:
        """A copy with some fields changed (validated again); renamed options are accepted with
        a ``DeprecationWarning``.

        ``tokens_per_pass`` and ``token_budget`` choose how passes keep sentences (the top-k rule
        or by score up to a token count): a change that sets one of them replaces the other one
        of this configuration (layered options: the later choice wins); setting both in one
        change is refused. Likewise ``fusion=None`` or ``similarity=None`` also clears this
        configuration's options of that signal (and a similarity that reads no layer clears
        ``similarity_layer``).

        Example:
            >>> RetrievalConfig().replace(phrase_window=15).phrase_window
            15
            >>> RetrievalConfig(tokens_per_pass=24).replace(token_budget=512).tokens_per_pass is None
            True
        """
        changes = renamed_options(changes)
        for chosen, other in (("token_budget", "tokens_per_pass"), ("tokens_per_pass", "token_budget")):
            if changes.get(chosen) is not None and other not in changes:
                changes[other] = None
        switched_off = {
            "fusion": ("fusion_weight", "fusion_stage"),
            "similarity": ("similarity_layer", "similarity_weight"),
        }
        for switch, dependents in switched_off.items():
            if switch in changes and changes[switch] is None:
                for dependent in dependents:
                    changes.setdefault(dependent, None)
        if changes.get("similarity") not in (None, "hidden") and "similarity_layer" not in changes:
            changes["similarity_layer"] = None
        legacy = changes.pop("max_new_tokens", None)
        unknown = set(changes) - set(option_names())
        if unknown:
            msg = f"Unknown retrieval option(s) {sorted(unknown)}; expected some of {list(option_names())}"
            raise TypeError(msg)
        replaced = dataclasses.replace(self, **changes, max_new_tokens=legacy)
        if legacy is None and self.legacy_max_new_tokens is not None:
            object.__setattr__(replaced, "legacy_max_new_tokens", self.legacy_max_new_tokens)
        return replaced


def option_names() -> tuple[str, ...]:
    """Every :class:`RetrievalConfig` option, in declaration order (renamed ones not included).

    Example:
        >>> option_names()[:3]
        ('chunk_size', 'tokens_per_pass', 'phrase_window')
    """
    return tuple(f.name for f in dataclasses.fields(RetrievalConfig) if f.init)


@dataclass(frozen=True)
class GenerationConfig:
    """How the answer is generated from the kept sentences (used only by what answers: the
    engine's ``answer``/``stream`` methods, the QA runnable, the synthesizer, the LLM).

    Args:
        max_new_tokens: answer length in tokens (reference: 128).
        stop: extra stop strings; the answer ends before the first one.
        generate_kwargs: passed to ``model.generate`` (sampling, ``repetition_penalty``, ...).

    Example:
        >>> GenerationConfig(max_new_tokens=32).max_new_tokens
        32
        >>> GenerationConfig(stop="END").stop
        ('END',)
        >>> GenerationConfig(max_new_tokens=0)
        Traceback (most recent call last):
        ...
        ValueError: max_new_tokens must be a positive integer, got 0
    """

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    stop: tuple[str, ...] = ()
    generate_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_positive_int("max_new_tokens", self.max_new_tokens)
        stop = self.stop
        if stop is None:
            stop = ()
        elif isinstance(stop, str):
            stop = (stop,)
        if not isinstance(stop, Sequence) or not all(isinstance(s, str) and s for s in stop):
            msg = f"stop must be a string or a sequence of non-empty strings, got {self.stop!r}"
            raise TypeError(msg)
        object.__setattr__(self, "stop", tuple(stop))
        kwargs = self.generate_kwargs if self.generate_kwargs is not None else {}
        if not isinstance(kwargs, Mapping):
            msg = f"generate_kwargs must be a mapping (a dict of model.generate arguments), got {kwargs!r}"
            raise TypeError(msg)
        object.__setattr__(self, "generate_kwargs", dict(kwargs))

    def replace(self, **changes: Any) -> GenerationConfig:
        """A copy with some fields changed (validated again); ``None`` values leave a field as it is.

        Example:
            >>> GenerationConfig().replace(max_new_tokens=8, stop=None).max_new_tokens
            8
        """
        given = {name: value for name, value in changes.items() if value is not None}
        unknown = set(given) - set(generation_option_names())
        if unknown:
            msg = f"Unknown generation option(s) {sorted(unknown)}; expected some of {list(generation_option_names())}"
            raise TypeError(msg)
        return dataclasses.replace(self, **given)


def generation_option_names() -> tuple[str, ...]:
    """Every :class:`GenerationConfig` option.

    Example:
        >>> generation_option_names()
        ('max_new_tokens', 'stop', 'generate_kwargs')
    """
    return tuple(f.name for f in dataclasses.fields(GenerationConfig))


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
