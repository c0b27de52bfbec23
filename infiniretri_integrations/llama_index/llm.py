"""A LlamaIndex LLM around the same local model the retrieval uses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from infiniretri_integrations.core.engine import InfiniRetriEngine
from infiniretri_integrations.core.generation import generate, stream_generate
from infiniretri_integrations.core.models import LocalModel, as_local_model, default_model

logger = logging.getLogger(__name__)


class InfiniRetriLLM(CustomLLM):
    """The local causal LM (by default the packaged SmolLM2-135M-Instruct) as a LlamaIndex LLM.

    Greedy decoding, real token streaming, prompts wrapped in the tokenizer's chat template when it
    has one. Nothing here ever calls a network model; set it as ``Settings.llm`` to keep a whole
    LlamaIndex pipeline local.

    Args:
        model: an :class:`InfiniRetriEngine` (its model is shared), a ``LocalModel``, a transformers
            model (with ``tokenizer``), a path, or ``None`` for the packaged default model.
            Loaded lazily on first use.
        tokenizer: the tokenizer of a ready-built transformers ``model``.
        max_new_tokens: answer length (``LLMMetadata.num_output``).
        context_window: override of the model's window (default: from its config).
        use_chat_template: ``None``: use the tokenizer's chat template when it has one.

    Example:
        >>> llm = InfiniRetriLLM(max_new_tokens=64)
        >>> llm.class_name(), llm.max_new_tokens
        ('InfiniRetriLLM', 64)
        >>> llm.complete("Name a fruit.").text  # doctest: +SKIP
        'Apple.'
    """

    max_new_tokens: int = Field(default=256, gt=0, description="Tokens to generate at most.")
    context_window_override: int | None = Field(default=None, description="Model window override.")
    use_chat_template: bool | None = Field(default=None, description="Wrap prompts in the chat template.")

    _source: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _lm: LocalModel | None = PrivateAttr(default=None)

    def __init__(
        self,
        model: InfiniRetriEngine | LocalModel | Any | None = None,
        tokenizer: Any = None,
        *,
        max_new_tokens: int = 256,
        context_window: int | None = None,
        use_chat_template: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if context_window is not None and (not isinstance(context_window, int) or context_window <= 0):
            msg = f"context_window must be a positive integer, got {context_window!r}"
            raise ValueError(msg)
        super().__init__(
            max_new_tokens=max_new_tokens,
            context_window_override=context_window,
            use_chat_template=use_chat_template,
            **kwargs,
        )
        self._source = model
        self._tokenizer = tokenizer
        if isinstance(model, LocalModel):
            self._lm = model

    @classmethod
    def class_name(cls) -> str:
        return "InfiniRetriLLM"

    @property
    def local_model(self) -> LocalModel:
        """The model and tokenizer, loaded on first access (shared with the engine it came from)."""
        if self._lm is None:
            source = self._source
            if isinstance(source, InfiniRetriEngine):
                self._lm = source.local_model
            elif source is None:
                self._lm = default_model()
            else:
                self._lm = as_local_model(source, self._tokenizer)
        return self._lm

    @property
    def metadata(self) -> LLMMetadata:
        lm = self.local_model
        return LLMMetadata(
            context_window=self.context_window_override or lm.context_window,
            num_output=self.max_new_tokens,
            is_chat_model=False,
            model_name=lm.name,
        )

    # ------------------------------------------------------------------ prompts
    def _chat_template(self) -> bool:
        has = bool(getattr(self.local_model.tokenizer, "chat_template", None))
        if self.use_chat_template and not has:
            msg = f"use_chat_template=True but the tokenizer of {self.local_model.name!r} has no chat template"
            raise ValueError(msg)
        return has if self.use_chat_template is None else self.use_chat_template

    def _render_messages(self, messages: Sequence[ChatMessage]) -> str:
        if self._chat_template():
            rendered = [{"role": m.role.value, "content": m.content or ""} for m in messages]
            text = self.local_model.tokenizer.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)
            return cast(str, text)
        to_prompt = self.messages_to_prompt
        if to_prompt is None:
            return "\n".join(f"{m.role.value}: {m.content or ''}" for m in messages) + "\nassistant: "
        return to_prompt(messages)

    def _prompt_ids(self, prompt: str, formatted: bool) -> list[int]:
        """Token ids for a completion prompt: unformatted prompts become one user message."""
        if not formatted:
            to_prompt = self.completion_to_prompt
            prompt = to_prompt(prompt) if to_prompt is not None else prompt
            if self._chat_template():
                messages = [ChatMessage(role=MessageRole.USER, content=prompt)]
                if self.system_prompt:
                    messages.insert(0, ChatMessage(role=MessageRole.SYSTEM, content=self.system_prompt))
                prompt = self._render_messages(messages)
        return self._fit(self.local_model.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def _fit(self, ids: list[int]) -> list[int]:
        room = (self.context_window_override or self.local_model.context_window) - self.max_new_tokens
        if room <= 0:
            msg = f"max_new_tokens ({self.max_new_tokens}) leaves no room in the model window"
            raise ValueError(msg)
        if len(ids) > room:
            logger.warning("Prompt of %d tokens exceeds the room of %d tokens; cutting its middle", len(ids), room)
            half = room // 2
            ids = [*ids[:half], *ids[len(ids) - (room - half) :]]
        return ids

    # ------------------------------------------------------------------ completion
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        ids = self._prompt_ids(prompt, formatted)
        generated = generate(self.local_model, ids, kwargs.get("max_new_tokens", self.max_new_tokens))
        return CompletionResponse(text=generated.text, raw={"tokens": generated.tokens, "seconds": generated.seconds})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        ids = self._prompt_ids(prompt, formatted)
        pieces = stream_generate(self.local_model, ids, kwargs.get("max_new_tokens", self.max_new_tokens))

        def gen() -> CompletionResponseGen:
            text = ""
            for piece in pieces:
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()

    # ------------------------------------------------------------------ chat
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        response = self.complete(self._render_messages(messages), formatted=True, **kwargs)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=response.text), raw=response.raw)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        completions = self.stream_complete(self._render_messages(messages), formatted=True, **kwargs)

        def gen() -> ChatResponseGen:
            for completion in completions:
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=completion.text), delta=completion.delta
                )

        return gen()
