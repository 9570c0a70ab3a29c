"""TFLite model metadata (#37): the class names (a packed ``labels.txt``) and the input's
normalisation written into ``.tflite`` files with TFLite's metadata writer, so app code reads
them from the file (Android: TFLite Support's ``MetadataExtractor``; the Task Library).

The writer (the ``tflite-support`` package) needs protobuf<4, which TensorFlow's environment
cannot have: it lives in its own virtual environment (``make setup`` makes
.venvs/tflite-support) and runs as one subprocess (tflite_metadata_writer.py) for all the
files. Without that environment nothing fails: the answer says why nothing was written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

WRITER = Path(__file__).with_name("tflite_metadata_writer.py")
VENV = ".venvs/tflite-support/bin/python"
SETUP = "run `make setup`: it installs tflite-support in .venvs/tflite-support"
TIMEOUT = 60


def metadata_python() -> str | None:
    """The Python of tflite-support's environment: $HUBFORGE_TFLITE_SUPPORT_PYTHON when set
    (only it: None when it is not an executable), else .venvs/tflite-support in the source
    tree or beside the environment Hubforge runs in (/opt/hubforge for a closed clone)."""
    named = os.environ.get("HUBFORGE_TFLITE_SUPPORT_PYTHON")
    if named:
        return named if os.access(named, os.X_OK) else None
    for root in (Path(__file__).resolve().parents[2], Path(sys.prefix).parent):
        candidate = root / VENV
        # os.access, not exists(): a Python this account may not reach raises in exists()
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _missing() -> str:
    named = os.environ.get("HUBFORGE_TFLITE_SUPPORT_PYTHON")
    where = (
        f"HUBFORGE_TFLITE_SUPPORT_PYTHON={named!r} is not an executable Python"
        if named
        else "tflite-support's environment (.venvs/tflite-support) was not found"
    )
    return f"TFLite metadata not written: {where}; {SETUP}"


def _ask(request: dict[str, Any], python: str) -> dict[str, Any]:
    """The writer's answer to ``request`` (RuntimeError with its reason when it has none)."""
    try:
        done = subprocess.run(
            [python, "-I", str(WRITER)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"tflite-support's writer did not answer: {e}") from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = {"error": f"exit status {done.returncode}: {done.stderr.strip()[-300:]}"}
    if done.returncode != 0 or "error" in answer:
        raise RuntimeError(f"tflite-support's writer failed: {answer.get('error')}")
    return answer


def write_metadata(
    files: list[Path],
    *,
    name: str,
    description: str,
    class_names: list[str] | None,
    normalization: dict[str, Any] | None,
    input_kind: str,
) -> dict[str, Any]:
    """Write the metadata into each of ``files`` (in place, atomically). ``input_kind``:
    "image" (a float image of 1 or 3 channels: image metadata with the normalisation) or
    "tensor". Answers ``{"files": {path: True | "why not"}, "labels": "labels.txt" | None,
    "normalization": {"mean": m, "std": s}}``, with ``"reason"`` when none was written."""
    paths = [str(f) for f in files]
    norm = normalization or {}
    found: dict[str, Any] = {
        "labels": "labels.txt" if class_names else None,
        "normalization": {"mean": norm.get("mean", 0.0), "std": norm.get("std", 1.0)},
    }
    python = metadata_python()
    request = {"op": "write", "files": paths, "name": name, "description": description}
    request |= {"class_names": class_names, "normalization": normalization}
    request |= {"input_kind": input_kind}
    try:
        if python is None:
            raise RuntimeError(_missing())
        return found | {"files": _ask(request, python)["files"]}
    except RuntimeError as e:
        return found | {"files": dict.fromkeys(paths, str(e)), "reason": str(e)}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """A file's metadata as a dict and its packed files as text: ``{"metadata": {...},
    "files": {"labels.txt": "zero\\none\\n..."}}`` (RuntimeError when it has none)."""
    python = metadata_python()
    if python is None:
        raise RuntimeError(_missing().replace("not written", "not readable"))
    return _ask({"op": "read", "file": str(Path(path).resolve())}, python)
