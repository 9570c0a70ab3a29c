"""The team's base models (#34): pretrained models kept in the team data, for transfer
learning on a cluster that may have no internet (the store, never a download at train time).

``datasets/base-models/<name>/`` holds the model (``model/``, a SavedModel folder, or
``model.keras``) and ``card.json``: its input size, the preprocessing it expects, its licence
and where it came from, who added it and when. Everyone on the team lists the store; a
private entry (its folder 0700) is its adder's alone: another account cannot even list it.
An entry appears whole or not at all (built beside the store, then renamed in), and an
existing name is never replaced.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import secrets
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STORE = "base-models"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
PREPROCESSING = {
    "none": "the model takes the values as they are",
    "scale_0_1": "pixels / 255 (0..1)",
    "scale_-1_1": "pixels / 127.5 - 1 (-1..1, as MobileNet and EfficientNet-V2 expect)",
}


class BaseModelError(ValueError):
    """A request the store cannot take; the message says what to change."""


@dataclass(frozen=True)
class BaseModel:
    """One entry: ``name``, ``path`` (the model file or folder) and its ``card``."""

    name: str
    path: Path
    card: dict[str, Any]

    input_size = property(lambda self: tuple(self.card["input_size"]))
    preprocessing = property(lambda self: self.card["preprocessing"])
    licence = property(lambda self: self.card["licence"])
    source = property(lambda self: self.card["source"])
    private = property(lambda self: bool(self.card.get("private")))
    added_by = property(lambda self: self.card.get("added_by", ""))


def store_root() -> Path:
    """``datasets/base-models`` of the team data ($HUBFORGE_DATA)."""
    from ..jobs.api import data_root

    return data_root() / "datasets" / STORE


def base_models(root: str | os.PathLike | None = None) -> list[BaseModel]:
    """Every entry this account can read, by name (an unreadable or damaged one is left
    out: another user's private model, an entry being added)."""
    folder = Path(root) if root else store_root()
    try:
        names = sorted(p.name for p in folder.iterdir() if NAME.fullmatch(p.name))
    except OSError:
        return []
    found = []
    for name in names:
        try:
            found.append(_read(folder / name))
        except (OSError, ValueError, KeyError):
            continue
    return found


def get_base_model(name: str, root: str | os.PathLike | None = None) -> BaseModel:
    folder = Path(root) if root else store_root()
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BaseModelError(f"name={name!r}: lowercase letters, digits, '-' or '_'")
    try:
        return _read(folder / name)
    except (OSError, ValueError, KeyError):
        known = ", ".join(m.name for m in base_models(folder)) or "none yet"
        raise BaseModelError(
            f"No base model {name!r} you can read; the store has: {known}"
        ) from None


def _read(entry: Path) -> BaseModel:
    card = json.loads((entry / "card.json").read_text())
    model = entry / ("model.keras" if card["format"] == "keras" else "model")
    if not model.exists():
        raise ValueError("no model")
    return BaseModel(entry.name, model, card)


def _model_format(model: Path) -> str:
    if model.is_dir():
        if not (model / "saved_model.pb").is_file():
            raise BaseModelError(f"{model} is a folder without saved_model.pb: give a SavedModel")
        return "savedmodel"
    if model.suffix == ".keras" and zipfile.is_zipfile(model):
        with zipfile.ZipFile(model) as z:
            if "config.json" in z.namelist():
                return "keras"
    raise BaseModelError(
        f"{model}: give a SavedModel folder or a .keras file (model.save('name.keras'))"
    )


def _card(
    input_size: Any, preprocessing: Any, licence: Any, source: Any, private: bool
) -> dict[str, Any]:
    size = list(input_size) if isinstance(input_size, list | tuple) else None
    if not size or len(size) > 4 or not all(isinstance(n, int) and n > 0 for n in size):
        raise BaseModelError(f"input_size={input_size!r}: 1 to 4 whole numbers, e.g. [96, 96, 3]")
    if preprocessing not in PREPROCESSING:
        choices = "; ".join(f"{k!r}: {v}" for k, v in PREPROCESSING.items())
        raise BaseModelError(f"preprocessing={preprocessing!r}: one of {choices}")
    for field, text in (("licence", licence), ("source", source)):
        if not isinstance(text, str) or not text.strip() or len(text) > 500:
            raise BaseModelError(
                f"{field}: say it (1-500 characters), e.g. 'Apache-2.0' / where the weights came "
                "from: a team deciding what to build on needs both"
            )
    return {
        "input_size": size,
        "preprocessing": preprocessing,
        "licence": licence.strip(),
        "source": source.strip(),
        "private": bool(private),
        "added_by": os.environ.get("JUPYTERHUB_USER") or getpass.getuser(),
        "added": time.time(),
    }


def add_base_model(
    name: str,
    model: str | os.PathLike,
    input_size: Any,
    licence: str,
    source: str,
    preprocessing: str = "scale_0_1",
    private: bool = False,
    root: str | os.PathLike | None = None,
) -> BaseModel:
    """Copy ``model`` (a SavedModel folder or a ``.keras`` file) into the store under
    ``name`` with its card; private: only this account can read it."""
    folder = Path(root) if root else store_root()
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BaseModelError(f"name={name!r}: 1-63 lowercase letters, digits, '-' or '_'")
    source_path = Path(model).expanduser()
    if not source_path.exists():
        raise BaseModelError(f"{source_path} does not exist: give the model's file or folder")
    kind = _model_format(source_path)
    card = {**_card(input_size, preprocessing, licence, source, private), "format": kind}
    if (folder / name).exists():
        raise BaseModelError(f"{name!r} is in the store already: remove it first, or pick a name")
    _make_store(folder)
    _root_only_in_roots_store(folder)
    partial = folder / f".adding-{name}-{secrets.token_hex(4)}"
    partial.mkdir(mode=0o700 if private else 0o755)
    try:
        os.chmod(partial, 0o700 if private else 0o755)  # whatever the umask
        target = partial / ("model.keras" if kind == "keras" else "model")
        if kind == "keras":
            shutil.copyfile(source_path, target)
        else:
            shutil.copytree(source_path, target, copy_function=shutil.copyfile)  # links: copied
        (partial / "card.json").write_text(json.dumps(card, indent=1))
        _readable(partial)
        try:
            os.rename(partial, folder / name)
        except OSError:  # the name was taken meanwhile (a folder with files is not replaced)
            raise BaseModelError(
                f"{name!r} was just added by someone else: pick another name"
            ) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return _read(folder / name)


def _make_store(folder: Path) -> None:
    """The store, made by the first who adds: like datasets/, every teammate may add
    (group-writable, the workbench's group kept) and only an entry's adder renames or
    removes it (sticky)."""
    if folder.is_dir():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # made by someone else meanwhile
        os.chmod(folder, 0o3775)


def _root_only_in_roots_store(folder: Path) -> None:
    """Root (an admin's `hubforge base-model add`) never writes inside a folder a user owns:
    its owner could swap the entry being built for a link between two steps."""
    if os.geteuid() != 0:
        return
    owner = folder.lstat().st_uid
    if owner != 0 or folder.is_symlink():
        raise BaseModelError(
            f"{folder} belongs to uid {owner}, not root: as root, add models only to a store "
            f"root owns (`chown root {folder}`, or let `hubforge up` make it)"
        )


def _readable(entry: Path) -> None:
    """What a teammate reads: folders 0755 and files 0644 inside the entry, whatever the
    modes of the copied model were (the entry's own folder says private or not)."""
    for base, dirs, files in os.walk(entry):
        for d in dirs:
            os.chmod(os.path.join(base, d), 0o755)
        for f in files:
            os.chmod(os.path.join(base, f), 0o644)


def remove_base_model(name: str, root: str | os.PathLike | None = None) -> None:
    """Take an entry out of the store (the store is sticky: only who added it, or an
    admin, may)."""
    entry = get_base_model(name, root).path.parent
    trash = entry.with_name(f".removing-{name}-{secrets.token_hex(4)}")
    try:
        os.rename(entry, trash)  # gone from the list at once, whole
    except PermissionError:
        raise BaseModelError(
            f"{name!r} was added by {_added_by(entry)}: only they or an admin can remove it"
        ) from None
    shutil.rmtree(trash, ignore_errors=True)


def _added_by(entry: Path) -> str:
    try:
        return json.loads((entry / "card.json").read_text()).get("added_by") or "someone else"
    except (OSError, ValueError):
        return "someone else"
