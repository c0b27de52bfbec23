"""Sentence segmentation with character spans, and the split of over-long sentences by tokens.

A sentence is the unit InfiniRetri keeps or drops. Spans cover the text exactly: whitespace
before a sentence belongs to it, so ``"".join(text[s:e] for s, e in spans) == text``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from infiniretri_integrations.core.types import Sentence

_CLOSERS = "\"'”’)\\]»」』）"
_BREAK = re.compile(
    r"[.!?…]+[" + _CLOSERS + r"]*(?=\s|$|(?<=[a-z][.!?])[A-Z])"  # western: followed by space, end, or "word.Next"
    r"|[。！？；!?]+[" + _CLOSERS + r"]*"  # CJK terminators need no space after them
    r"|(?=\n[ \t]*\n)"  # a blank line (paragraph break)
)
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "cf",
        "al",
        "inc",
        "ltd",
        "co",
        "corp",
        "no",
        "fig",
        "eq",
        "approx",
        "dept",
        "est",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "mt",
        "ft",
        "u.s",
        "u.k",
        "a.m",
        "p.m",
    ]
)
_SENTENCE_FINAL_ABBREVIATIONS = frozenset(["inc", "ltd", "co", "corp", "etc"])
"""Abbreviations that often end a sentence: a break after them when a capitalised word follows
("Acme Corp. Carol moved ..."), as pysbd and punkt do."""
_LAST_WORD = re.compile(r"([A-Za-z](?:[A-Za-z.]*[A-Za-z])?)\.$")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``.

    Breaks after ``. ! ? …`` followed by whitespace (or directly by a capital after a lowercase
    letter, as in ``"end.Next"``), after CJK ``。！？；`` and before blank lines; not after
    common abbreviations (``Dr.``, ``e.g.``) nor single-letter initials (``J. Smith``).
    Whitespace-only text gives no span.

    Example:
        >>> t = "Dr. Smith arrived. He sat down.\\n\\n天气很好。我们走吧！"
        >>> [t[s:e] for s, e in sentence_spans(t)]
        ['Dr. Smith arrived.', ' He sat down.', '\\n\\n天气很好。', '我们走吧！']
    """
    if not text.strip():
        return []
    cuts: list[int] = []
    for match in _BREAK.finditer(text):
        end = match.end()
        if end == 0 or end >= len(text):
            continue
        if match.group().startswith(".") and _is_abbreviation(text, match.start()):
            continue
        if not cuts or cuts[-1] != end:
            cuts.append(end)
    spans: list[tuple[int, int]] = []
    start = 0
    for cut in cuts:
        if text[start:cut].strip():
            spans.append((start, cut))
            start = cut
    if spans and not text[start:].strip():
        spans[-1] = (spans[-1][0], len(text))
    else:
        spans.append((start, len(text)))
    return spans


def _is_abbreviation(text: str, dot_index: int) -> bool:
    match = _LAST_WORD.search(text, max(0, dot_index - 12), dot_index + 1)
    if match is None or match.end() != dot_index + 1:
        return False
    word = match.group(1)
    if len(word) == 1 and word.isupper():
        return True
    if word.lower() in _SENTENCE_FINAL_ABBREVIATIONS:
        following = text[dot_index + 1 :].lstrip()
        return not (following[:1].isupper() and following[:1].isalpha())
    return word.lower() in _ABBREVIATIONS


class _Tokenizer(Protocol):
    def __call__(self, text: Any, **kwargs: Any) -> Any: ...


def clean_for_tokenizer(text: str) -> str:
    """Same length as ``text``, with characters a tokenizer cannot take replaced.

    Lone surrogates (from ``surrogateescape`` decoding of binary junk) become U+FFFD and NUL
    becomes a space, so character offsets stay valid.
    """
    if text.isascii() and "\x00" not in text:
        return text
    return re.sub(r"[\ud800-\udfff]", "\ufffd", text).replace("\x00", " ")


SentenceSplitter = Callable[[str], Sequence[tuple[int, int]]]
"""Any function from a text to the ``(start, end)`` character spans of its sentences, e.g.
``lambda t: [(s.start, s.end) for s in pysbd.Segmenter(char_span=True).segment(t)]`` or NLTK's
``PunktSentenceTokenizer().span_tokenize``."""


