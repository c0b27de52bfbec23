"""Needle-in-a-haystack cases (the standard NIH harness: Paul Graham essays + the sandwich needle).

Without the essays, the haystack is built from the documentation strings of the Python standard
library, which every Python installation carries, so nothing has to be downloaded.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STANDARD_NEEDLE = "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n"
STANDARD_QUESTION = "What is the best thing to do in San Francisco?"
NEEDLE_FACTS = ("sandwich", "dolores park")

_STDLIB_MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "configparser", "contextlib", "copy",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions", "functools", "gettext",
    "glob", "gzip", "hashlib", "heapq", "hmac", "html", "http.client", "imaplib", "inspect", "io", "ipaddress",
    "itertools", "json", "logging", "mailbox", "mimetypes", "multiprocessing", "numbers", "operator", "optparse",
    "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched", "secrets", "selectors", "shelve",
    "shlex", "shutil", "smtplib", "socket", "sqlite3", "statistics", "string", "struct", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback", "turtle", "typing", "unittest",
    "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref", "xml.dom.minidom", "zipfile",
)


def load_haystack(essays_dir: str | Path | None = None) -> str:
    """The haystack text: the Paul Graham essays (sorted by file name) when ``essays_dir`` is
    given, else the standard library's documentation strings."""
    if essays_dir is not None:
        folder = Path(essays_dir)
        files = sorted(folder.glob("*.txt"))
        if not files:
            msg = f"No .txt essays found in {str(folder)!r}"
            raise FileNotFoundError(msg)
        return "".join(path.read_text(encoding="utf-8", errors="replace") for path in files)
    return stdlib_docstrings()


def stdlib_docstrings() -> str:
    """Documentation strings of a fixed list of standard-library modules and their public members,
    as paragraphs (deterministic for a given Python version)."""
    paragraphs: list[str] = []
    seen: set[str] = set()
    for name in _STDLIB_MODULES:
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module missing on this platform is simply left out
            continue
        members: list[Any] = [module]
        members += [member for key, member in sorted(vars(module).items()) if not key.startswith("_")]
        for member in members:
            doc = inspect.getdoc(member) if (inspect.ismodule(member) or inspect.isclass(member) or inspect.isfunction(member)) else None
            if not doc or doc in seen or len(doc) < 200:
                continue
            seen.add(doc)
            paragraphs.append(re.sub(r"[ \t]+", " ", doc.strip()))
    return "\n\n".join(paragraphs)


@dataclass(frozen=True)
class NeedleCase:
    """A haystack of ``context_tokens`` tokens with the needle inserted at ``depth_percent``."""

    text: str
    needle: str
    question: str
    context_tokens: int
    depth_percent: float
    needle_start: int

    @property
    def needle_span(self) -> tuple[int, int]:
        return self.needle_start, self.needle_start + len(self.needle)


def build_case(
    haystack: str,
    tokenizer: Any,
    context_tokens: int,
    depth_percent: float,
    needle: str = STANDARD_NEEDLE,
    question: str = STANDARD_QUESTION,
) -> NeedleCase:
    """Insert ``needle`` into the first ``context_tokens`` tokens of ``haystack`` (repeated if
    too short) at the sentence boundary at or before ``depth_percent`` of the text.

    The result has exactly ``context_tokens`` tokens when tokenized piecewise (haystack prefix,
    needle, haystack suffix), as the standard harness counts them.
    """
    if not 0 <= depth_percent <= 100:
        msg = f"depth_percent must be within 0..100, got {depth_percent!r}"
        raise ValueError(msg)
    needle_ids = tokenizer(needle, add_special_tokens=False)["input_ids"]
    room = context_tokens - len(needle_ids)
    if room <= 0:
        msg = f"context_tokens ({context_tokens}) must exceed the needle's {len(needle_ids)} tokens"
        raise ValueError(msg)
    encoded = tokenizer(haystack, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    if not ids:
        msg = "haystack is empty"
        raise ValueError(msg)
    repeats = -(-room // len(ids))
    if repeats > 1:
        haystack = (haystack + "\n\n") * repeats
        encoded = tokenizer(haystack, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    body_end = offsets[room - 1][1]
    target = int(room * depth_percent / 100)
    cut_token = _sentence_boundary(haystack, offsets, target, room)
    cut_char = offsets[cut_token][0] if cut_token < room else body_end
    before = haystack[:cut_char]
    after = haystack[cut_char:body_end]
    text = before + needle + after
    return NeedleCase(text=text, needle=needle, question=question, context_tokens=context_tokens, depth_percent=depth_percent, needle_start=len(before))


def _sentence_boundary(text: str, offsets: Sequence[Sequence[int]], target: int, limit: int) -> int:
    """The last token index <= target that starts right after a sentence end (0 or limit at edges)."""
    if target <= 0:
        return 0
    if target >= limit:
        return limit
    for index in range(target, 0, -1):
        start = offsets[index][0]
        previous = text[max(0, start - 3) : start].rstrip()
        if previous.endswith((".", "?", "!", "\n")) or text[start - 1 : start] == "\n":
            return index
    return 0


def needle_retrieved(kept_texts: Sequence[str], needle: str = STANDARD_NEEDLE) -> bool:
    """True when the kept text contains the needle sentence."""
    joined = " ".join(" ".join(t.split()) for t in kept_texts)
    return " ".join(needle.split()) in joined


def answer_has_facts(answer: str, facts: Sequence[str] = NEEDLE_FACTS) -> bool:
    """True when the answer mentions every fact of the needle (case-insensitive)."""
    lowered = answer.lower()
    return all(fact in lowered for fact in facts)
