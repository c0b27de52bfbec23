"""The options every LangChain class shares, declared once.

:class:`InfiniRetriOptions` carries the engine, the full ``retrieval_config`` and one field per
:class:`~infiniretri_integrations.RetrievalConfig` field, generated from the config itself, so a
new config field is an option of the retriever, the compressor and the QA runnable at once;
values are validated by the config (one rule, one message). An option left out is the engine's
(:data:`ENGINE_DEFAULT`); ``None`` means what it means on the engine (``fusion=None``: no fusion,
``candidate_tokens=None``: the full read), as on the LlamaIndex adapters.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    create_model,
    model_serializer,
    model_validator,
)
from pydantic_core import core_schema

from infiniretri_integrations.core.config import RENAMED_OPTIONS, RetrievalConfig, option_names, renamed_options
from infiniretri_integrations.core.engine_policy import coerce_engine, resolve_engine
from infiniretri_integrations.core.options import retrieval_overrides, unknown_option_message

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import InfiniRetriEngine


class EngineDefault:
    """The value of a retrieval option that was not given: the engine's own setting applies.

    A sentinel rather than ``None``, because ``None`` is a setting of its own for several options
    (``fusion=None`` turns fusion off), and because LangChain rebuilds a runnable from all its fields
    (``configurable_fields``), which must keep an unset option unset.

    Example:
        >>> ENGINE_DEFAULT is EngineDefault(), repr(ENGINE_DEFAULT)
        (True, 'ENGINE_DEFAULT')
    """

    _instance: EngineDefault | None = None

    def __new__(cls) -> EngineDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ENGINE_DEFAULT"

    def __reduce__(self) -> str:
        return "ENGINE_DEFAULT"

    def __copy__(self) -> EngineDefault:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> EngineDefault:
        return self

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """Validated by identity; dumped as ``None`` (the options model leaves unset options out of its dumps)."""
        return core_schema.is_instance_schema(
            cls, serialization=core_schema.plain_serializer_function_ser_schema(_none)
        )


def _none(_: Any) -> None:
    return None


ENGINE_DEFAULT = EngineDefault()
"""An option left unset (the engine's setting); see :class:`EngineDefault`."""


def _option_type(hint: Any) -> Any:
    """``hint | None | EngineDefault`` when pydantic can validate ``hint``, else ``Any`` (the config
    validates anyway)."""
    try:
        optional = typing.Optional[hint]  # noqa: UP045  # a runtime type object, not an annotation
        TypeAdapter(optional)
    except Exception:
        return Any
    return typing.Union[optional, EngineDefault]  # noqa: UP007  # a runtime type object, not an annotation


def _config_fields() -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(RetrievalConfig)
    except Exception:  # a hint only importable for type checkers
        hints = {}
    fields: dict[str, Any] = {
        name: (
            _option_type(hints.get(name, Any)),
            Field(
                default=ENGINE_DEFAULT,
                description=f"RetrievalConfig.{name} for every call (unset: the engine's; None as on the engine).",
            ),
        )
        for name in option_names()
    }
    for old, new in RENAMED_OPTIONS.items():
        fields[old] = (Any, Field(default=None, description=f"Deprecated: use {new} (same meaning)."))
    return fields


if TYPE_CHECKING:
    _ConfigOptions = BaseModel
else:
    _ConfigOptions = create_model(
        "_ConfigOptions", __config__=ConfigDict(arbitrary_types_allowed=True), **_config_fields()
    )


class InfiniRetriOptions(_ConfigOptions):
    """Engine and retrieval options shared by every LangChain class of this package.

    Unknown keyword arguments raise (as ``FlashrankRerank`` and ``CrossEncoderReranker`` do), naming
    the bad key and the valid ones.

    Attributes:
        engine: an ``InfiniRetriEngine``, a ``LocalModel`` or a model path; ``None`` (default)
            uses the shared default engine (packaged model, loaded on the first query).
        device, dtype: where and how the model is loaded (``"cpu"``, ``"cuda"``, ``"bfloat16"``,
            ...; ``None``: automatic), when this object loads it (no ready engine given).
        retrieval_config: a full :class:`RetrievalConfig` applied on every call; the single
            options (``chunk_size``, ``tokens_per_pass``, ... every config field) override its fields.
            A single option left out is the engine's (or ``retrieval_config``'s); one given as ``None``
            is ``None``, as on the engine (``fusion=None``: attention without BM25).
        tokens_per_pass: context tokens kept per forward pass by the top-k rule (not the number
            of documents returned, which is ``k``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    engine: Any = None
    """The engine; ``None``: the shared default engine."""
    device: Any = None
    """Device to load the model on (``None``: CUDA, then MPS, then CPU)."""
    dtype: Any = None
    """Model dtype (``None``: bfloat16 where the device runs it natively, else float32)."""
    retrieval_config: Any = None
    """A full RetrievalConfig overriding the engine's; single options override it."""

    @model_validator(mode="before")
    @classmethod
    def _known_options(cls, data: Any) -> Any:
        if isinstance(data, dict):
            valid = set(cls.model_fields)
            unknown = sorted(str(key) for key in data if key not in valid)
            if unknown:
                raise ValueError(unknown_option_message(cls.__name__, unknown, valid))
        return data

    @model_validator(mode="after")
    def _check_options(self) -> Any:
        for old, new in RENAMED_OPTIONS.items():
            value = getattr(self, old)
            if value is not None:
                current = getattr(self, new)
                moved = renamed_options(
                    {old: value, new: current} if current is not ENGINE_DEFAULT else {old: value}, 5
                )
                object.__setattr__(self, new, moved[new])
                object.__setattr__(self, old, None)
        self.engine = coerce_engine(self.engine, self.device, self.dtype)
        self.retrieval_options()
        return self

    @model_serializer(mode="wrap")
    def _leave_unset_options_out(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        if not isinstance(dumped, dict):
            return dumped
        unset = {name for name in option_names() if getattr(self, name, None) is ENGINE_DEFAULT}
        return {key: value for key, value in dumped.items() if key not in unset}

    def get_engine(self) -> InfiniRetriEngine:
        """The engine used (the shared default engine when none was given)."""
        return resolve_engine(self.engine, self.device, self.dtype)

    def retrieval_options(self) -> dict[str, Any]:
        """The per-call engine overrides (validated by :class:`RetrievalConfig`)."""
        single = {name: value for name in option_names() if (value := getattr(self, name)) is not ENGINE_DEFAULT}
        return retrieval_overrides(self.retrieval_config, single)


class OutputOptions(BaseModel):
    """How kept sentences become output Documents: ``normalize_scores`` reports each query's
    scores on 0-1 (best kept sentence = 1) in ``relevance_score`` (the raw attention score stays
    in ``attention_score``); ``score_threshold`` drops outputs scoring below it (on the reported
    scale)."""

    normalize_scores: bool = False
    """Report ``relevance_score`` on 0-1 per query (raw scores are unbounded sums of attention)."""
    score_threshold: float | None = None
    """Drop sentences whose reported score is below this."""

    @model_validator(mode="after")
    def _check_outputs(self) -> Any:
        from infiniretri_integrations.core.outputs import check_threshold

        check_threshold(self.score_threshold, self.normalize_scores)
        return self
