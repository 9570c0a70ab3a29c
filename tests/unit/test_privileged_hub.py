"""The privileged helper's commands for the hub's spawner (hubforge.privileged.handle_hub):
the hub asks by user name; the helper makes the account and folders, starts the server as
the account and signals only that account's processes. Another account is not answered;
a pid, a name or a link the user chose never gets root's rights."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hubforge import accounts
from hubforge.helper_client import HelperError, ask
from tests.helper_ask import ask_as

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not accounts.available(),
    reason="the helper is root's, and the test makes OS accounts: run as root",
)
HUB = 65534  # nobody plays the hub's account
USERS = ("ana", "bo")


class Helper:
    def __init__(self, base: Path):
        self.base = base
        self.root = base / "wb"
        self.state = self.root / "state"
        self.data = self.root / "hdfs"
        self.sock = self.root / "run" / "hub.sock"

    def ask(self, request: dict, uid: int = HUB, gid: int | None = None) -> dict:
        """``request`` sent by a process of ``uid``; the reply, or {'error': ...}."""
        return ask_as(self.sock, request, uid, uid if gid is None else gid)

    def account(self, user: str) -> accounts.Account:
        return accounts.existing_account(user, self.root / "homes" / user, self.state)


@pytest.fixture(scope="module")
def helper() -> Iterator[Helper]:
    base = Path(tempfile.mkdtemp(prefix="hubforge-hubhelper-", dir="/tmp"))
    base.chmod(0o755)
    h = Helper(base)
    h.state.mkdir(parents=True, mode=0o700)
    (h.root / "homes").mkdir()
    (h.data / "users").mkdir(parents=True)
    (h.root / "run").mkdir(mode=0o711)
    accounts.ensure_group(h.state)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hubforge.privileged"),
            *("--data", str(h.data), "--state", str(h.state)),
            *("--hub-socket", str(h.sock), "--hub-uid", str(HUB)),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not h.sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the helper did not start"
        time.sleep(0.05)
    try:
        for user in USERS:  # what the hub asks first, at every spawn
            assert h.ask({"command": "prepare", "user": user}).get("ok")
        yield h
    finally:
        proc.terminate()
        proc.wait()
        for user in USERS:
            name = accounts.account_name(user, h.state)
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
            subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", accounts.group_name(h.state)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _start(helper: Helper, user: str, code: str) -> int:
    reply = helper.ask(
        {
            "command": "start",
            "user": user,
            "argv": [sys.executable, "-c", code],
            "env": {"PATH": os.environ["PATH"]},
        }
    )
    assert reply.get("ok"), reply
    return reply["pid"]


def _wait_for(check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_prepare_makes_the_account_and_its_folders(helper):
    for user in USERS:  # made by the fixture's first 'prepare'; the same again
        reply = helper.ask({"command": "prepare", "user": user})
        assert reply == {
            "ok": True,
            "account": accounts.account_name(user, helper.state),
            "uid": helper.account(user).uid,
        }
    ana = helper.account("ana")
    home, area = helper.root / "homes" / "ana", helper.data / "users" / "ana"
    for folder in (home, area):
        info = os.stat(folder)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (ana.uid, 0o700)
    assert sorted(p.name for p in (home / "examples").iterdir())  # the example series
    assert os.stat(home / "examples").st_uid == ana.uid
    assert os.readlink(home / "hdfs" / "users" / "ana") == str(area)
    assert (area / "jobs").is_dir() and os.stat(area / "jobs").st_uid == ana.uid


def test_start_runs_the_server_as_the_account_logging_to_their_own_file(helper):
    ana = helper.account("ana")
    home = helper.root / "homes" / "ana"
    pid = _start(
        helper,
        "ana",
        "import os, time; print('hello from', os.getuid(), flush=True); time.sleep(120)",
    )
    try:
        proc = psutil.Process(pid)
        assert proc.uids().real == ana.uid and proc.gids().real == ana.gid
        assert proc.cwd() == str(home)
        log = home / ".hubforge" / "server.log"
        _wait_for(lambda: log.exists() and f"hello from {ana.uid}" in log.read_text())
        assert os.stat(log).st_uid == ana.uid
        # its own session: the hub's Ctrl-C never reaches it
        assert os.getsid(pid) == pid
        assert helper.ask({"command": "signal", "user": "ana", "pid": pid, "signum": 15}) == {
            "ok": True,
            "alive": True,
        }
        _wait_for(lambda: not psutil.pid_exists(pid) or proc.status() == psutil.STATUS_ZOMBIE)
        # reaped by the helper (the server's subreaper): no zombie stays behind
        _wait_for(lambda: not psutil.pid_exists(pid), timeout=10)
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_signal_reaches_only_the_users_own_processes(helper):
    """The hub names the pid (it comes from the hub's database, or from a user-written file
    in a compromised hub): sent as ana's account, it reaches nothing of bo's or root's."""
    bos = _start(helper, "bo", "import time; time.sleep(120)")
    roots = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        for pid in (bos, roots.pid, os.getpid(), 1):
            reply = helper.ask(
                {"command": "signal", "user": "ana", "pid": pid, "signum": 9, "group": False}
            )
            assert "error" in reply, (pid, reply)
        group = helper.ask(
            {"command": "signal", "user": "ana", "pid": bos, "signum": 9, "group": True}
        )
        assert "error" in group
        time.sleep(0.3)
        assert psutil.Process(bos).status() != psutil.STATUS_ZOMBIE and roots.poll() is None
    finally:
        roots.kill()
        roots.wait()
        os.kill(bos, signal.SIGKILL)


