"""The images: hadolint clean, pinned bases, non-root, pins consistent with pyproject.toml."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))


def test_there_are_hub_label_studio_singleuser_and_serving_images():
    assert [p.parent.name for p in DOCKERFILES] == ["hub", "label-studio", "serving", "singleuser"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    run = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_pinned_base_and_non_root(dockerfile):
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    (base,) = re.findall(r"^FROM (\S+)", text, re.M)
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    name, _, tag = base.rpartition(":")
    assert name and tag and tag != "latest", base
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), users


def pyproject_requirements() -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {
        canonicalize_name(Requirement(r).name): Requirement(r)
        for r in data["project"]["dependencies"]
    }


@pytest.mark.parametrize("image", ["hub", "singleuser"])
def test_requirements_are_consistent_with_pyproject(image):
    declared = pyproject_requirements()
    lines = (ROOT / "images" / image / "requirements.txt").read_text().splitlines()
    pins = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    assert pins
    for pin in pins:
        (spec,) = pin.specifier  # exactly pinned
        assert spec.operator == "==", pin
        wanted = declared.get(canonicalize_name(pin.name))
        if wanted is not None:
            assert spec.version in wanted.specifier, f"{pin} does not satisfy pyproject's {wanted}"


STACK = {"numpy", "pandas", "matplotlib", "scikit-learn", "scipy", "pillow", "seaborn"}


def test_the_scientific_stack_is_the_same_in_the_workbench_and_the_image():
    """What a data scientist expects in a kernel without installing anything: declared for
    the local workbench (pyproject.toml), pinned in the single-user image, installed here."""
    from importlib.metadata import version

    declared = pyproject_requirements()
    lines = (ROOT / "images" / "singleuser" / "requirements.txt").read_text().splitlines()
    pinned = {
        canonicalize_name(Requirement(line).name): Requirement(line)
        for line in lines
        if line.strip() and not line.startswith("#")
    }
    assert set(declared) >= STACK, STACK - set(declared)
    assert set(pinned) >= STACK, STACK - set(pinned)
    # installed where kernels and jobs run (the image's own versions may be older: it pins)
    for name in STACK:
        assert version(name), name


@pytest.mark.parametrize("image", ["hub", "singleuser"])
def test_the_image_copies_every_folder_the_package_is_built_from(image):
    """`pip install /tmp/hubforge` in the image needs each folder pyproject maps a package to
    (a folder left out fails the build, or ships a package without its files)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = {d.split("/")[0] for d in data["tool"]["setuptools"]["package-dir"].values()}
    text = (ROOT / "images" / image / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY \S+ (\S+) /tmp/hubforge/\1$", text, re.M))
    assert folders <= copied, f"not copied into the {image} image: {sorted(folders - copied)}"


def _copied_into(dockerfile: Path) -> dict[str, Path]:
    """What the image's COPY lines put where: {path in the image: file in the repository}."""
    placed = {}
    for source, target in re.findall(
        r"^COPY (?:--\S+ )*(\S+) (\S+)$", dockerfile.read_text(), re.M
    ):
        for found in sorted(ROOT.glob(source)):
            where = target + found.name if target.endswith("/") else target
            placed[where] = found
    return placed


def test_the_label_studio_image_has_every_module_ls_main_loads():
    """ls_main.py runs there as a script: every sibling module it (or a sibling) imports must
    be beside it, and the database check it loads by path from the folder above it too."""
    import ast

    placed = _copied_into(ROOT / "images" / "label-studio" / "Dockerfile")
    entry = "/opt/hubforge/ls_main.py"
    assert placed.get(entry) == ROOT / "extensions" / "labeling" / "ls_main.py", placed
    labeling = ROOT / "extensions" / "labeling"
    todo, seen = ["ls_main"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        assert f"/opt/hubforge/{name}.py" in placed, f"{name}.py is not in the image"
        tree = ast.parse((labeling / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                todo += [node.module] if (labeling / f"{node.module}.py").exists() else []
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if (labeling / f"{a.name}.py").exists()]
    assert len(seen) > 1, seen  # it does import siblings
    # ls_start loads hubforge's sqlite_backup.py from the folder above the script
    assert placed.get("/opt/sqlite_backup.py") == ROOT / "extensions" / "sqlite_backup.py"
