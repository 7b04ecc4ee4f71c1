"""The module map of docs/architecture.md holds: imports go one way and never in a circle, no
module uses another's private names, subclasses override only named points, modules stay small."""
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


def package_from(name: str, node: ast.ImportFrom) -> list[str] | None:
    """The package module a ``from ... import`` in module ``name`` reads from, as its parts
    (``gpuanalogy.`` left off); None for a module outside the package."""
    if node.level:
        package = name.split(".")[:-1]
        base = package[:len(package) - (node.level - 1)]
        return [*base, *(node.module.split(".") if node.module else [])]
    if node.module and node.module.split(".")[0] == "gpuanalogy":
        return node.module.split(".")[1:]
    return None


def imports(name: str, path: Path) -> set[str]:
    """The package modules ``name`` imports (``gpuanalogy.`` left off)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            target = package_from(name, node)
            if target is None:
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


def test_no_import_cycles():
    """Imports form no circle, within a layer or across (a module imported lazily counts)."""
    graph = {name: imports(name, path) & set(modules()) for name, path in modules().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:   # Tarjan's strongly connected components
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in graph[name]:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == name:
                    break
            if len(component) > 1 or name in graph[name]:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_private_name_is_used_across_modules(name):
    """A leading underscore means "this module's own": no other module imports it or reads it
    off the module (a package's private modules, such as ``kernels._api``, serve the modules
    of that package)."""
    package = name.split(".")[:-1]
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    bound = {}   # names bound to package modules -> the module
    for node in ast.walk(tree):
        target = package_from(name, node) if isinstance(node, ast.ImportFrom) else None
        if target is not None:
            for alias in node.names:
                module = ".".join([*target, alias.name])
                if module in modules():
                    bound[alias.asname or alias.name] = module
                    sibling = module.split(".")[:-1] == package
                    assert not _private(alias.name) or sibling, f"{name} imports {module}"
                else:
                    assert not _private(alias.name), \
                        f"{name} imports {alias.name} from {'.'.join(target)}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in bound and _private(node.attr):
            raise AssertionError(f"{name} uses {bound[node.value.id]}.{node.attr}")


def test_level_solver_subclasses_override_only_its_override_points():
    from gpuanalogy.levels import LevelSolver

    own = {n.name for n in ast.walk(ast.parse((PACKAGE / "levels.py").read_text("utf-8")))
           if isinstance(n, ast.ClassDef) and n.name == "LevelSolver"
           for n in n.body if isinstance(n, ast.FunctionDef)}
    subclasses = 0
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(base, "id", None) == "LevelSolver" for base in node.bases):
                subclasses += 1
                overridden = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
                overridden &= own - {"__init__"}
                assert overridden <= set(LevelSolver.OVERRIDE_POINTS), (name, node.name)
    assert subclasses   # the video's warm-started solver
