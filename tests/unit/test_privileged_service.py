"""The privileged helper's commands for the hubforge service (hubforge.privileged
.handle_service): the service runs as its own account, which may not enter a user's area; it
asks the helper, whose child becomes the user before it reads, writes, copies, starts or
signals anything (hubforge.owner_files). Links the user planted are never followed, another
user's files and processes stay out of reach, and only the service's account is answered."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubforge import accounts
from tests.helper_ask import ask_as

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not accounts.available(),
    reason="the helper is root's, and the test makes OS accounts: run as root",
)
SERVICE = 65534  # nobody plays the service's account
USERS = ("ana", "bo")

# run as the service's account: one OwnerFiles call, its result or the error it raised
CALL = """
import json, sys
from pathlib import Path
from hubforge.owner_files import ThroughHelper
sock, area, user, op, args = sys.argv[1:6]
files = ThroughHelper(Path(area), user, Path(sock), timeout=60)
try:
    result = getattr(files, op)(*json.loads(args))
    if isinstance(result, bytes):
        result = result.decode(errors="replace")
    if isinstance(result, Path):
        result = str(result)
    print(json.dumps({"ok": True, "result": result}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
"""


class Helper:
    def __init__(self, base: Path):
        self.base = base
        self.root = base / "wb"
        self.state = self.root / "state"
        self.data = self.root / "hdfs"
        self.sock = self.root / "run" / "service.sock"

    def area(self, user: str) -> Path:
        return self.data / "users" / user

    def call(self, user: str, op: str, *args: object, uid: int = SERVICE) -> dict:
        """``OwnerFiles.<op>(*args)`` of ``user``'s area, called by a process of ``uid``."""
        done = subprocess.run(
            [sys.executable, "-c", CALL, str(self.sock), str(self.area(user)), user, op]
            + [json.dumps(list(args))],
            capture_output=True,
            text=True,
            user=uid,
            group=pwd.getpwuid(uid).pw_gid,
            cwd="/",
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def uid(self, user: str) -> int:
        return pwd.getpwnam(accounts.account_name(user, self.state)).pw_uid


@pytest.fixture(scope="module")
def helper() -> Iterator[Helper]:
    base = Path(tempfile.mkdtemp(prefix="hubforge-svchelper-", dir="/tmp"))
    base.chmod(0o755)
    h = Helper(base)
    h.state.mkdir(parents=True, mode=0o700)
    (h.root / "homes").mkdir()
    (h.data / "users").mkdir(parents=True)
    (h.root / "run").mkdir(mode=0o711)
    accounts.ensure_group(h.state)
    (h.state / "hub").mkdir()
    with contextlib.closing(sqlite3.connect(h.state / "hub" / "jupyterhub.sqlite")) as db, db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
        db.executemany("INSERT INTO users (name) VALUES (?)", [(u,) for u in USERS])
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hubforge.privileged"),
            *("--data", str(h.data), "--state", str(h.state)),
            *("--service-socket", str(h.sock), "--service-uid", str(SERVICE)),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not h.sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the helper did not start"
        time.sleep(0.05)
    try:
        for user in USERS:
            # asked by the service before a user's first job or deploy
            reply = _as_service(h, {"command": "prepare", "user": user})
            assert reply.get("ok"), reply
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


def _as_service(h: Helper, request: dict, uid: int = SERVICE) -> dict:
    return ask_as(h.sock, request, uid, pwd.getpwuid(uid).pw_gid)


@pytest.fixture
def victim(helper: Helper) -> Iterator[Path]:
    """A folder of root's with a 0600 secret: nothing here may change or be read."""
    folder = Path(tempfile.mkdtemp(prefix="victim-", dir=helper.base))
    (folder / "secret").write_text("root's\n")
    (folder / "secret").chmod(0o600)
    yield folder
    assert sorted(os.listdir(folder)) == ["secret"], "something was made in root's folder"
    info = os.lstat(folder / "secret")
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)
    assert (folder / "secret").read_text() == "root's\n"
    shutil.rmtree(folder)


def test_prepare_makes_the_account_and_its_private_area(helper):
    for user in USERS:
        info = os.lstat(helper.area(user))
        assert info.st_uid == helper.uid(user) and stat.S_IMODE(info.st_mode) == 0o700
    # the service's own account cannot enter it: only the helper's child, as the user
    done = subprocess.run(
        ["ls", str(helper.area("ana"))], capture_output=True, user=SERVICE, group=SERVICE
    )
    assert done.returncode != 0


def test_files_are_written_and_read_as_their_owner(helper):
    assert helper.call("ana", "mkdirs", "jobs/j-1", 0o700, False)["ok"]
    made = subprocess.run(  # bytes cannot travel as JSON: write them from Python itself
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from hubforge.owner_files import "
            "ThroughHelper as T; T(Path(sys.argv[1]), 'ana', Path(sys.argv[2]))"
            ".write('jobs/j-1/job.json', b'{\"state\": \"pending\"}', 0o644)",
            str(helper.area("ana")),
            str(helper.sock),
        ],
        capture_output=True,
        text=True,
        user=SERVICE,
        group=SERVICE,
        cwd="/",
    )
    assert made.returncode == 0, made.stderr
    record = helper.area("ana") / "jobs" / "j-1" / "job.json"
    assert record.read_text() == '{"state": "pending"}'
    for path in (record, record.parent):
        assert os.lstat(path).st_uid == helper.uid("ana"), path
    assert stat.S_IMODE(os.lstat(record.parent).st_mode) == 0o700
    assert helper.call("ana", "read", "jobs/j-1/job.json", 10)["result"] == '"pending"}'
    assert "j-1" in helper.call("ana", "listdir", "jobs")["result"]
    assert helper.call("ana", "lstat", "jobs/j-1")["result"]["kind"] == "folder"
    assert helper.call("ana", "read", "jobs/none.json")["result"] is None
    assert helper.call("ana", "remove", "jobs/j-1")["ok"]
    assert not record.parent.exists()


def test_a_link_the_user_planted_is_refused_never_followed(helper, victim):
    area = helper.area("ana")
    (area / "models").mkdir(exist_ok=True)
    os.chown(area / "models", helper.uid("ana"), helper.uid("ana"))
    for name, target in (("jobs-link", victim), ("secret-link", victim / "secret")):
        os.symlink(target, area / name)
    for op, args in (
        ("read", ("secret-link",)),
        ("read", ("jobs-link/secret",)),
        ("listdir", ("jobs-link",)),
        ("mkdirs", ("jobs-link/new",)),
        ("remove", ("jobs-link/secret",)),
        ("lstat", ("jobs-link/secret",)),
    ):
        reply = helper.call("ana", op, *args)
        assert "UnsafeEntry" in reply.get("error", "") and "link" in reply["error"], (op, reply)
    # a link the owner may follow leads only where the owner may go: root's folder is not
    reply = helper.call("ana", "copy", str(area / "jobs-link"), "models/stolen")
    assert "error" in reply and not (area / "models" / "stolen").exists(), reply
    for name in ("jobs-link", "secret-link"):
        os.unlink(area / name)


def test_paths_out_of_the_area_and_other_users_are_refused(helper):
    bo = helper.area("bo")
    (bo / "private.txt").write_text("bo's\n")
    os.chown(bo / "private.txt", helper.uid("bo"), helper.uid("bo"))
    (bo / "private.txt").chmod(0o600)
    for args in (("../bo/private.txt",), ("/etc/shadow",), ("",)):
        reply = helper.call("ana", "read", *args)
        assert "UnsafeEntry" in reply.get("error", ""), (args, reply)
    # a copy from bo's area into ana's is made as ana, who may not read bo's area
    reply = helper.call("ana", "copy", str(bo), "models/bo")
    assert "error" in reply, reply
    assert not (helper.area("ana") / "models" / "bo").exists()
    assert "UnsafeEntry" in helper.call("ana", "resolve", "relative/path").get("error", "")


def test_only_listed_workloads_start_as_the_owner_with_a_clean_environment(helper):
    for program in ("python", "/bin/sh", "hubforge.privileged"):
        reply = helper.call("ana", "spawn", program, ["-c", "1"], "x.log", {})
        assert "not a workload" in reply.get("error", ""), reply
    job = helper.area("ana") / "jobs" / "nothing-here"
    reply = helper.call(
        "ana",
        "spawn",
        "job-supervisor",
        [str(job)],
        "jobs/supervisor.log",
        {"PATH": os.environ["PATH"], "LD_PRELOAD": "/tmp/evil.so", "PYTHONPATH": "/tmp"},
    )
    assert reply.get("ok"), reply
    pid = reply["result"]["pid"]
    log = helper.area("ana") / "jobs" / "supervisor.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and log.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.lstat(log).st_uid == helper.uid("ana")  # the log is the owner's file
    assert log.stat().st_size, "the supervisor said nothing about its missing job"
    try:  # still running or already ended: either way it was never root's
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not any(e.startswith((b"LD_PRELOAD=", b"PYTHONPATH=")) for e in environ)
        assert Path(f"/proc/{pid}/status").read_text().count(f"\t{helper.uid('ana')}\t") >= 1
    except (FileNotFoundError, ProcessLookupError):
        pass


def test_signals_reach_only_the_owners_processes(helper):
    mine = subprocess.Popen(["sleep", "60"], user=helper.uid("ana"), group=helper.uid("ana"))
    theirs = subprocess.Popen(["sleep", "60"], user=helper.uid("bo"), group=helper.uid("bo"))
    roots = subprocess.Popen(["sleep", "60"])
    try:
        for pid in (theirs.pid, roots.pid, os.getpid(), 1):
            reply = helper.call("ana", "signal", pid, int(signal.SIGTERM))
            assert "error" in reply, (pid, reply)
        assert theirs.poll() is None and roots.poll() is None
        assert helper.call("ana", "signal", mine.pid, int(signal.SIGTERM))["result"] is True
        assert mine.wait(timeout=10) == -signal.SIGTERM
    finally:
        for proc in (mine, theirs, roots):
            proc.kill()
            proc.wait()


def test_a_user_without_an_account_is_prepared_first(helper):
    reply = helper.call("nobody-yet", "listdir", "jobs")
    assert "no OS account" in reply.get("error", ""), reply


@pytest.mark.parametrize(
    "request_",
    [
        {"command": "start", "user": "ana", "argv": ["/bin/sh"]},
        {"command": "files", "user": "ana", "op": "exec", "args": {}},
        {"command": "files", "user": "ana", "op": "write", "args": {"path": "x"}},
        {"command": "files", "user": "../state", "op": "list", "args": {"path": "."}},
        {
            "command": "files",
            "user": "ana",
            "op": "write",
            "args": {"path": "x", "data": "00", "mode": 0o4755},
        },
        {"command": "prepare", "user": "ana", "extra": 1},
    ],
)
def test_anything_else_is_refused_with_why(helper, request_):
    reply = _as_service(helper, request_)
    assert reply.get("error"), reply
    assert not (helper.area("ana") / "x").exists()


def test_only_the_services_account_is_answered(helper):
    ana = helper.uid("ana")
    reply = _as_service(helper, {"command": "prepare", "user": "ana"}, uid=ana)
    assert "error" in reply, reply
    reply = helper.call("bo", "listdir", ".", uid=ana)  # ana asking for bo's area
    assert "error" in reply and "bo" not in json.dumps(reply.get("result")), reply


def test_a_big_write_travels_as_a_file_not_in_the_request_line(helper):
    """A job's script may be megabytes (the API takes up to 5 MB): its bytes go to the
    helper as a memory file, so the request stays small; a size that does not match what
    was sent is refused."""
    data = bytes(range(256)) * 12_000  # 3 MB
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from hubforge.owner_files import "
            "ThroughHelper as T; T(Path(sys.argv[1]), 'ana', Path(sys.argv[2]))"
            ".write('big.bin', sys.stdin.buffer.read(), 0o600)",
            str(helper.area("ana")),
            str(helper.sock),
        ],
        input=data,
        capture_output=True,
        user=SERVICE,
        group=SERVICE,
        cwd="/",
    )
    assert made.returncode == 0, made.stderr
    written = helper.area("ana") / "big.bin"
    assert written.read_bytes() == data and os.lstat(written).st_uid == helper.uid("ana")
    lying = {"command": "files", "user": "ana", "op": "write"}
    reply = _as_service(helper, {**lying, "args": {"path": "lie.bin", "size": 10}})
    assert "one file descriptor" in reply.get("error", ""), reply
    assert not (helper.area("ana") / "lie.bin").exists()
    written.unlink()


def test_accounts_are_made_only_for_the_hubs_users(helper):
    """Even a service that misbehaves cannot have root make system accounts for any name it
    likes (review 2026-12-05, F7): prepare answers only for users the hub's database has."""
    for name in ("mallory", "-rf x", "hf", "a" * 200):
        reply = _as_service(helper, {"command": "prepare", "user": name})
        assert "not a user of this hub" in reply.get("error", ""), (name, reply)
        with pytest.raises(KeyError):
            pwd.getpwnam(accounts.account_name(name, helper.state))
