"""The module map of docs/architecture.md holds: imports go one way, and modules stay small."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gpuanalogy"
MAX_LINES = 400


def layers() -> list[list[str]]:
    """The modules of each layer, top (imported by all) to bottom, from the doc's table."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text.split("| layer | modules |", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    return [re.findall(r"`([\w.]+)`", row.split("|")[2]) for row in rows]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            continue
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """The package modules ``name`` imports (``gpuanalogy.`` left off)."""
    package = name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "gpuanalogy":
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:   # "from . import nnf" names a module
                candidate = ".".join([*target, alias.name])
                found.add(candidate if candidate in modules() else ".".join(target))
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names
                         if a.name.startswith("gpuanalogy."))
    return {m for m in found if m}


def test_every_module_is_on_the_map_once():
    listed = [m for layer in layers() for m in layer]
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(listed) == sorted(modules())


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_go_up_the_map_only(name):
    rank = {m: i for i, layer in enumerate(layers()) for m in layer}
    for target in imports(name, modules()[name]):
        if target in rank:   # the package itself ("__version__") is the top of the map
            assert rank[target] <= rank[name], f"{name} imports {target}, a later layer"


def test_the_library_never_imports_the_application():
    for name, path in modules().items():
        if not name.startswith("app.") and name != "__main__":
            assert not any(t.startswith("app") for t in imports(name, path)), name


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_the_line_limit(name):
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (limit {MAX_LINES})"
