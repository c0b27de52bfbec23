"""Prompts: the retrieval/answer layout as token pieces, chat rendering and middle truncation.

The layout template is rendered once with placeholders (inside the model's chat template when it
has one) and each piece is tokenized on its own, so the context and question spans are known
exactly by construction: no string search in the token sequence. :func:`render_messages` is the
one place a conversation becomes prompt text (the layout and the LlamaIndex LLM both use it);
:func:`truncate_middle` the one place a too-long prompt is cut.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infiniretri_integrations.core.config import RetrievalConfig

logger = logging.getLogger(__name__)

_CONTEXT_MARK = "\u2063CTX\u2063"
_QUESTION_MARK = "\u2063QST\u2063"

Message = Mapping[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""


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

    def assemble(self, context: Sequence[int]) -> tuple[list[int], int, int, int]:
        """``(input_ids, context_start, context_end, question_start)`` for this context."""
        context_start = len(self.prefix)
        context_end = context_start + len(context)
        question_start = context_end + len(self.middle)
        ids = [*self.prefix, *context, *self.middle, *self.question, *self.tail]
        return ids, context_start, context_end, question_start


def uses_chat_template(tokenizer: Any, use_chat_template: bool | None) -> bool:
    """Whether prompts are wrapped in ``tokenizer``'s chat template: ``use_chat_template`` when
    it is a bool (``True`` without a template raises), else whether the tokenizer has one.

    Example:
        >>> class Plain:
        ...     chat_template = None
        >>> uses_chat_template(Plain(), None), uses_chat_template(Plain(), False)
        (False, False)
        >>> uses_chat_template(Plain(), True)
        Traceback (most recent call last):
        ...
        ValueError: use_chat_template=True but the tokenizer Plain has no chat template; pass use_chat_template=None or False
    """
    flag = use_chat_template
    has = bool(getattr(tokenizer, "chat_template", None))
    if flag and not has:
        msg = (
            f"use_chat_template=True but the tokenizer {type(tokenizer).__name__} has no chat template; "
            "pass use_chat_template=None or False"
        )
        raise ValueError(msg)
    return has if flag is None else bool(flag)


def plain_prompt(messages: Sequence[Message]) -> str:
    """A conversation as plain text for models without a chat template: one user turn (after an
    optional system prompt) is its text, longer conversations are ``role: content`` lines.

    Example:
        >>> plain_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
        'Be brief.\\n\\nHi'
        >>> plain_prompt([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        ...               {"role": "user", "content": "Bye"}])
        'user: Hi\\nassistant: Hello\\nuser: Bye\\nassistant: '
    """
    roles = [m["role"] for m in messages]
    if roles in (["user"], ["system", "user"]):
        return "\n\n".join(m["content"] for m in messages if m["content"])
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant: "


def render_messages(tokenizer: Any, messages: Sequence[Message], use_chat_template: bool | None = None) -> str:
    """``messages`` as the prompt text the model continues (its chat template with the generation
    prompt when used, :func:`plain_prompt` otherwise)."""
    if uses_chat_template(tokenizer, use_chat_template):
        rendered = tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )
        return str(rendered)
    return plain_prompt(messages)


def user_messages(user: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """One user turn, after a system message when ``system_prompt`` is set."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": user}]


def truncate_middle(ids: Sequence[int], room: int, what: str = "prompt") -> list[int]:
    """``ids`` cut to ``room`` tokens by dropping the middle (the start and the end usually hold
    the instructions and the question); unchanged when it fits.

    Example:
        >>> truncate_middle([1, 2, 3, 4, 5, 6], 4)
        [1, 2, 5, 6]
        >>> truncate_middle([1, 2], 0)
        Traceback (most recent call last):
        ...
        ValueError: no room left for the prompt (room 0 tokens); lower max_new_tokens or shorten the input
    """
    if len(ids) <= room:
        return list(ids)
    if room <= 0:
        msg = f"no room left for the {what} (room {room} tokens); lower max_new_tokens or shorten the input"
        raise ValueError(msg)
    logger.warning("The %s of %d tokens exceeds the room of %d tokens; cutting its middle", what, len(ids), room)
    half = room // 2
    return [*ids[:half], *ids[len(ids) - (room - half) :]]


def build_layout(tokenizer: Any, config: RetrievalConfig, question: str) -> PromptLayout:
    """Render ``config.prompt_template`` (in the chat template when used) around ``question``."""
    head, rest = config.prompt_template.split("{context}")
    between, after = rest.split("{question}")
    user = f"{head}{_CONTEXT_MARK}{between}{_QUESTION_MARK}{after}"
    chat = uses_chat_template(tokenizer, config.use_chat_template)
    rendered = render_messages(tokenizer, user_messages(user, config.system_prompt), chat)
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


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an assistant turn: the EOS token and, with a chat template, the special
    token the template puts right after an assistant message (``<|im_end|>``, ``<end_of_turn>``).

    Example:
        >>> class Plain:
        ...     eos_token_id = 7
        ...     chat_template = None
        >>> end_of_turn_ids(Plain())
        [7]
    """
    ids: list[int] = []
    eos = getattr(tokenizer, "eos_token_id", None)
    for candidate in eos if isinstance(eos, list) else [eos]:
        if isinstance(candidate, int):
            ids.append(candidate)
    if getattr(tokenizer, "chat_template", None):
        marker = "\u2063END\u2063"
        try:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False
            )
        except Exception:  # a template that insists on other roles: EOS alone
            return ids
        after = str(rendered).split(marker, 1)[-1]
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        for token in tokenizer(after, add_special_tokens=False)["input_ids"][:2]:
            if token in special and token not in ids:
                ids.append(token)
                break
    return ids
