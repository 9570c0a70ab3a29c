"""TensorBoard API, CLI and widget without a hub (direct loopback URLs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

from hubforge import tensorboard
from hubforge.widgets import tensorboard as tensorboard_widget
from tests.logs import write_logs


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    home = tmp_path_factory.mktemp("tbhome")
    write_logs(home / "runs" / "a")
    write_logs(home / "runs" / "b")
    return home


@pytest.fixture
def home(logs, monkeypatch):
    monkeypatch.setenv("HOME", str(logs))
    for var in (
        "JUPYTERHUB_SERVICE_PREFIX",
        "HUBFORGE_USER_AREA",
        "HUBFORGE_DATA",
        "HUBFORGE_SERVICE_URL",
        "JUPYTERHUB_API_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    yield logs
    for tb in tensorboard.list_instances():
        tb.stop()


def test_api_open_reuse_and_the_per_user_maximum(home, monkeypatch):
    tb = tensorboard.open(home / "runs" / "a")
    assert re.fullmatch(rf"http://127\.0\.0\.1:{tb.port}/[\w-]{{32}}/", tb.url), tb.url
    assert requests.get(tb.url + "data/runs", timeout=30).json() == ["train"]
    # the port alone answers nothing: the path holds the instance's key
    assert requests.get(f"http://127.0.0.1:{tb.port}/data/runs", timeout=30).status_code == 404
    assert tensorboard.open(str(home / "runs" / "a")).port == tb.port
    monkeypatch.setenv("HUBFORGE_TENSORBOARD_MAX", "1")
    with pytest.raises(tensorboard.TensorBoardError, match=r"You already run 1 TensorBoards"):
        tensorboard.open(home / "runs" / "b")
    with pytest.raises(tensorboard.TensorBoardError, match="No running TensorBoard 'nope'"):
        tensorboard.get("nope")


def test_widget_embeds_links_and_stops(home):
    widget = tensorboard_widget(home / "runs" / "b", name="bee")
    url = widget.instance.url
    assert f'src="{url}"' in widget.frame.value and "resize:vertical" in widget.frame.value
    assert f'href="{url}" target="_blank"' in widget.link.value
    assert requests.get(url + "data/runs", timeout=30).status_code == 200
    widget.stop_button.click()
    assert widget.frame.value == "" and "stopped" in widget.status.value
    assert [t.name for t in tensorboard.list_instances()] == []
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


def test_widget_shows_bad_input(home):
    widget = tensorboard_widget(home / "runs" / "missing")
    assert widget.instance is None and "does not exist yet" in widget.status.value
    assert widget.stop_button.disabled


def test_cli(home):
    env = dict(os.environ, HOME=str(home))

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "hubforge.cli", "tensorboard", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    r = cli("open", str(home / "runs" / "a"), str(home / "runs" / "b"), "--name", "both")
    assert r.returncode == 0, r.stderr
    url = r.stdout.split(": ", 1)[1].strip()
    assert sorted(requests.get(url + "data/runs", timeout=30).json()) == ["a/train", "b/train"]
    assert cli("list").stdout.startswith("both")
    r = cli("open", "/etc")
    assert r.returncode == 2 and "outside your areas" in r.stderr
    r = cli("stop")
    assert r.returncode == 2 and "give a NAME or --all" in r.stderr
    assert cli("stop", "both").stdout.strip() == "Stopped both"
    assert cli("list").stdout == ""


def _loads_tensorflow(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return "_pywrap_tensorflow" in f.read()


def test_tensorboard_runs_without_loading_tensorflow_unless_asked(home, monkeypatch):
    """TensorBoard uses its own stand-in for TensorFlow (a tenth of the start time and of
    the memory); the scalars still come; HUBFORGE_TENSORBOARD_TENSORFLOW=1 brings it back."""
    light = tensorboard.open(home / "runs" / "a", name="light")
    tags = requests.get(light.url + "data/plugin/scalars/tags", timeout=30).json()
    assert "epoch_loss" in tags["train"], tags
    assert not _loads_tensorflow(light.record["pid"])
    light.stop()
    monkeypatch.setenv("HUBFORGE_TENSORBOARD_TENSORFLOW", "1")
    full = tensorboard.open(home / "runs" / "a", name="full")
    assert _loads_tensorflow(full.record["pid"])
