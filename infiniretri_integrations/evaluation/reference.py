"""Running the authors' package, ``infini-retri==0.0.3``, on this package's model and settings:
the one place the speed benchmark, the evidence benchmark and the QA evaluation call it from.

The reference reads attention weights, so the model must run eager attention: either switch a
loaded model for the call (:func:`eager_attention`) or load an eager copy
(``load_model(..., attn_implementation="eager")``). Its chunk size, top-K and phrase window are
the engine configuration's (:func:`reference_options`); its kept text is the context part of the
prompt it builds (:func:`reference_kept_text`).

Example (needs ``pip install infini-retri==0.0.3 scipy seaborn matplotlib tqdm``)::

    from infiniretri_integrations import RetrievalConfig, default_model
    from infiniretri_integrations.evaluation.reference import reference_keep

    kept = reference_keep(default_model(), long_text, "Who signed it?", RetrievalConfig())
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from infiniretri_integrations.core.config import DEFAULT_CHUNK_SIZE, DEFAULT_TOKENS_PER_PASS

if TYPE_CHECKING:
    from infiniretri_integrations.core.config import RetrievalConfig
    from infiniretri_integrations.core.models import LocalModel

INSTALL_HINT = "pip install infini-retri==0.0.3 scipy seaborn matplotlib tqdm"
"""What installs the reference package and the imports it needs."""


def reference_options(config: RetrievalConfig) -> dict[str, int]:
    """The reference's ``topk``, ``phrase_token_num`` and ``chunk_size`` for an engine configuration
    (the resolved tokens per pass and chunk size, the defaults where the configuration leaves them).

    Example:
        >>> from infiniretri_integrations.core.config import RetrievalConfig
        >>> reference_options(RetrievalConfig(tokens_per_pass=64, chunk_size=512, phrase_window=3))
        {'topk': 64, 'phrase_token_num': 3, 'chunk_size': 512}
    """
    return {
        "topk": config.effective_tokens_per_pass or DEFAULT_TOKENS_PER_PASS,
        "phrase_token_num": config.phrase_window,
        "chunk_size": config.chunk_size or DEFAULT_CHUNK_SIZE,
    }


@contextmanager
def eager_attention(model: Any) -> Iterator[Any]:
    """``model`` (a transformers model) with eager attention inside the block, its own attention
    implementation restored afterwards (also on an error).

    Example::

        with eager_attention(lm.model) as model:
            assert model.config._attn_implementation == "eager"
    """
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


def reference_kept_text(prompt_text: str, template: str) -> str:
    """The context part of the prompt the reference package built around its kept text.

    Example:
        >>> reference_kept_text("Read: A. B.\\nQ: why?", "Read: {context}\\nQ: {question}")
        'A. B.'
    """
    head, _, rest = template.partition("{context}")
    between = rest.split("{question}")[0]
    start = prompt_text.find(head)
    body = prompt_text[start + len(head) :] if start >= 0 else prompt_text
    end = body.rfind(between)
    return body[:end] if end >= 0 else body


def reference_pipeline(lm: LocalModel, config: RetrievalConfig) -> Any:
    """The reference's ``Pipline`` on ``lm``'s model and tokenizer with ``config``'s options
    (:func:`reference_options`). The model must already run eager attention (the reference
    checks): inside :func:`eager_attention`, or an eager copy.

    Raises:
        ImportError: the reference package is not installed (see :data:`INSTALL_HINT`).
    """
    from infini_retri.pipline import Pipline

    return Pipline(model=lm.model, tokenizer=lm.tokenizer, config=reference_options(config))


def reference_generate(
    pipeline: Any,
    lm: LocalModel,
    text: str,
    question: str,
    template: str,
    *,
    gen_name: str,
    max_new_tokens: int = 1,
) -> tuple[str, dict[str, Any]]:
    """One reference run over ``text`` (under ``lm``'s lock): its answer and its info dict
    (``input_text`` holds the prompt around its kept text, ``input_token_length`` its length)."""
    with lm.lock:
        response, info = pipeline.generate2(
            data_dict={"context": text, "question": question},
            prompt=template,
            gen_name=gen_name,
            max_new_tokens=max_new_tokens,
        )
    return str(response), dict(info)


def reference_keep(lm: LocalModel, text: str, question: str, config: RetrievalConfig, *, gen_name: str) -> str:
    """The text the reference keeps of ``text`` for ``question``: ``lm`` switched to eager
    attention for the call, ``config``'s options and prompt template, one generated token."""
    with eager_attention(lm.model):
        pipeline = reference_pipeline(lm, config)
        _, info = reference_generate(pipeline, lm, text, question, config.prompt_template, gen_name=gen_name)
    return reference_kept_text(str(info["input_text"]), config.prompt_template)
