"""A LlamaIndex LLM around the same local model the retrieval uses."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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

from infiniretri_integrations.core.engine_policy import coerce_engine, resolve_engine
from infiniretri_integrations.core.generation import generate, stream_generate
from infiniretri_integrations.core.prompting import (
    plain_prompt,
    render_messages,
    truncate_middle,
    user_messages,
    uses_chat_template,
)

if TYPE_CHECKING:
    from infiniretri_integrations.core.engine import InfiniRetriEngine
    from infiniretri_integrations.core.models import LocalModel


class InfiniRetriLLM(CustomLLM):
    """The local causal LM (by default the packaged SmolLM2-135M-Instruct) as a LlamaIndex LLM.

    Greedy decoding, real token streaming, prompts wrapped in the tokenizer's chat template when it
    has one. Nothing here ever calls a network model; set it as ``Settings.llm`` to keep a whole
    LlamaIndex pipeline local.

    Args:
        model: an :class:`InfiniRetriEngine` (its model is shared), a ``LocalModel``, a transformers
            model (with ``tokenizer``), a model path, or ``None`` for the shared default engine's
            model. Loaded lazily on first use.
        tokenizer: the tokenizer of a ready-built transformers ``model``.
        max_new_tokens: answer length (``LLMMetadata.num_output``); ``None``: the engine's
            ``GenerationConfig.max_new_tokens``.
        context_window: override of the model's window (default: from its config).
        use_chat_template: ``None``: use the tokenizer's chat template when it has one.
        stop: extra stop strings; generate_kwargs: passed to ``model.generate`` (sampling, ...);
            both can also be given per call (``llm.complete(prompt, stop=[...])``).
        device, dtype: where and how the model loads (``None``: automatic) when no ready model
            or engine is given.

    Serialization: ``InfiniRetriLLM.from_json(llm.to_json())`` rebuilds the settings; the model
    itself is not serialized (the copy uses the default model, or pass ``model=`` again).

    Example:
        >>> llm = InfiniRetriLLM(max_new_tokens=64)
        >>> llm.class_name(), llm.max_new_tokens
        ('InfiniRetriLLM', 64)
        >>> llm.complete("Name a fruit.").text  # doctest: +SKIP
        'Apple.'
    """

    max_new_tokens: int | None = Field(default=None, gt=0, description="Tokens to generate at most (None: engine's).")
    context_window: int | None = Field(default=None, gt=0, description="Model window override (None: the model's).")
    use_chat_template: bool | None = Field(default=None, description="Wrap prompts in the chat template.")
    stop: list[str] | None = Field(default=None, description="Extra stop strings (the answer ends before them).")
    generate_kwargs: dict[str, Any] = Field(default_factory=dict, description="Passed to model.generate.")
    device: str | None = Field(default=None, description="Device to load the model on (None: automatic).")
    dtype: str | None = Field(default=None, description="Model dtype (None: automatic).")

    _engine: InfiniRetriEngine | None = PrivateAttr(default=None)

    def __init__(self, model: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if tokenizer is not None and model is not None and not isinstance(model, str | os.PathLike):
            from infiniretri_integrations.core.models import LocalModel

            model = LocalModel(model=model, tokenizer=tokenizer)
        self._engine = coerce_engine(model, self.device, self.dtype)

    @classmethod
    def class_name(cls) -> str:
        return "InfiniRetriLLM"

    @property
    def engine(self) -> InfiniRetriEngine:
        """The engine whose model answers (the shared default engine when none was given)."""
        return resolve_engine(self._engine, self.device, self.dtype)

    @property
    def local_model(self) -> LocalModel:
        """The model and tokenizer, loaded on first access (shared with the engine)."""
        return self.engine.local_model

    @property
    def answer_tokens(self) -> int:
        """Tokens generated at most: ``max_new_tokens`` or the engine's default."""
        return self.max_new_tokens or self.engine.generation.max_new_tokens

    @property
    def metadata(self) -> LLMMetadata:
        lm = self.local_model
        return LLMMetadata(
            context_window=self.context_window or lm.context_window,
            num_output=self.answer_tokens,
            is_chat_model=False,
            model_name=lm.name,
        )

    # ------------------------------------------------------------------ prompts
    def _render_messages(self, messages: Sequence[ChatMessage]) -> str:
        tokenizer = self.local_model.tokenizer
        rendered = [{"role": m.role.value, "content": m.content or ""} for m in messages]
        if uses_chat_template(tokenizer, self.use_chat_template):
            return render_messages(tokenizer, rendered, True)
        to_prompt = self.messages_to_prompt
        return to_prompt(messages) if to_prompt is not None else plain_prompt(rendered)

    def _prompt_ids(self, prompt: str, formatted: bool, max_new_tokens: int) -> list[int]:
        """Token ids for a completion prompt: unformatted prompts become one user message."""
        tokenizer = self.local_model.tokenizer
        if not formatted:
            to_prompt = self.completion_to_prompt
            prompt = to_prompt(prompt) if to_prompt is not None else prompt
            if uses_chat_template(tokenizer, self.use_chat_template):
                prompt = render_messages(tokenizer, user_messages(prompt, self.system_prompt), True)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        room = (self.context_window or self.local_model.context_window) - max_new_tokens
        return truncate_middle(ids, room, "prompt")

    def _generation(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Stop strings and ``generate`` arguments: the instance's, then the call's."""
        stop = [*(self.stop or []), *(kwargs.get("stop") or [])]
        return {
            "stop": stop or None,
            "generate_kwargs": {**self.generate_kwargs, **(kwargs.get("generate_kwargs") or {})},
        }

    # ------------------------------------------------------------------ completion
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        max_new_tokens = kwargs.get("max_new_tokens") or self.answer_tokens
        ids = self._prompt_ids(prompt, formatted, max_new_tokens)
        generated = generate(self.local_model, ids, max_new_tokens, **self._generation(kwargs))
        return CompletionResponse(text=generated.text, raw={"tokens": generated.tokens, "seconds": generated.seconds})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        max_new_tokens = kwargs.get("max_new_tokens") or self.answer_tokens
        ids = self._prompt_ids(prompt, formatted, max_new_tokens)
        pieces = stream_generate(self.local_model, ids, max_new_tokens, **self._generation(kwargs))

        def gen() -> CompletionResponseGen:
            text = ""
            with pieces:  # the consumer stopping early ends the generation
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
