"""The package's dependency direction, read from the source (every import statement, including those
inside functions and under ``TYPE_CHECKING``):

* ``core/`` imports nothing of the package outside ``core/``, and no framework;
* inside ``core/``, a module imports only modules of its own tier or of lower tiers
  (:data:`CORE_TIERS`: data, text arithmetic, options and prompts, models, attention and
  generation, calibration, the engine's stages, the engine, the adapters' shared glue);
* ``langchain/`` and ``llama_index/`` import only ``core/`` (and their own modules and framework), and
  never each other (neither the other adapter nor the other framework);
* no import cycle between the package's modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = "infiniretri_integrations"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

ADAPTERS = {"langchain": "langchain", "llama_index": "llama_index"}
"""Adapter layer -> its framework's distribution prefix (``langchain``, ``langchain_core``, ...)."""

CORE_TIERS: dict[str, int] = {
    # 0: plain data and I/O
    "types": 0,
    "storage": 0,
    "progress": 0,
    # 1: pure functions on text, tokens and tensors
    "lexical": 1,
    "cascade": 1,
    "segmentation": 1,
    "chunking": 1,
    "scoring": 1,
    "highlight": 1,
    # 2: options and prompts
    "config": 2,
    "prompting": 2,
    # 3: models
    "models": 3,
    # 4: what runs a model
    "attention": 4,
    "generation": 4,
    "similarity": 4,
    # 5: calibration (runs attention on synthetic cases) and the probe fitted per model
    "calibration": 5,
    "probe": 5,
    # 6: the engine's stages
    "inputs": 6,
    "selection": 6,
    "passes": 6,
    "scoring_setup": 6,
    "answering": 6,
    # 7: the engine
    "engine": 7,
    # 8: what the adapters share
    "options": 8,
    "engine_policy": 8,
    "outputs": 8,
    "concurrency": 8,
}
"""Tier of each module of ``core/`` (a subpackage counts as one module); ``core/__init__`` is above all."""

KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}
"""(importer, imported) -> why it is tolerated for now. An entry that no longer occurs fails the test."""


# ------------------------------------------------------------------------------- reading the imports
def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name a (possibly relative) ``from ... import`` refers to."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: Iterable[str]) -> Iterator[str]:
    """Every name ``module`` imports: a module of the package where the import names one (for
    ``from pkg import name``: ``pkg.name`` when that is a module, else ``pkg``), else the external name."""
    known = set(known)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node)
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield candidate if candidate in known else source


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = package_modules(root)
    return {name: set(imports_of(name, path, modules)) - {name} for name, path in modules.items()}


