"""The options every LangChain class shares, declared once.

:class:`InfiniRetriOptions` carries the engine, the full ``retrieval_config`` and one field per
:class:`~infiniretri_integrations.RetrievalConfig` field, generated from the config itself, so a
new config field is an option of the retriever, the compressor and the QA runnable at once;
values are validated by the config (one rule, one message).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, model_validator

from infiniretri_integrations.core.config import RetrievalConfig
from infiniretri_integrations.core.integration import coerce_engine, resolve_engine, retrieval_overrides

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import InfiniRetriEngine


def _option_type(hint: Any) -> Any:
    """``hint | None`` when pydantic can validate it, else ``Any`` (the config validates anyway)."""
    try:
        optional = typing.Optional[hint]  # noqa: UP045  # a runtime type object, not an annotation
        TypeAdapter(optional)
    except Exception:
        return Any
    return optional


def _config_fields() -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(RetrievalConfig)
    except Exception:  # a hint only importable for type checkers
        hints = {}
    return {
        field.name: (
            _option_type(hints.get(field.name, Any)),
            Field(default=None, description=f"RetrievalConfig.{field.name} for every call (None: the engine's)."),
        )
        for field in dataclasses.fields(RetrievalConfig)
    }


if TYPE_CHECKING:
    _ConfigOptions = BaseModel
else:
    _ConfigOptions = create_model(
        "_ConfigOptions", __config__=ConfigDict(arbitrary_types_allowed=True), **_config_fields()
    )


class InfiniRetriOptions(_ConfigOptions):
    """Engine and retrieval options shared by every LangChain class of this package.

    Attributes:
        engine: an ``InfiniRetriEngine``, a ``LocalModel`` or a model path; ``None`` (default)
            uses the shared default engine (packaged model, loaded on the first query).
        retrieval_config: a full :class:`RetrievalConfig` applied on every call; the single
            options (``chunk_size``, ``top_k``, ... every config field) override its fields.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: Any = None
    """The engine; ``None``: the shared default engine."""
    retrieval_config: Any = None
    """A full RetrievalConfig overriding the engine's; single options override it."""

    @model_validator(mode="after")
    def _check_options(self) -> Any:
        self.engine = coerce_engine(self.engine)
        self.retrieval_options()
        return self

    def get_engine(self) -> InfiniRetriEngine:
        """The engine used (the shared default engine when none was given)."""
        return resolve_engine(self.engine)

    def retrieval_options(self) -> dict[str, Any]:
        """The per-call engine overrides (validated by :class:`RetrievalConfig`)."""
        single = {field.name: getattr(self, field.name) for field in dataclasses.fields(RetrievalConfig)}
        return retrieval_overrides(self.retrieval_config, single)
