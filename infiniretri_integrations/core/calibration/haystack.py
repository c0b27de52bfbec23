"""Haystacks and needle insertion, shared by the calibration's synthetic task and the NIH harness.

The filler is the documentation strings of the Python standard library, which every Python
installation carries, so nothing has to be downloaded. :func:`plant_needle` puts a sentence into
the first ``context_tokens`` tokens of a haystack at a chosen depth, on a sentence boundary.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

_STDLIB_MODULES = (
    "argparse",
    "asyncio",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "enum",
    "fractions",
    "functools",
    "gettext",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http.client",
    "imaplib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "mailbox",
    "mimetypes",
    "multiprocessing",
    "numbers",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "smtplib",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "traceback",
    "turtle",
    "typing",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "wave",
    "weakref",
    "xml.dom.minidom",
    "zipfile",
)


def public_members(module: ModuleType) -> list[Any]:
    """The public (no leading underscore) classes and functions of ``module``, by name.

    Module objects are left out, also those the module binds itself (``os.path``, ``json.decoder``):
    a package gains an attribute for each of its submodules only when something imports that
    submodule, so with them the list would depend on what the process imported before.
    Re-exported classes and functions stay (their names are bound when the module is imported).

    Example:
        >>> import json
        >>> [member.__name__ for member in public_members(json)]
        ['JSONDecodeError', 'JSONDecoder', 'JSONEncoder', 'detect_encoding', 'dump', 'dumps', 'load', 'loads']
    """
    return [
        member
        for name, member in sorted(vars(module).items())
        if not name.startswith("_") and (inspect.isclass(member) or inspect.isfunction(member))
    ]


def source_docstrings(module: ModuleType) -> list[str] | None:
    """The docstrings of ``module``'s source file: the module's, then its public top-level classes
    and functions', in source order (``None``: the module has no Python source).

    Read from the file, never from the live objects, which another library may have replaced
    (one in this project's test suite swaps ``inspect.isgenerator`` for a compiled twin).

    Example:
        >>> import json
        >>> [doc.split(chr(10))[0][:30] for doc in source_docstrings(json)][:2]
        ['JSON (JavaScript Object Notati', 'Serialize ``obj`` as a JSON fo']
    """
    path = getattr(module, "__file__", None)
    if not path or not str(path).endswith(".py"):
        return None
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    nodes: list[ast.AST] = [tree]
    nodes += [
        node
        for node in tree.body
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_")
    ]
    docs = [ast.get_docstring(node) for node in nodes]  # type: ignore[arg-type]
    return [doc for doc in docs if doc]


@functools.cache
def stdlib_docstrings() -> str:
    """Documentation strings of a fixed list of standard-library modules and their public classes
    and functions, read from their source files (:func:`source_docstrings`; :func:`public_members`
    for the few modules without Python source), as paragraphs: the same text in every process of a
    given Python version, whatever was imported before and whatever ``PYTHONHASHSEED`` is.
    Docstrings shorter than 200 characters and repeats are left out."""
    paragraphs: list[str] = []
    seen: set[str] = set()
    for name in _STDLIB_MODULES:
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        docs = source_docstrings(module)
        if docs is None:
            docs = [inspect.getdoc(member) or "" for member in (module, *public_members(module))]
        for doc in docs:
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


def plant_needle(
    haystack: str,
    tokenizer: Any,
    context_tokens: int,
    depth_percent: float,
    needle: str,
    question: str,
) -> NeedleCase:
    """Insert ``needle`` into the first ``context_tokens`` tokens of ``haystack`` (repeated if
    too short) at the sentence boundary at or before ``depth_percent`` of the text (also at 100%:
    the needle then precedes the body's last, possibly cut, sentence).

    The result has exactly ``context_tokens`` tokens when tokenized piecewise (haystack prefix,
    needle, haystack suffix), as the standard harness counts them.

    Raises:
        ValueError: a depth outside 0..100, a context no longer than the needle, or an empty haystack.
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
    return NeedleCase(
        text=text,
        needle=needle,
        question=question,
        context_tokens=context_tokens,
        depth_percent=depth_percent,
        needle_start=len(before),
    )


def _sentence_boundary(text: str, offsets: Sequence[Sequence[int]], target: int, limit: int) -> int:
    """The last token index <= min(target, limit) that starts right after a sentence end (0 if
    none); ``limit`` itself counts when the body ends exactly at a sentence end."""
    if target <= 0:
        return 0
    for index in range(min(target, limit), 0, -1):
        if index >= len(offsets):
            return index  # the very end of the text
        start = offsets[index][0]
        previous = text[max(0, start - 3) : start].rstrip()
        if previous.endswith((".", "?", "!", "\n")) or text[start - 1 : start] == "\n":
            return index
    return 0
