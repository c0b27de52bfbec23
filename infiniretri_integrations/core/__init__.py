"""Framework-free InfiniRetri engine: segmentation, chunking, scoring, the retrieval loop,
model loading and generation."""

from infiniretri_integrations.core.config import DEFAULT_PROMPT_TEMPLATE, RetrievalConfig
from infiniretri_integrations.core.engine import AnswerStream, InfiniRetriEngine, normalize_documents
from infiniretri_integrations.core.models import LocalModel, default_model, load_model
from infiniretri_integrations.core.types import (
    Answer,
    ChunkProgress,
    RetrievalResult,
    RetrievalStats,
    RetrievedSentence,
    Sentence,
    SourceDocument,
)

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "Answer",
    "AnswerStream",
    "ChunkProgress",
    "InfiniRetriEngine",
    "LocalModel",
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
