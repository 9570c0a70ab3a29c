"""The labeling widget treats what a project's owner writes as data: no item field reaches
the page as HTML (N10), and an item's path must stay inside the project's own folders."""

from __future__ import annotations

import importlib
import os
from types import SimpleNamespace

import pytest
from PIL import Image

from hubforge import labeling

label = importlib.import_module("hubforge.widgets.label")


def test_the_widget_script_never_writes_html():
    assert "innerHTML" not in label.ESM and "outerHTML" not in label.ESM
    assert "insertAdjacentHTML" not in label.ESM and "document.write" not in label.ESM


@pytest.fixture
def area(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBFORGE_DATA", str(tmp_path))
    pics = tmp_path / "users" / "bob" / "pics"
    pics.mkdir(parents=True)
    Image.new("RGB", (4, 3)).save(pics / "a.png")
    (tmp_path / "users" / "alice").mkdir(parents=True)
    Image.new("RGB", (4, 3)).save(tmp_path / "users" / "alice" / "private.png")
    os.symlink(tmp_path / "users" / "alice" / "private.png", pics / "link.png")
    os.symlink(tmp_path / "users" / "alice", pics / "dir")
    project = SimpleNamespace(storage_folders=lambda: ["users/bob/pics"])
    return SimpleNamespace(project=project, _folders=None, _checked_path=None)


def payload(widget, path: str):
    widget._checked_path = lambda p: label.LabelWidget._checked_path(widget, p)
    return label.LabelWidget._payload(widget, {"id": 1, "data": {"hubforge_path": path}})


def test_an_item_inside_the_projects_folder_is_shown(area):
    shown = payload(area, "users/bob/pics/a.png")
    assert shown["kind"] == "image" and (shown["width"], shown["height"]) == (4, 3)
    assert shown["src"].startswith("data:image/png;base64,") and shown["name"] == "a.png"


@pytest.mark.parametrize(
    "path",
    [
        "users/alice/private.png",  # another area
        "/etc/passwd",  # absolute
        "users/bob/pics/../../alice/private.png",  # climbs out
        "users/bob/pics/link.png",  # a link out of the folder
        "users/bob/pics/dir/private.png",  # a folder link out of it
        "users/bob/pics",  # the folder itself
        "",
    ],
)
def test_a_path_the_owner_points_elsewhere_is_refused(area, path):
    with pytest.raises(labeling.LabelingError):
        payload(area, path)
