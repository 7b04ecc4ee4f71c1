"""The public API is what the README documents: its "Python API" table names exactly
``gpuanalogy.__all__``, and every name its examples use exists where they say."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import gpuanalogy

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def api_table() -> list[str]:
    section = README.split("### Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `gpuanalogy\.(\w+)` \|", section, flags=re.M)


def test_the_readme_table_is_the_public_api():
    listed = api_table()
    assert len(listed) == len(set(listed)), "a name is listed twice"
    assert sorted(listed) == sorted(set(gpuanalogy.__all__) - {"__version__"})


def test_every_public_name_resolves():
    for name in gpuanalogy.__all__:
        assert getattr(gpuanalogy, name) is not None, name
    assert sorted(dir(gpuanalogy)) == sorted(gpuanalogy.__all__)


def test_the_readme_examples_parse_and_use_only_names_that_exist():
    blocks = python_blocks()
    assert blocks
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "gpuanalogy":
                assert node.attr in gpuanalogy.__all__, f"gpuanalogy.{node.attr}"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gpuanalogy"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


def test_dotted_names_in_the_readme_text_exist():
    """``gpuanalogy.x.y`` in the prose (a module and a name in it) resolve."""
    for dotted in set(re.findall(r"`(gpuanalogy(?:\.\w+)+)", README)):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):   # the longest importable module, then attributes
            try:
                target = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
            break
