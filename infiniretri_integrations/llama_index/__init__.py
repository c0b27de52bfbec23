"""LlamaIndex adapter for InfiniRetri: node postprocessor, synthesizer, local LLM and query engine.

Everything runs on a local model (by default the packaged SmolLM2-135M-Instruct); no component
falls back to ``Settings.llm`` or a network model. Needs
``pip install "infiniretri-integrations[llama-index]"``.

Example:
    >>> from llama_index.core import Document
    >>> from infiniretri_integrations.llama_index import InfiniRetriQueryEngine
    >>> query_engine = InfiniRetriQueryEngine.from_documents([Document(text="Bob lives in Rome.")])
    >>> print(query_engine.query("Where does Bob live?"))  # doctest: +SKIP
    Bob lives in Rome.
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    msg = (
        "infiniretri_integrations.llama_index needs llama-index-core; install it with "
        '`pip install "infiniretri-integrations[llama-index]"`'
    )
    raise ImportError(msg) from error

from infiniretri_integrations.llama_index.llm import InfiniRetriLLM
from infiniretri_integrations.llama_index.postprocessor import InfiniRetriNodePostprocessor
from infiniretri_integrations.llama_index.query_engine import InfiniRetriQueryEngine
from infiniretri_integrations.llama_index.synthesizer import InfiniRetriSynthesizer

__all__ = [
    "InfiniRetriLLM",
    "InfiniRetriNodePostprocessor",
    "InfiniRetriQueryEngine",
    "InfiniRetriSynthesizer",
]
