"""TensorBoard open on a home its owner cannot write answers what to fix (not "Unhandled
error"), starts nothing, and works once the home is writable again. A real hub and user's
server; the server runs as the user's own account (so the home's mode binds it)."""

from __future__ import annotations

import os

import psutil
import pytest

from tests.workbench import RunningWorkbench, isolated

pytestmark = [
    pytest.mark.hub,
    pytest.mark.skipif(
        not isolated(), reason="a home only its owner's mode can close: per-user accounts"
    ),
]
API = "user/tb-hana/hubforge/api/tensorboards"


@pytest.fixture
def hub(workbench) -> RunningWorkbench:
    """The session's workbench (its users' servers run as their own accounts)."""
    return workbench


def tensorboards_of(uid: int) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["uids", "cmdline"])
        if p.info["uids"]
        and p.info["uids"].real == uid
        and "hubforge.tensorboard.launch" in (p.info["cmdline"] or [])
    ]


def test_open_on_an_unwritable_home_says_what_to_fix(hub):
    token = hub.create_user("tb-hana")
    try:
        assert hub.spawn("tb-hana", token).status_code in (201, 202)
        home = hub.data_dir / "homes" / "tb-hana"
        (home / "runs" / "a").mkdir(parents=True)
        uid = home.stat().st_uid
        closed = [p for p in (home, home / ".hubforge") if p.is_dir()]
        modes = {p: p.stat().st_mode & 0o7777 for p in closed}
        try:
            for path in closed:
                os.chmod(path, 0o500)  # r-x for its owner: nothing can be made in it
            r = hub.api("POST", API, token, json={"logdir": "runs/a"})
            assert r.status_code == 403, r.text
            message = r.json()["message"]
            assert "Unhandled error" not in message
            assert f"TensorBoard cannot write {home}/.hubforge" in message, message
            assert "Permission denied" in message and "chmod u+w" in message, message
            assert "Nothing was started" in message
            assert tensorboards_of(uid) == []
        finally:
            for path, mode in modes.items():
                os.chmod(path, mode)
        # what the answer said to do is enough
        r = hub.api("POST", API, token, json={"logdir": "runs/a"})
        assert r.status_code == 201, r.text
        assert len(tensorboards_of(uid)) == 1
        assert hub.api("DELETE", f"{API}/{r.json()['name']}", token).status_code == 204
    finally:
        hub.ensure_stopped("tb-hana")