def test_the_server_log_is_never_written_through_a_link(helper):
    """Ana swaps ~/.hubforge for a link to the state folder: the helper, root, refuses to
    open the log there (nothing is created or handed to her in state/)."""
    ana = helper.account("ana")
    home = helper.root / "homes" / "ana"
    shutil.rmtree(home / ".hubforge", ignore_errors=True)
    (home / ".hubforge").symlink_to(helper.state)
    os.lchown(home / ".hubforge", ana.uid, ana.gid)
    before = sorted((p.name, p.stat().st_uid) for p in helper.state.iterdir())
    try:
        reply = _raw_start(helper, "ana")
        assert "error" in reply and "link" in reply["error"], reply
        assert sorted((p.name, p.stat().st_uid) for p in helper.state.iterdir()) == before
    finally:
        (home / ".hubforge").unlink()


def _raw_start(helper: Helper, user: str) -> dict:
    return helper.ask({"command": "start", "user": user, "argv": ["/bin/true"], "env": {}})


@pytest.mark.parametrize(
    "request_",
    [
        {"command": "prepare", "user": "../state"},
        {"command": "prepare", "user": ".hidden"},
        {"command": "prepare", "user": ""},
        {"command": "prepare", "user": 7},
        {"command": "prepare", "user": "ana", "home": "/root"},
        {"command": "start", "user": "nobody-made-yet", "argv": ["/bin/true"], "env": {}},
        {"command": "start", "user": "ana", "argv": "id", "env": {}},
        {"command": "start", "user": "ana", "argv": [], "env": {}},
        {"command": "signal", "user": "ana", "pid": "1", "signum": 9},
        {"command": "signal", "user": "ana", "pid": 12345, "signum": 999},
        {"command": "run", "user": "ana"},
        {"command": "service", "name": "sh", "argv": [], "env": {}},
        {"command": "service", "name": "hubforge", "argv": ["--debug"], "env": {}},
        {"command": "service", "name": "hubforge", "argv": [], "env": {"X": 1}},
        {"command": "service", "name": "proxy", "user": "ana"},
        # the review's route from the hub to code as the proxy's account (or root below
        # port 1024): configurable-http-proxy require()s a --storage-backend file
        {"command": "service", "name": "proxy", "argv": ["--storage-backend", "/tmp/x.js"]},
        {"command": "service", "name": "proxy", "argv": ["--pid-file", "/etc/x"], "env": {}},
        {"command": "service", "name": "proxy", "argv": ["--port", "--pid-file"], "env": {}},
        {"command": "service", "name": "proxy", "argv": ["--ip", "127.0.0.1", "--port"]},
        {"open": "users/ana/examples"},
    ],
)
def test_anything_else_is_refused_with_why(helper, request_):
    reply = helper.ask(request_)
    assert set(reply) == {"error"} and reply["error"], reply


def test_only_the_hubs_account_is_answered(helper):
    """A user's account (or any but the hub's) gets the connection closed, unanswered, and
    cannot even connect: the socket is 0660 root:<the hub's group>."""
    ana = helper.account("ana")
    reply = helper.ask({"command": "prepare", "user": "bo"}, uid=ana.uid)
    assert "error" in reply and "ok" not in reply
    assert "may not use" in reply["error"]
    info = os.stat(helper.sock)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, HUB, 0o660)
    # in the hub's group but not the hub's account: connected, then closed unanswered
    reply = helper.ask({"command": "prepare", "user": "bo"}, uid=ana.uid, gid=HUB)
    assert "closed the connection unanswered" in reply["error"]


def test_a_missing_helper_says_what_to_do(tmp_path):
    with pytest.raises(HelperError, match="hubforge up"):
        ask(tmp_path / "run" / "hub.sock", {"command": "prepare", "user": "ana"})


def test_a_fifo_for_the_tensorboard_records_does_not_hold_the_helper(helper):
    """The review's denial of service: ~/.hubforge/tensorboards.json made a FIFO blocked
    the helper's child for ever (64 such stops locked every user out)."""
    ana = helper.account("ana")
    records = helper.root / "homes" / "ana" / ".hubforge" / "tensorboards.json"
    records.parent.mkdir(exist_ok=True)
    os.chown(records.parent, ana.uid, ana.gid)
    records.unlink(missing_ok=True)
    os.mkfifo(records)
    os.chown(records, ana.uid, ana.gid)
    try:
        # an answer at all is the point: a helper held by the FIFO never answers
        reply = helper.ask({"command": "stop-tensorboards", "user": "ana"})
        assert "is not a file" in reply.get("error", ""), reply
    finally:
        records.unlink()


HOLD = """
import socket, sys, time
held = []
for _ in range(70):  # more than the helper serves at once, none of them saying anything
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    held.append(s)
print("held", flush=True)
time.sleep(60)
"""


def test_requests_that_never_finish_are_killed_and_lock_nobody_out(helper):
    """Children stuck past the deadline (here: requests that never arrive) are killed, so
    the next request is served instead of refused at the 64-request cap."""
    sock = helper.root / "run" / "hub-deadline.sock"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hubforge.privileged"),
            *("--data", str(helper.data), "--state", str(helper.state)),
            *("--hub-socket", str(sock), "--hub-uid", str(HUB), "--deadline", "2"),
        ],
        stdout=subprocess.DEVNULL,
    )
    holder = None
    try:
        _wait_for(sock.exists)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(sock)],
            stdout=subprocess.PIPE,
            text=True,
            user=HUB,
            group=HUB,
        )
        assert holder.stdout.readline().strip() == "held"
        time.sleep(4)  # past the deadline (a stuck read would last 10 s)
        other = Helper(helper.base)
        other.sock = sock
        reply = other.ask({"command": "signal", "user": "ana", "pid": 2**22 - 1, "signum": 0})
        assert reply == {"ok": True, "alive": False}, reply
    finally:
        if holder is not None:
            holder.kill()
            holder.communicate()
        proc.terminate()
        proc.wait()
