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
from .runner import CELL_MARK

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
        cell.source = f"{CELL_MARK}{index}\n{cell.source}"  # a job's traceback names it
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


# -- what can be seen before a job starts ------------------------------------------------------
GUI_BACKENDS = {
    "tk",
    "tkagg",
    "qt",
    "qt5",
    "qtagg",
    "qt5agg",
    "gtk",
    "gtk3",
    "gtk3agg",
    "wx",
    "wxagg",
    "osx",
    "macosx",
    "notebook",
    "nbagg",
    "widget",
    "ipympl",
}
_ROOTS_OK = ("/tmp/", "/dev/", "/proc/", "/etc/", "/usr/", "/opt/conda/")


def lint(nb: nbformat.NotebookNode, workers: int = 1, areas: tuple[str, ...] = ()) -> list[str]:
    """Warnings about what will go wrong (or differ) when the notebook runs as a job, each
    with its cell number: TensorFlow used before the strategy in a multi-worker job,
    ``input()``, GUI plotting backends, absolute paths outside ``areas`` (home, data)."""
    cells = [
        (index, cell.source)
        for index, cell in enumerate(nb.cells, start=1)
        if cell.cell_type == "code" and SKIP_TAG not in cell.get("metadata", {}).get("tags", [])
    ]
    warnings: list[str] = []
    made_at = _own_strategy(cells)  # (cell, line) of a MultiWorkerMirroredStrategy() it makes
    for index, source in cells:
        for name in re.findall(r"^\s*%matplotlib\s+(\w+)", source, re.MULTILINE):
            if name.lower() in GUI_BACKENDS:
                warnings.append(
                    f"cell {index}: %matplotlib {name} needs a screen; a job draws headless "
                    "(plt.show() saves each figure with the job): use %matplotlib inline"
                )
        tree = _parse(source)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = _dotted(node.func)
                if called == "input":
                    warnings.append(
                        f"cell {index}: input() waits for a keyboard a job does not have; "
                        "make the value a parameter (a cell tagged 'parameters')"
                    )
                elif called.endswith("matplotlib.use") and _gui(node):
                    warnings.append(
                        f"cell {index}: matplotlib.use({_gui(node)!r}) needs a screen; a "
                        "job draws headless: leave the backend to Hubforge"
                    )
                elif (
                    workers > 1
                    and made_at is not None
                    and (index, node.lineno) < made_at
                    and called.startswith("tf.")
                    and not called.endswith("MultiWorkerMirroredStrategy")
                ):
                    warnings.append(
                        f"cell {index}: {called}() runs TensorFlow before the notebook makes its "
                        f"MultiWorkerMirroredStrategy (cell {made_at[0]}); with {workers} workers "
                        "every worker fails with 'Collective ops must be configured at program "
                        "startup': use hubforge.distribute.strategy() (made at the job's start, "
                        f"so any order works), or move it after that line"
                    )
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                path = node.value
                if (
                    re.fullmatch(r"/[\w.@+-]+(/[\w.@+-]+)+/?", path)
                    and not path.startswith(_ROOTS_OK)
                    and not any(path == a or path.startswith(a.rstrip("/") + "/") for a in areas)
                ):
                    warnings.append(
                        f"cell {index}: the path {path} is outside your home and data area; "
                        "a job's workers may not see it (use a path under your home or ~/hdfs)"
                    )
    return list(dict.fromkeys(warnings))  # each once, in cell order


def _own_strategy(cells: list[tuple[int, str]]) -> tuple[int, int] | None:
    """Where the notebook makes its own MultiWorkerMirroredStrategy (cell, line), if it does:
    hubforge.distribute.strategy() is made at the job's start, before any cell."""
    for index, source in cells:
        tree = _parse(source)
        lines = [
            node.lineno
            for node in (ast.walk(tree) if tree is not None else ())
            if isinstance(node, ast.Call)
            and _dotted(node.func).endswith("MultiWorkerMirroredStrategy")
        ]
        if lines:
            return index, min(lines)
    return None


def _parse(source: str) -> ast.AST | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return None  # the job will say so itself


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _gui(call: ast.Call) -> str | None:
    arg = call.args[0] if call.args else None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value if arg.value.lower() in GUI_BACKENDS else None
    return None
