"""The prompt as token pieces: prefix + context + middle + question + tail.

The template is rendered once with placeholders (inside the model's chat template when it has
one) and each piece is tokenized on its own, so the context and question spans are known
exactly by construction: no string search in the token sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infiniretri_integrations.core.config import RetrievalConfig

_CONTEXT_MARK = "\u2063CTX\u2063"
_QUESTION_MARK = "\u2063QST\u2063"


@dataclass(frozen=True)
class PromptLayout:
    """Token ids around the context; question rows run from the question to the end."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    question: tuple[int, ...]
    tail: tuple[int, ...]

    @property
    def fixed_tokens(self) -> int:
        """Tokens of the prompt that are not context."""
        return len(self.prefix) + len(self.middle) + len(self.question) + len(self.tail)

    @property
    def query_rows(self) -> int:
        return len(self.question) + len(self.tail)

    def assemble(self, context: Sequence[int]) -> tuple[list[int], int, int, int]:
        """``(input_ids, context_start, context_end, question_start)`` for this context."""
        context_start = len(self.prefix)
        context_end = context_start + len(context)
        question_start = context_end + len(self.middle)
        ids = [*self.prefix, *context, *self.middle, *self.question, *self.tail]
        return ids, context_start, context_end, question_start


def uses_chat_template(tokenizer: Any, config: RetrievalConfig) -> bool:
    if config.use_chat_template is not None:
        return config.use_chat_template
    return bool(getattr(tokenizer, "chat_template", None))


def build_layout(tokenizer: Any, config: RetrievalConfig, question: str) -> PromptLayout:
    """Render ``config.prompt_template`` (in the chat template when used) around ``question``."""
    head, rest = config.prompt_template.split("{context}")
    between, after = rest.split("{question}")
    user = f"{head}{_CONTEXT_MARK}{between}{_QUESTION_MARK}{after}"
    chat = uses_chat_template(tokenizer, config)
    if chat:
        messages = []
        if config.system_prompt:
            messages.append({"role": "system", "content": config.system_prompt})
        messages.append({"role": "user", "content": user})
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        rendered = user if not config.system_prompt else f"{config.system_prompt}\n\n{user}"
    if rendered.count(_CONTEXT_MARK) != 1 or rendered.count(_QUESTION_MARK) != 1:
        msg = "The chat template altered the prompt placeholders; pass use_chat_template=False"
        raise ValueError(msg)
    prefix_text, rest_text = rendered.split(_CONTEXT_MARK)
    middle_text, tail_text = rest_text.split(_QUESTION_MARK)

    def encode(text: str, special: bool = False) -> tuple[int, ...]:
        return tuple(tokenizer(text, add_special_tokens=special)["input_ids"]) if text else ()

    prefix = encode(prefix_text, special=not chat)
    eos = getattr(tokenizer, "eos_token_id", None)
    if not chat and prefix and eos is not None and prefix[-1] == eos:
        prefix = prefix[:-1]
    return PromptLayout(prefix=prefix, middle=encode(middle_text), question=encode(question), tail=encode(tail_text))
