"""Notebook -> job script with nbconvert: drop `skip-job` cells, override `parameters`."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import nbformat

from .errors import JobError

SKIP_TAG = "skip-job"
PARAMETERS_TAG = "parameters"
# Magics that need a person at the keyboard or a live frontend: refused, never dropped.
REFUSED_MAGICS = {
    "debug": "opens an interactive debugger",
    "pdb": "opens an interactive debugger",
    "qtconsole": "opens a console window",
    "connect_info": "prints the kernel's connection, which a job does not have",
    "edit": "opens an editor",
    "notebook": "exports the interactive history",
}
_MAGIC = re.compile(r"^\s*%{1,2}([A-Za-z_]\w*)", re.MULTILINE)
_STRATEGY = re.compile(r"\.scope\(\)")


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read and validate a notebook; JobError when it cannot be used."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise JobError(f"Notebook {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, nbformat.reader.NotJSONError, UnicodeDecodeError) as e:
        raise JobError(f"{path} is not a readable notebook (invalid JSON): {e}") from None
    except jsonschema.ValidationError as e:  # nbformat validates while upgrading
        raise JobError(f"{path} is not a valid notebook: {e.message}") from None
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        raise JobError(f"{path} is not a valid notebook: {e.message}") from None
    return nb


def parameters_of(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Names and default values assigned in the cell tagged `parameters`."""
    for cell in nb.cells:
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            return _assignments(cell.source)
    return {}


def _assignments(source: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    values[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    values[target.id] = None  # computed default: any value accepted
    return values


def check_params(defaults: dict[str, Any], params: dict[str, Any]) -> None:
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none (tag a cell 'parameters')"
        raise JobError(f"Unknown parameter(s) {', '.join(unknown)}; the notebook's are: {known}")
    for name, value in params.items():
        default = defaults[name]
        if isinstance(default, bool) != isinstance(value, bool) or (
            isinstance(default, int | float) and not isinstance(value, int | float)
        ):
            raise JobError(
                f"Parameter {name}={value!r}: expected {type(default).__name__} like {default!r}"
            )


def _refused_magics(index: int, source: str) -> list[str]:
    problems = []
    for name in _MAGIC.findall(source):
        if name in REFUSED_MAGICS:
            problems.append(
                f"cell {index}: %{name} {REFUSED_MAGICS[name]}; remove it or tag "
                f"the cell '{SKIP_TAG}'"
            )
    return problems


def to_script(nb: nbformat.NotebookNode, params: dict[str, Any] | None = None) -> str:
    """The notebook as a Python script (magics become get_ipython() calls)."""
    from nbconvert import PythonExporter

    params = params or {}
    check_params(parameters_of(nb), params)
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a copy we may edit
    kept, problems = [], []
    for index, cell in enumerate(nb.cells, start=1):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type != "code" or SKIP_TAG in tags:
            continue
        problems += _refused_magics(index, cell.source)
        kept.append(cell)
        if PARAMETERS_TAG in tags and params:
            lines = [f"{name} = {value!r}" for name, value in params.items()]
            kept.append(nbformat.v4.new_code_cell("# Parameters of this job\n" + "\n".join(lines)))
    if problems:
        raise JobError("The notebook cannot run as a job:\n  " + "\n  ".join(problems))
    nb.cells = kept
    nb.metadata["language_info"] = {"name": "python"}  # notebooks without it still convert
    script, _ = PythonExporter(exclude_input_prompt=True).from_notebook_node(nb)
    return script


def uses_strategy(script: str) -> bool:
    """Whether the code enters a tf.distribute strategy (heuristic on the source)."""
    return bool(_STRATEGY.search(script))
