"""The hubforge CLI answers bad input with clear errors and starts nothing."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import sys

import pytest

from hubforge.workbench import SOURCE_TREE
from tests.workbench import hubforge, isolated, service_dir


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


def up_with_config(data, text):
    config = data.parent / "cfg.py"
    config.write_text(text)
    return hubforge("up", "--config", str(config), data_dir=data)


def test_unknown_option(data):
    r = hubforge("up", "--bogus", data_dir=data)
    assert r.returncode == 2
    assert "unrecognized arguments: --bogus" in r.stderr


def test_unknown_command(data):
    r = hubforge("frobnicate", data_dir=data)
    assert r.returncode == 2
    assert "invalid choice: 'frobnicate'" in r.stderr
    assert "up" in r.stderr and "users" in r.stderr


def test_misspelt_setting(data):
    r = up_with_config(data, 'c.Workbench.gpuss = ["0"]\n')
    assert r.returncode == 2
    assert "Unknown setting Workbench.gpuss. Did you mean Workbench.gpus?" in r.stderr
    assert not (data / "state" / "hubforge.json").exists()


def test_bad_profile_value(data):
    r = up_with_config(
        data, 'c.Workbench.profiles = [{"slug": "cpu"}, {"slug": "g", "gpus": -2}]\n'
    )
    assert r.returncode == 2
    assert "profiles[1].gpus=-2" in r.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "70000"], "Workbench.port=70000: use a port in 1-65535"),
        (["--port", "eighty"], "argument --port: invalid int value: 'eighty'"),
        (["--base-url", "forge"], "must start with '/'"),
        (["--config", "/nonexistent/cfg.py"], "does not exist"),
    ],
)
def test_bad_values(data, args, expected):
    r = hubforge("up", *args, data_dir=data)
    assert r.returncode == 2
    assert expected in r.stderr


def test_data_dir_in_source_tree():
    r = hubforge("up", data_dir=SOURCE_TREE / "state")
    assert r.returncode == 2
    assert "inside the source tree" in r.stderr
    assert not (SOURCE_TREE / "state").exists()


def test_users_commands(data):
    r = hubforge("users", "add", "alice", data_dir=data)
    assert r.returncode == 0, r.stderr
    assert "Added user alice with password:" in r.stdout
    r = hubforge(
        "users", "add", "bob", "--admin", "--password-stdin", data_dir=data, input="a-long-secret\n"
    )
    assert r.returncode == 0, r.stderr
    r = hubforge("users", "list", data_dir=data)
    assert r.stdout.split("\n")[:2] == ["alice", "bob  (admin)"]
    passwords = service_dir(data) / "passwords.json"
    if isolated():  # the service's file; the hub's group (and no one else) may read it
        from hubforge import accounts

        info = passwords.stat()
        assert stat.S_IMODE(info.st_mode) == 0o640
        hub, svc = (accounts.service_account_name(r, data / "state") for r in ("hub", "svc"))
        assert (pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name) == (
            svc,
            hub,
        )
    else:
        assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    assert "a-long-secret" not in passwords.read_text()

    r = hubforge("users", "add", "alice", data_dir=data)
    assert r.returncode == 2 and "exists already" in r.stderr
    r = hubforge("users", "add", "Not Valid", data_dir=data)
    assert r.returncode == 2 and "Invalid user name" in r.stderr
    r = hubforge("users", "reset-password", "zed", data_dir=data)
    assert r.returncode == 2 and "hubforge users add zed" in r.stderr
    r = hubforge("users", "reset-password", "bob", "--password-stdin", data_dir=data, input="x\n")
    assert r.returncode == 2 and "at least 8 characters" in r.stderr


def test_down_and_status_when_not_running(data):
    r = hubforge("down", data_dir=data)
    assert r.returncode == 0 and f"not running on {data}" in r.stdout
    # `make down ARGS="..."` passes up's options too
    r = hubforge("down", "--port", "9000", "--ip", "0.0.0.0", "--base-url", "/x/", data_dir=data)
    assert r.returncode == 0 and f"not running on {data}" in r.stdout
    r = hubforge("status", data_dir=data)
    assert r.returncode == 1 and "not running" in r.stdout


def test_serve_outside_a_hub_says_where_it_works():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HUBFORGE_SERVICE_URL", "JUPYTERHUB_API_TOKEN")
    }
    r = subprocess.run(
        [sys.executable, "-m", "hubforge.cli", "serve", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2
    assert "run by the hubforge service: use this inside a Hubforge server" in r.stderr
