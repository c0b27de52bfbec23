"""Token counting for the compressor's output budget (tiktoken, offline)."""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

_tiktoken_lock = threading.Lock()


def _llama_index_tiktoken_cache() -> str | None:
    """``llama_index/core/_static/tiktoken_cache`` when llama-index-core is installed (not imported)."""
    try:
        spec = importlib.util.find_spec("llama_index.core")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "_static" / "tiktoken_cache"
        if folder.is_dir():
            return str(folder)
    return None


@functools.lru_cache(maxsize=8)
def tiktoken_encoding(model: str) -> Any:
    """The tiktoken encoding for ``model`` (``cl100k_base`` for unknown names), loaded offline.

    As ``llama_index.core.utils.get_tokenizer`` does: when ``TIKTOKEN_CACHE_DIR`` is unset and
    llama-index-core is installed, its bundled encoding files are used (the variable is set only
    while loading); otherwise tiktoken's own cache (or download) applies.

    Example:
        >>> len(tiktoken_encoding("gpt-4o").encode("hello world"))  # doctest: +SKIP
        2
    """
    import tiktoken

    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = "cl100k_base"
    with _tiktoken_lock:
        bundled = None if "TIKTOKEN_CACHE_DIR" in os.environ else _llama_index_tiktoken_cache()
        if bundled is None:
            return tiktoken.get_encoding(name)
        os.environ["TIKTOKEN_CACHE_DIR"] = bundled
        try:
            return tiktoken.get_encoding(name)
        finally:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)


def count_tokens(text: str, model: str = "gpt-4o") -> int:
    """Tokens of ``text`` in the tiktoken encoding of ``model`` (special tokens counted as text)."""
    return len(tiktoken_encoding(model).encode(text, disallowed_special=()))
