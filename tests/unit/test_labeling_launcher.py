"""The launcher's Label Studio card: a real jupyter-server-proxy entry and its page."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import requests
from jupyter_server_proxy.config import ServerProcess

from hubforge.labeling import launcher
from hubforge.processes import free_port


def test_entry_point_gives_a_launcher_card():
    (ep,) = entry_points(group="jupyter_serverproxy_servers", name="label-studio")
    process = ServerProcess(name=ep.name, **ep.load()())
    assert process.launcher_entry.title == "Label Studio"
    assert process.launcher_entry.enabled and process.new_browser_tab
    assert process.launcher_entry.path_info == "label-studio/"
    icon = process.launcher_entry.icon_path
    assert icon.endswith(".svg") and "<svg" in Path(icon).read_text()


def test_page_sends_the_browser_to_the_signed_in_route():
    port = free_port()
    command = [
        c.format(port=port, base_url="/user/uma/") for c in launcher.server_process()["command"]
    ]
    proc = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the launcher page did not start"
                time.sleep(0.1)
        assert r.status_code == 200
        target = "/user/uma/hubforge/labeling/open?next=/projects/"
        assert f'location.replace("{target}")' in r.text
        assert r.headers["Cache-Control"] == "no-store"
    finally:
        proc.kill()
        proc.wait()
    assert command[0] == sys.executable
