"""The product's rooms keep their shape: small functions, and the modules every room uses
import no capability."""

from __future__ import annotations

import ast
from pathlib import Path

from hubforge.workbench import SOURCE_TREE

FOLDERS = ("extensions", "hub", "widgets", "examples")
LONGEST = 60  # lines of a function, decorators and docstring included


def _modules() -> list[Path]:
    found = []
    for folder in FOLDERS:
        for path in sorted((SOURCE_TREE / folder).rglob("*.py")):
            if "node_modules" not in path.parts and "labextension" not in path.parts:
                found.append(path)
    return found


def test_no_function_is_longer_than_sixty_lines():
    modules = _modules()
    assert len(modules) > 50, modules  # the product, not an empty folder
    long = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST:
                    long.append(
                        f"{path.relative_to(SOURCE_TREE)}:{node.lineno} {node.name} {lines}"
                    )
    assert long == [], "split into named steps: " + ", ".join(long)


def test_the_error_mapping_imports_no_capability():
    """httperrors.py maps errors to HTTP answers by the status each error carries: it imports
    neither jobs, serving, labeling nor tensorboard (lower rooms never import higher ones)."""
    tree = ast.parse((SOURCE_TREE / "extensions" / "httperrors.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    rooms = ("jobs", "serving", "labeling", "tensorboard", "service", "cli")
    assert not [m for m in imported for room in rooms if room in m.split(".")], imported
