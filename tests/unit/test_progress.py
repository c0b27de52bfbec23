"""The one progress-bar policy (core/progress.py): on a terminal and in notebooks, off in pipes and logs."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from infiniretri_integrations.core.progress import in_notebook, progress_bar, progress_enabled

PROBE = "from infiniretri_integrations.core.progress import progress_enabled; print(progress_enabled())"


def _probe(stderr: int) -> str:
    run = subprocess.run([sys.executable, "-c", PROBE], stdout=subprocess.PIPE, stderr=stderr, text=True, check=True)
    return run.stdout.strip()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_shown_on_a_terminal_hidden_in_a_pipe() -> None:
    primary, secondary = os.openpty()
    try:
        assert _probe(secondary) == "True"
    finally:
        os.close(primary)
        os.close(secondary)
    assert _probe(subprocess.PIPE) == "False"


def test_shown_in_a_jupyter_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a notebook stderr is no terminal, yet the bar renders: the kernel's shell decides."""

    class ZMQInteractiveShell:  # the class name IPython's kernel shell has
        pass

    assert not sys.stderr.isatty() and not in_notebook()
    assert progress_enabled() is False
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=ZMQInteractiveShell))
    assert in_notebook() and progress_enabled() is True
    assert progress_enabled(False) is False


def test_terminal_ipython_is_not_a_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    class TerminalInteractiveShell:
        pass

    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=TerminalInteractiveShell))
    assert not in_notebook()


def test_disabled_bar_still_counts_calls_safely(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar(4, "cells", enabled=False) as bar:
        for _ in range(4):
            bar.update(1)
            bar.set_postfix_str("x")
    assert capsys.readouterr().err == ""
    with progress_bar(2, "cells", enabled=True) as bar:
        bar.update(2)
    assert "cells" in capsys.readouterr().err
