"""Attention-driven sentence retrieval (InfiniRetri, arXiv 2502.12962) for RAG applications.

The framework-free engine lives in :mod:`infiniretri_integrations.core`; LangChain and LlamaIndex
adapters live in :mod:`infiniretri_integrations.langchain` and
:mod:`infiniretri_integrations.llama_index` (installed with the matching extras).
"""

from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from infiniretri_integrations.core import (
    DEFAULT_PROMPT_TEMPLATE,
    Answer,
    ChunkProgress,
    GenerationConfig,
    LocalModel,
    RetrievalConfig,
    RetrievalResult,
    RetrievalStats,
    RetrievedSentence,
    SourceDocument,
    default_model,
    load_model,
)

if TYPE_CHECKING:
    from infiniretri_integrations.core import AnswerStream, InfiniRetriEngine


def __getattr__(name: str) -> Any:
    """``InfiniRetriEngine`` and ``AnswerStream`` load the engine (and torch) on first use."""
    if name in ("AnswerStream", "InfiniRetriEngine"):
        from infiniretri_integrations.core import engine

        return getattr(engine, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


try:
    __version__ = _metadata.version("infiniretri-integrations")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "Answer",
    "AnswerStream",
    "ChunkProgress",
    "GenerationConfig",
    "InfiniRetriEngine",
    "LocalModel",
    "RetrievalConfig",
    "RetrievalResult",
    "RetrievalStats",
    "RetrievedSentence",
    "SourceDocument",
    "__version__",
    "default_model",
    "load_model",
]
