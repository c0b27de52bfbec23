"""Answer generation with the local model, blocking or streamed token by token, with answers that end.

Generation stops at the end of the assistant turn (EOS and the chat template's end-of-turn token),
at a stop string, or when the answer starts repeating itself; an echoed prefix such as
``"The answer is:"`` is stripped. One pure function, :func:`clean_answer`, decides what text is
shown, so a streamed answer is exactly the blocking one, piece by piece. ``generate_kwargs`` pass
through to ``model.generate`` (sampling, ``repetition_penalty``, ...), as in outlines and
langchain-huggingface. A stopping criterion checked after every token also ends generation when
the caller stops: a ``cancel`` event, or :meth:`TokenStream.close` (or the stream being dropped).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infiniretri_integrations.core.models import LocalModel
from infiniretri_integrations.core.prompting import end_of_turn_ids

if TYPE_CHECKING:
    import torch

DEFAULT_STOP: tuple[str, ...] = ("\nQuestion:", "\nQuestion :")
"""Stop strings always applied: the default prompt's next question (the model inventing a new turn)."""

REPEAT_CHARS = 32
"""The answer is cut where a span of this many characters starts that already occurred in it."""

_ECHO = re.compile(r"\s*(?:(?:the\s+)?(?:final\s+)?answer(?:\s+is)?|response)\s*:\s*", re.IGNORECASE)
_ECHO_FORMS = ("answer:", "answeris:", "theanswer:", "theansweris:", "finalanswer:", "thefinalansweris:", "response:")
_RESERVED = frozenset({"input_ids", "attention_mask", "streamer", "max_new_tokens"})


@dataclass
class Generated:
    """A generated answer: its text, the tokens generated, seconds taken and why it ended
    (``"eos"``, ``"stop"``, ``"repetition"``, ``"length"``, or ``"cancelled"`` by the caller's
    ``cancel`` event)."""

    text: str
    tokens: int
    seconds: float
    finish_reason: str = "eos"


@dataclass(frozen=True)
class _Cut:
    visible: str
    reason: str | None  # why the answer is over, None while it may go on


def clean_answer(raw: str, stop: Sequence[str] = DEFAULT_STOP, *, final: bool = True) -> tuple[str, str | None]:
    """The answer text to show for the raw generated text ``raw``, and why it is over (``None``
    while it may go on).

    With ``final=False`` (``raw`` may still grow) only text that stays in the final answer is
    returned: a possible echo prefix, a possible stop string and possibly repeated text are held
    back. Leading/trailing whitespace is dropped, an echoed prefix (``"Answer:"``, ``"The answer
    is:"``) is stripped, the text is cut at the first stop string and where it starts repeating.

    Example:
        >>> clean_answer("The answer is: Bob lives in Rome.")
        ('Bob lives in Rome.', None)
        >>> clean_answer("Rome.\\nQuestion: Where is Paris?")
        ('Rome.', 'stop')
        >>> clean_answer("Bob lives in Rome. Bob lives in Rome. Bob lives in Rome.")
        ('Bob lives in Rome.', 'repetition')
        >>> clean_answer("The answ", final=False)
        ('', None)
    """
    cut = _cut(raw, tuple(stop), final)
    return cut.visible, cut.reason


def _cut(raw: str, stop: tuple[str, ...], final: bool) -> _Cut:
    text = raw.lstrip()
    while (echo := _ECHO.match(text)) is not None:
        if not final and not text[echo.end() :].strip():
            return _Cut("", None)
        text = text[echo.end() :]
    if not final and _could_be_echo(text):
        return _Cut("", None)
    end, reason = len(text), None
    repeat = _repeat_start(text)
    if repeat is not None:
        end, reason = repeat, "repetition"
    for string in stop:
        at = text.find(string, 0, end + len(string) - 1)
        if string and 0 <= at < end:
            end, reason = at, "stop"
    if final or reason is not None:
        return _Cut(_strip_trailing_echo(text[:end]).rstrip(), reason)
    hold = min(_stop_hold(text, stop), _repeat_hold(text), _echo_hold(text))
    return _Cut(text[: min(end, hold)].rstrip(), None)


def _last_segment_start(text: str) -> int:
    """Where the text after the last line break or sentence end begins."""
    return max(text.rfind(mark) + 1 for mark in "\n.!?")


def _strip_trailing_echo(text: str) -> str:
    """``text`` without an echo prefix left dangling at its end (``"Rome.\n\nThe answer is:"``)."""
    while text.strip():
        start = _last_segment_start(text.rstrip())
        echo = _ECHO.fullmatch(text[start:])
        if echo is None or start == 0:
            break
        text = text[:start]
    return text


def _echo_hold(text: str) -> int:
    """Where a trailing segment that may still become a dangling echo begins."""
    start = _last_segment_start(text)
    segment = text[start:]
    if segment.strip() and (_could_be_echo(segment) or _ECHO.fullmatch(segment)):
        return start
    return len(text)


def _could_be_echo(text: str) -> bool:
    squeezed = re.sub(r"\s+", "", text.lower())
    return any(form.startswith(squeezed) for form in _ECHO_FORMS)


