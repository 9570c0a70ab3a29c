"""The workbench's privileged helper (hubforge.privileged): it opens a file of a user's area
for Label Studio's unprivileged account, in a process that has dropped to that user's
account, never through a link, and answers nobody else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubforge import accounts

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not accounts.available(),
    reason="the helper is root's, and the test makes OS accounts: run as root",
)
CLIENT = 65534  # nobody plays Label Studio's account


@pytest.fixture
def helper() -> Iterator[tuple[Path, Path, accounts.Account]]:
    base = Path(tempfile.mkdtemp(prefix="hubforge-helper-", dir="/tmp"))
    base.chmod(0o755)
    state, data = base / "state", base / "hdfs"
    state.mkdir(mode=0o700)
    (data / "users").mkdir(parents=True)
    (data / "users").chmod(0o711)
    accounts.ensure_group(state)
    ana = accounts.ensure_account("ana", base / "homes" / "ana", state)
    area = data / "users" / "ana"
    accounts.own_folder(area, ana)
    (area / "labeling").mkdir()
    (area / "labeling" / "cat.png").write_bytes(b"PNG-ana")
    (area / "labeling" / "cat.png").chmod(0o600)
    for path in (area / "labeling", area / "labeling" / "cat.png"):
        os.chown(path, ana.uid, ana.gid)
    sock = base / "helper.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubforge.privileged",
            "--socket",
            str(sock),
            "--data",
            str(data),
            "--state",
            str(state),
            "--client-uid",
            str(CLIENT),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the helper did not start"
        time.sleep(0.05)
    try:
        yield sock, area, ana
    finally:
        proc.terminate()
        proc.wait()
        subprocess.run(["userdel", ana.name], capture_output=True)
        subprocess.run(["groupdel", accounts.group_name(state)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


ASK = r"""
import json, os, socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
    conn.connect(sys.argv[1])
    conn.sendall(sys.argv[2].encode() + b"\n")
    message, fds, _, _ = socket.recv_fds(conn, 65536, 1)
reply = json.loads(message)
if fds:
    reply["content"] = os.read(fds[0], 100).decode()
print(json.dumps(reply))
"""


def ask(sock: Path, request: object, uid: int = CLIENT) -> dict:
    line = request if isinstance(request, str) else json.dumps(request)
    done = subprocess.run(
        [sys.executable, "-c", ASK, str(sock), line],
        capture_output=True,
        text=True,
        user=uid,
        group=uid,
        cwd="/",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_client_gets_the_users_file_opened_as_the_user(helper):
    sock, area, _ = helper
    assert ask(sock, {"open": "users/ana/labeling/cat.png"}) == {"ok": True, "content": "PNG-ana"}
    # while the client itself cannot reach her area
    done = subprocess.run(
        [sys.executable, "-c", f"open({str(area / 'labeling' / 'cat.png')!r}).read()"],
        user=CLIENT,
        group=CLIENT,
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert done.returncode != 0 and "PermissionError" in done.stderr


def test_never_with_roots_rights_never_through_a_link(helper):
    """N1's route to state/ and /etc/shadow: a link in the user's folder, and a root-only
    file the user cannot read, both refused (the open runs as the user)."""
    sock, area, ana = helper
    (area / "labeling" / "shadow").symlink_to("/etc/shadow")
    os.lchown(area / "labeling" / "shadow", ana.uid, ana.gid)
    (area / "labeling" / "up").symlink_to("/")
    os.lchown(area / "labeling" / "up", ana.uid, ana.gid)
    (area / "labeling" / "roots.txt").write_text("ROOT-ONLY")
    (area / "labeling" / "roots.txt").chmod(0o600)  # root's, in her folder
    for relative in ("labeling/shadow", "labeling/up/etc/shadow", "labeling/roots.txt"):
        reply = ask(sock, {"open": f"users/ana/{relative}"})
        assert "content" not in reply and reply.get("error"), (relative, reply)


@pytest.mark.parametrize(
    "request_",
    [
        {"open": "state/service-token"},
        {"open": "users/ana/../../state/x"},
        {"open": "datasets/a.csv"},
        {"open": "users/nobody-here/x"},
        {"open": "users/ana"},
        {"open": 7},
        {"open": "users/ana/labeling/cat.png", "as": "root"},
        {"run": "id"},
        "not json",
    ],
)
def test_anything_else_is_refused_with_why(helper, request_):
    sock, _, _ = helper
    reply = ask(sock, request_)
    assert set(reply) == {"error"} and reply["error"], reply


def test_only_its_client_account_is_answered(helper):
    """Ana herself (or any account but Label Studio's) gets the connection closed, unread."""
    sock, _, ana = helper
    done = subprocess.run(
        [sys.executable, "-c", ASK, str(sock), json.dumps({"open": "users/ana/labeling/cat.png"})],
        capture_output=True,
        text=True,
        user=ana.uid,
        group=ana.gid,
        cwd="/",
        timeout=60,
    )
    assert "PNG-ana" not in done.stdout and done.returncode != 0, (done.stdout, done.stderr)
    assert ask(sock, {"open": "users/ana/labeling/cat.png"})["content"] == "PNG-ana"


def test_only_root_and_the_clients_group_may_connect_at_all(helper):
    """A later review (R2): the socket was 0666, and another account's flood of connections
    filled the helper's backlog (images stopped loading for everyone). Now only the client's
    group may connect."""
    sock, _, _ = helper
    info = os.stat(sock)
    assert oct(info.st_mode & 0o777) == "0o660" and info.st_gid == CLIENT and info.st_uid == 0


def test_a_request_that_fails_unexpectedly_is_answered_with_why(tmp_path):
    """A request's child that meets an error nobody foresaw answers it (the client used to
    see only 'the helper closed the connection unanswered', and the log nothing)."""
    import selectors
    import socket

    from hubforge import privileged

    def broken(conn, layout):
        raise ValueError("something nobody foresaw")

    path = tmp_path / "h.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    selector = selectors.DefaultSelector()
    key = selector.register(server, selectors.EVENT_READ, (os.getuid(), broken))
    children: dict[int, float] = {}
    try:
        privileged._accept(key, children, set(), selector, None)
        client.settimeout(30)
        reply = json.loads(client.makefile().readline())
        assert reply == {"error": "the helper failed (ValueError: something nobody foresaw)"}
    finally:
        for pid in children:
            os.waitpid(pid, 0)
        client.close()
        selector.close()
        server.close()
