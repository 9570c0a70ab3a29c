"""The workbench's privileged helper: a small root process with a fixed command set that the
unprivileged parts of a workbench with per-user accounts ask for what only root can do, the
way JupyterHub's sudospawner mediates for an unprivileged hub.

Today its one client is Label Studio, which runs as the system account ``hf<wb>_ls``
and must show users' own images: ``open`` hands it a file of a user's area, opened by a
process that has dropped to that user's account (so it never reads with root's rights) and
reached without following any link. The helper never opens a user's path as root.

Protocol: a Unix socket; the client sends one JSON line and gets one JSON line back, with
the file descriptor attached (SCM_RIGHTS) when it asked to open a file. Only the configured
client account is answered (SO_PEERCRED).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import signal
import socket
import stat
import struct
import sys
from pathlib import Path

from .accounts import account_name
from .confined import UnsafeEntry, open_beneath

MAX_REQUEST = 64 * 1024
MAX_CHILDREN = 64


def _reaped(children: set[int]) -> set[int]:
    """The children that have ended (collected, so none stays a zombie)."""
    done = set()
    for pid in children:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            finished = pid
        if finished:
            done.add(pid)
    return done


class Refused(Exception):
    """What the helper will not do; the message goes back to the client."""


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _read_request(conn: socket.socket) -> dict:
    conn.settimeout(10)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise Refused("request too large")
    try:
        request = json.loads(data)
    except ValueError:
        raise Refused("send one JSON object on one line") from None
    if not isinstance(request, dict):
        raise Refused("send one JSON object on one line")
    return request


def _user_area(
    data_root: Path, state_dir: Path, relative: object
) -> tuple[Path, list[str], int, int]:
    """users/<name>/<rest> -> (the area, rest, uid, gid of the area's account)."""
    if not isinstance(relative, str) or "\x00" in relative:
        raise Refused("'open' takes a path inside a user's area")
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if len(parts) < 3 or parts[0] != "users" or ".." in parts:
        raise Refused("'open' takes users/<name>/<path of a file in their area>")
    area = data_root / "users" / parts[1]
    info = os.lstat(area)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid == 0:
        raise Refused(f"users/{parts[1]} is not a user's area")
    try:
        owner = pwd.getpwuid(info.st_uid)
    except KeyError:
        raise Refused(f"users/{parts[1]} belongs to no account") from None
    if owner.pw_name != account_name(parts[1], state_dir):
        raise Refused(f"users/{parts[1]} is not this workbench's account's area")
    return area, parts[2:], owner.pw_uid, owner.pw_gid


def _answer(conn: socket.socket, reply: dict, fds: list[int] | None = None) -> None:
    line = (json.dumps(reply) + "\n").encode()
    if fds:
        socket.send_fds(conn, [line], fds)
    else:
        conn.sendall(line)


def handle(conn: socket.socket, data_root: Path, state_dir: Path) -> None:
    """One request, in a child process of the helper (it may drop its rights for good)."""
    try:
        request = _read_request(conn)
        if set(request) != {"open"}:
            raise Refused("the only command is {'open': 'users/<name>/<path>'}")
        area, rest, uid, gid = _user_area(data_root, state_dir, request["open"])
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)  # from here on: the owner's rights, and no way back
        fd = open_beneath(area, Path(*rest))
        _answer(conn, {"ok": True}, [fd])
    except (Refused, UnsafeEntry) as e:
        _answer(conn, {"error": str(e)})
    except OSError as e:
        _answer(conn, {"error": f"{e.strerror or e}"})


def serve(path: Path, data_root: Path, state_dir: Path, client_uid: int) -> None:
    """Answer clients of ``client_uid`` on the Unix socket ``path`` until terminated."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    # only root and the client's own group may connect at all (a flood of connections by
    # another account would fill the backlog); SO_PEERCRED then checks the client's uid
    os.chown(path, 0, pwd.getpwuid(client_uid).pw_gid)
    os.chmod(path, 0o660)
    server.listen(64)
    print(f"hubforge helper listening on {path} for uid {client_uid}", flush=True)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # counted and reaped below
    children: set[int] = set()
    while True:
        conn, _ = server.accept()
        children -= _reaped(children)
        try:
            # another account gets the connection closed, unread; the client gets at most
            # MAX_CHILDREN requests at once (each in its own short-lived child)
            if peer_uid(conn) != client_uid or len(children) >= MAX_CHILDREN:
                continue
            pid = os.fork()
            if pid:
                children.add(pid)
            else:
                try:
                    server.close()
                    handle(conn, data_root, state_dir)
                finally:
                    os._exit(0)
        except OSError:
            pass
        finally:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubforge.privileged", description=__doc__)
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="the shared data root")
    parser.add_argument("--state", required=True, type=Path, help="the workbench's state folder")
    parser.add_argument("--client-uid", required=True, type=int)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the helper runs as root (it starts file reads as users' accounts)", file=sys.stderr)
        return 2
    _die_with_parent()
    serve(args.socket, args.data.resolve(), args.state, args.client_uid)
    return 0


def _die_with_parent() -> None:
    """Stop when `hubforge up` (its parent) dies, even by kill -9 (PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


if __name__ == "__main__":
    sys.exit(main())