def _repeat_start(text: str) -> int | None:
    seen: set[str] = set()
    for start in range(len(text) - REPEAT_CHARS + 1):
        window = text[start : start + REPEAT_CHARS]
        if window in seen and window.strip():
            return start
        seen.add(window)
    return None


def _repeat_hold(text: str) -> int:
    """Where text that may still turn into a repetition begins (a suffix seen earlier)."""
    for size in range(min(REPEAT_CHARS - 1, len(text) - 1), 0, -1):
        start = len(text) - size
        if text.find(text[start:], 0, start + size - 1) >= 0:
            return start
    return len(text)


def _stop_hold(text: str, stop: tuple[str, ...]) -> int:
    """Where a suffix that may become a stop string begins."""
    hold = len(text)
    for string in stop:
        for size in range(min(len(string) - 1, len(text)), 0, -1):
            if text.endswith(string[:size]):
                hold = min(hold, len(text) - size)
                break
    return hold


# ------------------------------------------------------------------ stopping the model
class _AnswerOver:
    """Stopping criterion, checked after every token: the answer is over (stop string or
    repetition), the reader left (:meth:`stop`) or the caller's ``cancel`` event is set."""

    def __init__(
        self, tokenizer: Any, prompt_length: int, stop: tuple[str, ...], cancel: threading.Event | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.stop_strings = stop
        self.cancelled = threading.Event()
        self.cancel = cancel

    def stop(self) -> None:
        """End the generation at the next token."""
        self.cancelled.set()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called or the caller's ``cancel`` event is set."""
        return self.cancelled.is_set() or (self.cancel is not None and self.cancel.is_set())

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        import torch

        over = self.stopped
        if not over:
            new = input_ids[0, self.prompt_length :]
            raw = str(self.tokenizer.decode(new, skip_special_tokens=True))
            over = _cut(raw, self.stop_strings, final=False).reason is not None
        return torch.full((input_ids.shape[0],), over, dtype=torch.bool, device=input_ids.device)


def _generate_kwargs(
    lm: LocalModel,
    input_ids: list[int],
    max_new_tokens: int,
    criterion: _AnswerOver,
    generate_kwargs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    import torch
    from transformers import StoppingCriteriaList

    tokenizer = lm.tokenizer
    extra = dict(generate_kwargs or {})
    reserved = sorted(_RESERVED & set(extra))
    if reserved:
        msg = (
            f"generate_kwargs must not set {reserved}: pass max_new_tokens as its own option, the prompt is built here"
        )
        raise ValueError(msg)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tensor = torch.tensor([input_ids], device=lm.device)
    criteria = StoppingCriteriaList([criterion, *extra.pop("stopping_criteria", [])])
    return {
        "input_ids": tensor,
        "attention_mask": torch.ones_like(tensor),
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "pad_token_id": pad,
        "eos_token_id": end_of_turn_ids(tokenizer) or None,
        **extra,
        "stopping_criteria": criteria,
    }


def _stop_strings(stop: Sequence[str] | str | None) -> tuple[str, ...]:
    if stop is None:
        return DEFAULT_STOP
    if isinstance(stop, str):
        stop = [stop]
    if any(not isinstance(s, str) or not s for s in stop):
        msg = f"stop must be a non-empty string or a list of them, got {stop!r}"
        raise ValueError(msg)
    return tuple(dict.fromkeys([*DEFAULT_STOP, *stop]))


def _finish_reason(reason: str | None, tokens: int, max_new_tokens: int) -> str:
    if reason is not None:
        return reason
    return "length" if tokens >= max_new_tokens else "eos"


def generate(
    lm: LocalModel,
    input_ids: list[int],
    max_new_tokens: int,
    *,
    stop: Sequence[str] | str | None = None,
    generate_kwargs: Mapping[str, Any] | None = None,
    cancel: threading.Event | None = None,
) -> Generated:
    """The answer to a fully built prompt (greedy unless ``generate_kwargs`` say otherwise).

    Args:
        lm: the model.
        input_ids: the prompt.
        max_new_tokens: tokens to generate at most.
        stop: extra stop strings (added to :data:`DEFAULT_STOP`); the answer ends before them.
        generate_kwargs: passed to ``model.generate`` (e.g. ``{"do_sample": True, "temperature": 0.7}``).
        cancel: an event checked after every token; once set, generation ends there and the
            answer so far comes back with ``finish_reason="cancelled"`` (async adapters set it
            when their task is cancelled).
    """
    import torch

    stops = _stop_strings(stop)
    criterion = _AnswerOver(lm.tokenizer, len(input_ids), stops, cancel)
    started = time.perf_counter()
    kwargs = _generate_kwargs(lm, input_ids, max_new_tokens, criterion, generate_kwargs)
    with lm.lock, torch.inference_mode():
        # cancelled while waiting for the model: nothing generated
        output = kwargs["input_ids"] if criterion.stopped else lm.model.generate(**kwargs)  # type: ignore[operator]
    new_tokens = output[0, len(input_ids) :]
    raw = str(lm.tokenizer.decode(new_tokens, skip_special_tokens=True))
    text, reason = clean_answer(raw, stops)
    count = int(new_tokens.numel())
    finish = "cancelled" if cancel is not None and cancel.is_set() and reason is None else None
    return Generated(
        text=text,
        tokens=count,
        seconds=time.perf_counter() - started,
        finish_reason=finish or _finish_reason(reason, count, max_new_tokens),
    )


def _run_generation(
    lm: LocalModel,
    kwargs: dict[str, Any],
    streamer: Any,
    criterion: _AnswerOver,
    failure: list[BaseException],
) -> None:
    """Body of a :class:`TokenStream`'s worker thread (holds no reference to the stream, so that
    a stream nobody holds any more is collected and stops its generation)."""
    import torch

    try:
        with lm.lock, torch.inference_mode():
            if criterion.stopped:  # closed while waiting for the model
                streamer.end()
                return
            lm.model.generate(**kwargs, streamer=streamer)  # type: ignore[operator]
    except BaseException as error:  # handed to the consumer thread
        failure.append(error)
        streamer.end()


class TokenStream(Iterator[str]):
    """The answer's text pieces as the model generates them, from a worker thread that holds
    the model lock.

    The worker starts on the first ``next()``. :meth:`close` (also on leaving a ``with`` block)
    stops the generation at the next token and waits for the worker, so the model lock is free
    when it returns; it is safe from any thread, also while another thread waits in ``next()``
    (that call then ends the iteration). A stream that is dropped unfinished (``break`` out of a
    ``for`` loop over it) stops its generation too, without waiting. An exception in the worker
    is re-raised by ``next()``.
    """

    def __init__(
        self,
        lm: LocalModel,
        input_ids: list[int],
        max_new_tokens: int,
        timeout: float,
        stops: tuple[str, ...],
        generate_kwargs: Mapping[str, Any] | None,
        cancel: threading.Event | None = None,
    ) -> None:
        from transformers import TextIteratorStreamer

        self._lm = lm
        self._stops = stops
        self._streamer = TextIteratorStreamer(lm.tokenizer, timeout=timeout, skip_prompt=True, skip_special_tokens=True)
        self._criterion = _AnswerOver(lm.tokenizer, len(input_ids), stops, cancel)
        self._kwargs = _generate_kwargs(lm, input_ids, max_new_tokens, self._criterion, generate_kwargs)
        self._failure: list[BaseException] = []
        self._worker: threading.Thread | None = None
        self._state = threading.Lock()
        self._closed = False
        self._finished = False
        self._raw = ""
        self._shown = ""

    def __iter__(self) -> TokenStream:
        return self

    def __enter__(self) -> TokenStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """True while the worker thread is generating."""
        return self._worker is not None and self._worker.is_alive()

    def __next__(self) -> str:
        with self._state:
            if self._closed or self._finished:
                raise StopIteration
            if self._worker is None:
                args = (self._lm, self._kwargs, self._streamer, self._criterion, self._failure)
                self._worker = threading.Thread(target=_run_generation, args=args, name="infiniretri-generate")
                self._worker.daemon = True
                self._worker.start()
        for piece in self._streamer:
            self._raw += piece
            cut = _cut(self._raw, self._stops, final=False)
            if cut.reason is not None:
                return self._end()
            if len(cut.visible) > len(self._shown):
                delta = cut.visible[len(self._shown) :]
                self._shown = cut.visible
                return delta
        return self._end()

    def _end(self) -> str:
        """Stop and join the worker; the rest of the answer (if any) or the end of the iteration."""
        self._finished = True
        self._criterion.stop()
        self._join()
        if self._failure:
            raise self._failure[0]
        if self._closed:
            raise StopIteration
        final, _ = clean_answer(self._raw, self._stops)
        if len(final) > len(self._shown):
            delta = final[len(self._shown) :]
            self._shown = final
            return delta
        raise StopIteration

    def _join(self) -> None:
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    def close(self) -> None:
        """Stop generating now and wait for the worker (the model lock is free on return)."""
        with self._state:
            self._closed = True
        self._criterion.stop()
        self._join()

    def __del__(self) -> None:
        criterion = getattr(self, "_criterion", None)
        if criterion is not None:
            criterion.stop()


def stream_generate(
    lm: LocalModel,
    input_ids: list[int],
    max_new_tokens: int,
    timeout: float = 600.0,
    *,
    stop: Sequence[str] | str | None = None,
    generate_kwargs: Mapping[str, Any] | None = None,
    cancel: threading.Event | None = None,
) -> TokenStream:
    """The answer's text pieces as the model produces them (a :class:`TokenStream`); joined, they
    equal :func:`generate`'s text for the same arguments (greedy).

    Generation runs in a worker thread holding the model lock; an exception there is re-raised
    here. ``close()`` (or dropping the stream) stops the worker at the next token; so does
    setting ``cancel``.
    """
    return TokenStream(lm, input_ids, max_new_tokens, timeout, _stop_strings(stop), generate_kwargs, cancel)
