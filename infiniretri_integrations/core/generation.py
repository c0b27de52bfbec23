"""Answer generation with the local model, blocking or streamed token by token."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch

from infiniretri_integrations.core.models import LocalModel


@dataclass
class Generated:
    text: str
    tokens: int
    seconds: float


def _generate_kwargs(lm: LocalModel, input_ids: list[int], max_new_tokens: int) -> dict[str, Any]:
    tokenizer = lm.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tensor = torch.tensor([input_ids], device=lm.device)
    return {
        "input_ids": tensor,
        "attention_mask": torch.ones_like(tensor),
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "pad_token_id": pad,
    }


def generate(lm: LocalModel, input_ids: list[int], max_new_tokens: int) -> Generated:
    """Greedy answer to a fully built prompt."""
    started = time.perf_counter()
    with lm.lock, torch.inference_mode():
        output = cast(torch.Tensor, lm.model.generate(**_generate_kwargs(lm, input_ids, max_new_tokens)))  # type: ignore[operator]
    new_tokens = output[0, len(input_ids) :]
    text = str(lm.tokenizer.decode(new_tokens, skip_special_tokens=True)).strip()
    return Generated(text=text, tokens=int(new_tokens.numel()), seconds=time.perf_counter() - started)


class _Cancelled:
    """Stopping criterion that ends generation once the consumer stops reading."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def stream_generate(lm: LocalModel, input_ids: list[int], max_new_tokens: int, timeout: float = 600.0) -> Iterator[str]:
    """Yield the answer's text pieces as the model produces them.

    Generation runs in a worker thread holding the model lock; an exception there is re-raised
    here, and closing the iterator early stops the worker.
    """
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    streamer = TextIteratorStreamer(lm.tokenizer, timeout=timeout, skip_prompt=True, skip_special_tokens=True)
    cancelled = _Cancelled()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            with lm.lock, torch.inference_mode():
                lm.model.generate(  # type: ignore[operator]
                    **_generate_kwargs(lm, input_ids, max_new_tokens),
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([cancelled]),
                )
        except BaseException as error:  # handed to the consumer thread
            failure.append(error)
            streamer.end()

    worker = threading.Thread(target=work, name="infiniretri-generate", daemon=True)
    worker.start()
    started = False
    held = ""  # trailing whitespace is only emitted if more text follows (matches generate()'s strip)
    try:
        for piece in streamer:
            if not started:
                piece = piece.lstrip()
                started = bool(piece)
            body = piece.rstrip()
            if body:
                yield held + body
                held = piece[len(body) :]
            else:
                held += piece
    finally:
        cancelled.event.set()
        worker.join()
    if failure:
        raise failure[0]
