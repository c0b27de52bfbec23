"""The standard-library haystack is the same text in every process (calibration cases, NIH filler)."""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

from infiniretri_integrations.core.calibration.haystack import public_members, stdlib_docstrings

ROOT = Path(__file__).resolve().parents[2]

PRINT_HASH = (
    "import hashlib\n"
    "from infiniretri_integrations.core.calibration.haystack import stdlib_docstrings\n"
    "text = stdlib_docstrings()\n"
    "print(len(text), hashlib.sha256(text.encode()).hexdigest())\n"
)


def _haystack_hash(seed: str, pre_imports: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", pre_imports + "\n" + PRINT_HASH],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_same_text_whatever_was_imported_before_and_hash_seed():
    plain = _haystack_hash("0", "")
    # submodules imported first become attributes of their packages (email.mime, xml.dom.minidom,
    # json.decoder ...): the text must not depend on them
    pre_imported = _haystack_hash(
        "12345",
        "import email.mime.text, xml.dom.minidom, json.decoder, logging.handlers, unittest.mock, "
        "multiprocessing.pool, concurrent.futures, http.server",
    )
    assert plain == pre_imported
    length, digest = plain.split()
    here = stdlib_docstrings()  # this process imported torch, pytest, ... before
    assert (int(length), digest) == (len(here), hashlib.sha256(here.encode()).hexdigest())


def test_public_members_leave_out_modules_even_imported_submodules():
    import email
    import email.mime.text  # binds email.mime

    assert inspect.ismodule(vars(email)["mime"])
    members = public_members(email)
    assert members, "email has public functions"
    assert not any(inspect.ismodule(m) for m in members)
    assert all(inspect.isclass(m) or inspect.isfunction(m) for m in members)
    names = [m.__name__ for m in members]
    assert names == sorted(names)
    assert "message_from_string" in names


def test_haystack_reads_the_source_not_patched_objects(monkeypatch):
    import json

    text = stdlib_docstrings()
    assert len(text.split("\n\n")) > 1000
    assert "\t" not in text
    assert inspect.getdoc(json).split("\n\n")[0] in text  # a listed module's own docstring
    assert inspect.getdoc(json.dumps).split("\n\n")[0] in text  # a public function defined in it

    def impostor(obj):  # what a library that swaps inspect.isgenerator for a compiled twin leaves behind
        return False

    impostor.__doc__ = "A replacement with another docstring, long enough to be kept if it were read. " * 4

    monkeypatch.setattr(inspect, "isgenerator", impostor)
    stdlib_docstrings.cache_clear()
    try:
        assert stdlib_docstrings() == text
    finally:
        stdlib_docstrings.cache_clear()