# ------------------------------------------------------------------------------- the rules
def layer(module: str) -> str:
    """``core``, an adapter (``langchain``/``llama_index``), or ``app`` (everything else of the package)."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return "app"
    return parts[1] if parts[1] in ("core", *ADAPTERS) else "app"


def _is_under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def framework(name: str) -> str | None:
    """The adapter whose framework ``name`` belongs to (``langchain_core.documents`` -> ``langchain``)."""
    top = name.split(".")[0]
    return next(
        (adapter for adapter, prefix in ADAPTERS.items() if top == prefix or top.startswith(prefix + "_")), None
    )


def core_tier(module: str, tiers: Mapping[str, int]) -> int | None:
    """The tier of a module inside ``core/`` (``None``: ``core`` itself or not a core module).

    A module missing from ``tiers`` raises: every new module of ``core/`` needs a place.
    """
    parts = module.split(".")
    if parts[:2] != [PACKAGE, "core"] or len(parts) == 2:
        return None
    name = parts[2]
    if name not in tiers:
        msg = f"core module {module} has no tier: add {name!r} to CORE_TIERS in tests/unit/test_architecture.py"
        raise AssertionError(msg)
    return tiers[name]


def upward_imports(graph: Mapping[str, set[str]], tiers: Mapping[str, int] | None = None) -> set[tuple[str, str]]:
    """(importer, imported) pairs that break the layering."""
    tiers = CORE_TIERS if tiers is None else tiers
    found: set[tuple[str, str]] = set()
    for module, targets in graph.items():
        own = layer(module)
        for target in targets:
            internal = _is_under(target, [PACKAGE])
            if own == "core":
                bad = (internal and layer(target) != "core") or framework(target) is not None
                own_tier, target_tier = core_tier(module, tiers), core_tier(target, tiers) if internal else None
                if own_tier is not None and target_tier is not None and target_tier > own_tier:
                    bad = True
            elif own in ADAPTERS:
                bad = (internal and layer(target) not in ("core", own)) or framework(target) not in (None, own)
            else:
                bad = False
            if bad:
                found.add((module, target))
    return found


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


# ------------------------------------------------------------------------------- the package
@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_the_package(graph: dict[str, set[str]]) -> None:
    assert {f"{PACKAGE}.core.engine", f"{PACKAGE}.cli", f"{PACKAGE}.langchain", f"{PACKAGE}.llama_index"} <= set(graph)
    assert f"{PACKAGE}.core.engine" in graph[f"{PACKAGE}.core"]


def test_no_upward_imports(graph: dict[str, set[str]]) -> None:
    found = upward_imports(graph)
    unexpected = sorted(found - set(KNOWN_VIOLATIONS))
    assert not unexpected, "imports against the layering (importer -> imported):\n" + "\n".join(
        f"  {a} -> {b}" for a, b in unexpected
    )
    stale = sorted(set(KNOWN_VIOLATIONS) - found)
    assert not stale, f"allow-listed violations that no longer occur (delete them from KNOWN_VIOLATIONS): {stale}"


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    cycles = import_cycles(graph)
    assert not cycles, "modules importing each other (directly or around a loop):\n" + "\n".join(
        "  " + " <-> ".join(group) for group in cycles
    )


# ------------------------------------------------------------------------------- the checker itself
def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / PACKAGE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / PACKAGE


def test_checker_finds_function_level_relative_and_type_checking_imports(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "__init__.py": "",
            "cli.py": "",
            "core/__init__.py": "from .engine import Engine\n",
            "core/engine.py": "def auto():\n    from infiniretri_integrations import cli\n",
            "core/models.py": "def lookup():\n    from infiniretri_integrations.core.calibration import store\n",
            "core/calibration/__init__.py": "",
            "core/calibration/store.py": "from infiniretri_integrations.core import models\n",
            "core/types.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import langchain_core\n",
            "langchain/__init__.py": "from ..core import engine\nfrom ..llama_index import nodes\n",
            "llama_index/__init__.py": "",
            "llama_index/nodes.py": "from infiniretri_integrations.core.types import X\nimport langchain_core.documents\n",
        },
    )
    tiers = {"engine": 7, "models": 3, "calibration": 5, "types": 0}
    assert upward_imports(import_graph(root), tiers) == {
        (f"{PACKAGE}.core.engine", f"{PACKAGE}.cli"),
        (f"{PACKAGE}.core.models", f"{PACKAGE}.core.calibration.store"),
        (f"{PACKAGE}.core.types", "langchain_core"),
        (f"{PACKAGE}.langchain", f"{PACKAGE}.llama_index.nodes"),
        (f"{PACKAGE}.llama_index.nodes", "langchain_core.documents"),
    }


def test_checker_finds_cycles(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/a.py": "from infiniretri_integrations.core import b\n",
            "core/b.py": "def f():\n    from . import c\n",
            "core/c.py": "import infiniretri_integrations.core.a\n",
            "core/d.py": "from infiniretri_integrations.core import a\n",
        },
    )
    assert import_cycles(import_graph(root)) == [[f"{PACKAGE}.core.a", f"{PACKAGE}.core.b", f"{PACKAGE}.core.c"]]


def test_every_core_module_has_a_tier(graph: dict[str, set[str]]) -> None:
    for module in graph:
        core_tier(module, CORE_TIERS)  # raises for a module without a tier
    names = {m.split(".")[2] for m in graph if m.startswith(f"{PACKAGE}.core.")}
    assert not set(CORE_TIERS) - names, f"tiers of modules that no longer exist: {sorted(set(CORE_TIERS) - names)}"