def covering_spans(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """A splitter's spans widened so that they cover ``text`` exactly: each sentence takes the
    text before it (whitespace) and the last one the rest, as :func:`sentence_spans` gives.

    Raises:
        ValueError: spans out of order, overlapping or outside the text.

    Example:
        >>> covering_spans("One.  Two. ", [(0, 4), (6, 10)])
        [(0, 4), (4, 11)]
    """
    result: list[tuple[int, int]] = []
    previous = 0
    for start, end in spans:
        if not (previous <= start <= end <= len(text)):
            msg = f"sentence_splitter returned span {(start, end)!r} out of order or outside a text of {len(text)} characters"
            raise ValueError(msg)
        if text[start:end].strip():
            result.append((previous, end))
            previous = end
    if not result:
        return [(0, len(text))] if text.strip() else []
    result[-1] = (result[-1][0], len(text))
    return result


def segment_documents(
    texts: Sequence[str],
    tokenizer: _Tokenizer,
    max_sentence_tokens: int,
    splitter: SentenceSplitter | None = None,
) -> list[list[Sentence]]:
    """Split each text into sentences and tokenize them, one batched tokenizer call for all.

    ``splitter`` replaces the built-in :func:`sentence_spans` (its spans are widened to cover the
    text). Sentences longer than ``max_sentence_tokens`` are split at a line break, else a
    space, else a token boundary, so that every piece fits.
    """
    span_lists = [
        sentence_spans(text) if splitter is None else covering_spans(text, list(splitter(text))) for text in texts
    ]
    flat = [(d, s, e) for d, spans in enumerate(span_lists) for s, e in spans]
    if not flat:
        return [[] for _ in texts]
    cleaned = [clean_for_tokenizer(text) for text in texts]
    encoded = tokenizer(
        [cleaned[d][s:e] for d, s, e in flat],
        add_special_tokens=False,
        return_offsets_mapping=True,
    )
    result: list[list[Sentence]] = [[] for _ in texts]
    for (doc, start, end), ids, offsets in zip(flat, encoded["input_ids"], encoded["offset_mapping"], strict=True):
        pieces = _split_by_tokens(cleaned[doc], start, end, list(ids), [tuple(o) for o in offsets], max_sentence_tokens)
        for piece_start, piece_end, piece_ids in pieces:
            result[doc].append(
                Sentence(
                    document_index=doc,
                    sentence_index=len(result[doc]),
                    start=piece_start,
                    end=piece_end,
                    text=texts[doc][piece_start:piece_end],
                    token_ids=tuple(piece_ids),
                )
            )
    return result


def _split_by_tokens(
    text: str,
    start: int,
    end: int,
    ids: list[int],
    offsets: list[tuple[int, int]],
    max_tokens: int,
) -> list[tuple[int, int, list[int]]]:
    """Cut one sentence (``text[start:end]``, tokenized as ``ids`` with relative ``offsets``)
    into pieces of at most ``max_tokens`` tokens, preferring cuts before a newline, then a space."""
    if len(ids) <= max_tokens:
        return [(start, end, ids)]
    pieces: list[tuple[int, int, list[int]]] = []
    first = 0
    while first < len(ids):
        last = min(first + max_tokens, len(ids))
        if last < len(ids):
            last = _best_cut(text, start, offsets, first, last)
        piece_start = start + (offsets[first][0] if first > 0 else 0)
        piece_end = start + offsets[last][0] if last < len(ids) else end
        pieces.append((piece_start, piece_end, ids[first:last]))
        first = last
    return pieces


def _best_cut(text: str, base: int, offsets: list[tuple[int, int]], first: int, last: int) -> int:
    """Largest token index in (first, last] to cut before, preferring a token that starts at a
    newline, then at a space; falls back to ``last``."""
    lower = first + max(1, (last - first) // 2)
    for wanted in ("\n", " "):
        for index in range(last, lower - 1, -1):
            char_at = base + offsets[index][0]
            if offsets[index][1] > offsets[index][0] and char_at < len(text) and text[char_at] == wanted:
                return index
            if char_at > 0 and text[char_at - 1] == wanted and offsets[index][0] > 0:
                return index
    return last
