"""The files a project labels: collecting a source's items (a folder or a list of files in
the data area, or texts), batching them into import requests, and reading an image's size."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .connection import data_root
from .errors import LabelingError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}
TEXT_SUFFIXES = {".txt"}
# one import request holds at most this (Label Studio takes at most 250K tasks / 200 MB)
IMPORT_MAX_TASKS = 200_000
IMPORT_MAX_BYTES = 100 * 1024 * 1024


def _image_size(data: dict[str, Any]) -> tuple[int, int]:
    """Width and height in pixels of a task's image in the data area."""
    from PIL import Image

    with Image.open(data_root() / data["hubforge_path"]) as image:
        return image.size


def _batches(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """As few import requests as Label Studio's per-request limits allow."""
    batches: list[list[dict[str, Any]]] = []
    size = 0
    for item in items:
        item_size = len(json.dumps(item)) + 2
        if (
            not batches
            or len(batches[-1]) >= IMPORT_MAX_TASKS
            or size + item_size > IMPORT_MAX_BYTES
        ):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item_size
    return batches


def _collect(source: Any, task: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Task data for ``source``: a folder (relative to $HUBFORGE_DATA or absolute, inside it),
    a list of files, or (text tasks) a list of strings."""
    texts = isinstance(source, list | tuple) and all(
        isinstance(x, str) and Path(x).suffix.lower() not in TEXT_SUFFIXES for x in source
    )
    if task == "text-classification" and texts:
        return [
            {"text": t, "hubforge_key": hashlib.sha1(t.encode()).hexdigest()} for t in source
        ], []
    files = _files(source)
    suffixes = IMAGE_SUFFIXES if task != "text-classification" else TEXT_SUFFIXES
    root = data_root().resolve()
    items, unsupported = [], []
    for f in files:
        if f.suffix.lower() not in suffixes:
            unsupported.append(f.name)
            continue
        real = f.resolve()
        if root not in real.parents:  # a link out of the data area: Label Studio serves none
            unsupported.append(f"{f.name} (a link out of {root})")
            continue
        relative = str(real.relative_to(root))
        if task == "text-classification":
            text = f.read_text(errors="replace")
            items.append({"text": text, "hubforge_path": relative, "hubforge_key": relative})
        else:
            items.append({"hubforge_path": relative, "hubforge_key": relative})
    return items, unsupported


def _files(source: Any) -> list[Path]:
    root = data_root().resolve()
    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        folder = (folder if folder.is_absolute() else root / folder).resolve()
        if root not in (folder, *folder.parents):
            raise LabelingError(
                f"{source} is outside the data area {root}: Label Studio serves files from there"
            )
        if not folder.is_dir():
            raise LabelingError(f"{source}: no such folder in the data area ({folder})")
        return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    files = []
    for item in source:
        path = Path(item)
        path = (path if path.is_absolute() else root / path).resolve()
        if root not in path.parents:
            raise LabelingError(f"{item} is outside the data area {root}")
        if not path.is_file():
            raise LabelingError(f"{item}: no such file")
        files.append(path)
    return files
