"""The distribution: folder-to-package mapping, wheel contents, the server extension."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hubforge.workbench import SOURCE_TREE

BIN = Path(sys.executable).parent


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_server_extension_is_enabled_and_ok():
    r = subprocess.run(
        [str(BIN / "jupyter"), "server", "extension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    out = strip_ansi(r.stdout + r.stderr)
    assert re.search(r"hubforge\s+enabled", out), out
    assert re.search(r"hubforge 0\.1\.0 OK", out), out


def test_lab_extension_is_installed_and_enabled():
    """The sidebar's JupyterLab extension, built by `make setup`, is what JupyterLab loads."""
    r = subprocess.run(
        [str(BIN / "jupyter"), "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    out = strip_ansi(r.stdout + r.stderr)
    assert re.search(r"@hubforge/lab v0\.1\.0 enabled\s+OK", out), out


def _copy_of_the_source_tree(target: Path) -> Path:
    """The tracked files and the prebuilt sidebar, copied: a build writes hubforge.egg-info
    into the tree it builds, and the CLI run from the source tree by other tests meanwhile
    reads its entry points there (CI90: none found mid-rewrite, "choose one of")."""
    tracked = (
        subprocess.run(
            ["git", "-C", str(SOURCE_TREE), "ls-files", "-z"], capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        source = SOURCE_TREE / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    prebuilt = Path("extensions/labextension/prebuilt")
    shutil.copytree(SOURCE_TREE / prebuilt, target / prebuilt)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    tree = _copy_of_the_source_tree(tmp_path_factory.mktemp("tree"))
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    (path,) = out.glob("hubforge-*.whl")
    return path


def test_wheel_maps_the_folders_into_one_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "hubforge/__init__.py",
        "hubforge/cli/__init__.py",
        "hubforge/service/app.py",
        "hubforge/hub/spawner.py",
        "hubforge/hub/jupyterhub_config.py",
        "hubforge/widgets/__init__.py",
        "hubforge/labeling/api.py",
        "hubforge/labeling/project.py",
        "hubforge/labeling/connection.py",
        "hubforge/labeling/ls_main.py",
        "hubforge/labeling/ls_start.py",
        "hubforge/labeling/ls_routes.py",
        "hubforge/labeling/ls_policy.py",
        "hubforge/labeling/ls_rules.py",
        "hubforge/labeling/ls_files.py",
        "hubforge-0.1.0.data/data/etc/jupyter/jupyter_server_config.d/hubforge.json",
        "hubforge-0.1.0.data/data/share/jupyter/lab/settings/overrides.d/hubforge.json",
    ):
        assert expected in names, expected
    # every package folder of the source tree (a new room forgotten in pyproject.toml's
    # list installs from an editable checkout and is missing from every real install)
    for init in sorted((SOURCE_TREE / "extensions").glob("*/__init__.py")):
        assert f"hubforge/{init.parent.name}/__init__.py" in names, init
    # the prebuilt sidebar: installing the wheel needs no Node
    lab = "hubforge-0.1.0.data/data/share/jupyter/labextensions/@hubforge/lab/"
    assert lab + "package.json" in names
    assert any(n.startswith(lab + "static/remoteEntry.") for n in names), sorted(names)
    assert not any(n.startswith(("tests/", "hubforge/tests")) for n in names)
    assert not any("node_modules" in n for n in names)
    entry_points = zipfile.ZipFile(wheel).read("hubforge-0.1.0.dist-info/entry_points.txt").decode()
    assert "hubforge = hubforge.cli:main" in entry_points
    assert "hubforge-local = hubforge.hub.spawner:HubforgeLocalSpawner" in entry_points


def test_installed_wheel_imports_without_the_source_tree(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    code = (
        "import hubforge, hubforge.hub.spawner, hubforge.service.app, hubforge.cli;"
        "print(hubforge.__file__); print(hubforge.hub.config.config_file_path().is_file())"
    )
    r = subprocess.run(
        [sys.executable, "-c", "import hubforge.hub.config;" + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(target)),
    )
    assert r.returncode == 0, r.stderr
    path, has_config = r.stdout.split()
    assert path.startswith(str(target))
    assert has_config == "True"
