"""Framework-free InfiniRetri engine: segmentation, chunking, scoring, the retrieval loop,
model loading and generation.

The engine (and with it torch) is imported on first use of its names, so that importing the
package or an adapter stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infiniretri_integrations.core.config import DEFAULT_PROMPT_TEMPLATE, GenerationConfig, RetrievalConfig
from infiniretri_integrations.core.models import LocalModel, default_model, load_model
from infiniretri_integrations.core.types import (
    Answer,
    ChunkProgress,
    RetrievalCancelled,
    RetrievalResult,
    RetrievalStats,
    RetrievedSentence,
    Sentence,
    SourceDocument,
)

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import AnswerStream, InfiniRetriEngine, normalize_documents

_LAZY = {"AnswerStream", "InfiniRetriEngine", "normalize_documents"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from infiniretri_integrations.core import engine

        return getattr(engine, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "Answer",
    "AnswerStream",
    "ChunkProgress",
    "GenerationConfig",
    "InfiniRetriEngine",
    "LocalModel",
    "RetrievalCancelled",
    "RetrievalConfig",
    "RetrievalResult",
    "RetrievalStats",
    "RetrievedSentence",
    "Sentence",
    "SourceDocument",
    "default_model",
    "load_model",
    "normalize_documents",
]
