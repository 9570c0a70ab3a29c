"""The workbench's privileged helper: a small root process with a fixed command set that the
unprivileged parts of a workbench with per-user accounts ask for what only root can do, the
way JupyterHub's sudospawner mediates for an unprivileged hub.

It has three clients, each on a socket of its own that only that client's account may use:

* Label Studio, which runs as the system account ``hf<wb>_ls`` and must show users' own
  images: ``{"open": "users/<name>/<path>"}`` hands it a file of a user's area, opened by a
  process that has dropped to that user's account (so it never reads with root's rights) and
  reached without following any link.
* the hub's spawner: ``{"command": C, "user": NAME, ...}`` with C one of ``prepare`` (the
  user's account and folders), ``start`` (``argv``, ``env``: their server, as their account),
  ``signal`` (``pid``, ``signum``, ``group``: sent by a process that has become their account,
  so only their own processes can be reached) and ``stop-tensorboards`` (as their account).
  See :mod:`hubforge.user_setup`.
* the hubforge service (``hf<wb>_svc``): ``prepare`` a user, and ``files`` operations on a
  user's area done as that user (:mod:`hubforge.owner_files`): its jobs' and endpoints'
  files, and their processes started and signalled as the user.

The helper never opens a user's path as root except relative to fds opened O_NOFOLLOW, and
never walks a user's tree. What it starts or does as a user runs in a mount namespace whose
``/proc`` shows that account only its own processes (:mod:`hubforge.private_proc`).
Protocol: the client sends one JSON line and gets one JSON line back, with the file
descriptor attached (SCM_RIGHTS) when it asked to open a file. Only the socket's configured
client account is answered (SO_PEERCRED); each request is served by a child process of its
own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import selectors
import signal
import socket
import stat
import struct
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import hub_services, private_proc, user_setup
from .accounts import account_name
from .confined import UnsafeEntry, open_beneath
from .user_setup import Layout, SetupError

MAX_REQUEST = 64 * 1024
MAX_CHILDREN = 64  # requests served at once (services the helper runs are not counted)
CHILD_DEADLINE = 90  # seconds a request's child may take (killed after: a user's FIFO, SIGSTOP)
_long_lived_fd = -1  # a child that stays with a service it started says so here (its pid)


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
    """One JSON line; any file descriptors sent with it are closed."""
    request, fds = _read_with_fds(conn)
    for fd in fds:
        os.close(fd)
    return request


def _read_with_fds(conn: socket.socket, most: int = 2) -> tuple[dict, list[int]]:
    """One JSON line, and up to ``most`` file descriptors sent with it (SCM_RIGHTS)."""
    conn.settimeout(10)
    data, fds = b"", []
    while not data.endswith(b"\n"):
        chunk, got, _, _ = socket.recv_fds(conn, 4096, most)
        fds += got
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST or len(fds) > most:
            for fd in fds:
                os.close(fd)
            raise Refused("request too large")
    try:
        request = json.loads(data)
    except ValueError:
        request = None
    if not isinstance(request, dict):
        for fd in fds:
            os.close(fd)
        raise Refused("send one JSON object on one line")
    return request, fds


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


def handle(conn: socket.socket, layout: Layout) -> None:
    """One request of Label Studio's, in a child process of the helper (it may drop its
    rights for good)."""
    try:
        request = _read_request(conn)
        if set(request) != {"open"}:
            raise Refused("the only command is {'open': 'users/<name>/<path>'}")
        area, rest, uid, gid = _user_area(layout.shared, layout.state, request["open"])
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)  # from here on: the owner's rights, and no way back
        fd = open_beneath(area, Path(*rest))
        _answer(conn, {"ok": True}, [fd])
    except (Refused, UnsafeEntry) as e:
        _answer(conn, {"error": str(e)})
    except OSError as e:
        _answer(conn, {"error": f"{e.strerror or e}"})


HUB_COMMANDS = {
    "service": {"command", "name", "argv", "env"},
    "prepare": {"command", "user"},
    "start": {"command", "user", "argv", "env"},
    "signal": {"command", "user", "pid", "signum", "group"},
    "stop-tensorboards": {"command", "user"},
}


def handle_hub(conn: socket.socket, layout: Layout) -> None:
    """One request of the hub's spawner, in a child process of the helper."""
    fds: list[int] = []
    try:
        request, fds = _read_with_fds(conn)
        command = request.get("command")
        if command not in HUB_COMMANDS or not set(request) <= HUB_COMMANDS[command]:
            raise Refused(
                "send {'command': 'prepare'|'start'|'signal'|'stop-tensorboards', "
                "'user': <name>, ...} or {'command': 'service', 'name': <name>, ...} "
                "with the fields of that command only"
            )
        if command == "service":
            os.write(_long_lived_fd, f"{os.getpid()}\n".encode())  # no deadline for it
            hub_services.run(conn, request, fds)
            return
        user = user_setup.checked_name(request.get("user"))
        if command == "prepare":
            account = user_setup.prepare_user(layout, user)
            _answer(conn, {"ok": True, "account": account.name, "uid": account.uid})
            return
        private_proc.enter_if_available()  # what runs as the user sees only their processes
        if command == "start":
            pid = user_setup.start_server(layout, user, request.get("argv"), request.get("env"))
            _answer(conn, {"ok": True, "pid": pid})
        else:
            user_setup.drop_to(user_setup.existing(layout, user))  # no way back
            if command == "signal":
                alive = user_setup.send_signal(
                    request.get("pid"), request.get("signum"), request.get("group", False)
                )
                _answer(conn, {"ok": True, "alive": alive})
            else:
                user_setup.stop_tensorboards(layout, user)
                _answer(conn, {"ok": True})
    except (Refused, SetupError, UnsafeEntry, hub_services.ServiceRefused) as e:
        _answer(conn, {"error": str(e)})
    except OSError as e:
        _answer(conn, {"error": f"{e.strerror or e}"})
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


SERVICE_COMMANDS = {
    "prepare": {"command", "user"},
    "files": {"command", "user", "op", "args"},
}


def handle_service(conn: socket.socket, layout: Layout) -> None:
    """One request of the hubforge service (its own system account), in a child process of
    the helper: ``prepare`` a user's account and folders, or a ``files`` operation on their
    area (read, write, list, make folders, copy a model in, start or signal a workload of
    theirs: :func:`hubforge.owner_files.serve`), done after this child became the owner."""
    from . import owner_files

    fds: list[int] = []
    try:
        request, fds = _read_with_fds(conn, most=1)  # a write's bytes come as a memory file
        command = request.get("command")
        if command not in SERVICE_COMMANDS or not set(request) <= SERVICE_COMMANDS[command]:
            raise Refused(
                "send {'command': 'prepare', 'user': <name>} or {'command': 'files', "
                "'user': <name>, 'op': <operation>, 'args': {...}}"
            )
        user = user_setup.checked_name(request.get("user"))
        if command == "prepare":
            if not hub_user_exists(layout, user):  # no account is made for any other name
                raise Refused(f"{user!r} is not a user of this hub")
            account = user_setup.prepare_user(layout, user)
            _answer(conn, {"ok": True, "uid": account.uid, "gid": account.gid})
            return
        account = user_setup.existing(layout, user)
        private_proc.enter_if_available()  # their workloads see only their own processes
        user_setup.drop_to(account)  # no way back: the owner's rights from here on
        os.chdir("/")
        try:
            reply, out = owner_files.serve(
                layout.area_of(user), request["op"], request["args"], fds
            )
        except UnsafeEntry:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise Refused(f"the arguments of {request.get('op')!r} are incomplete: {e}") from None
        _answer(conn, reply, out)
    except (Refused, SetupError) as e:
        _answer(conn, {"error": str(e)})
    except (UnsafeEntry, OSError) as e:
        _answer(conn, owner_files.error_reply(e))
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def hub_user_exists(layout: Layout, user: str) -> bool:
    """Whether the hub knows ``user`` (its database, read-only): the service makes accounts
    only for the hub's users, so even a service that misbehaves cannot fill the machine with
    system accounts."""
    import sqlite3

    database = layout.state / "hub" / "jupyterhub.sqlite"
    try:
        if not stat.S_ISREG(os.lstat(database).st_mode):
            return False
        uri = f"file:{database}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            return db.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is not None
    except (OSError, sqlite3.Error):
        return False


Handler = Callable[[socket.socket, Layout], None]


def _listen(path: Path, client_uid: int) -> socket.socket:
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
    return server


def _reap_all(children: dict[int, float], services: set[int]) -> None:
    """Collect every ended child: the requests' own, and (as the subreaper) the servers
    they started, which are reparented here when their request ends."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        children.pop(pid, None)
        services.discard(pid)


def _past_deadline(children: dict[int, float], services: set[int], deadline: float) -> None:
    """A request's child still there after ``deadline`` seconds is killed: it may be
    stuck on something a user made (a FIFO for a file, a SIGSTOP to the child that became
    their account), and a stuck child must not count against everyone's requests."""
    now = time.monotonic()
    for pid, started in list(children.items()):
        if pid not in services and now - started > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def serve(
    clients: list[tuple[Path, int, Handler]], layout: Layout, deadline: float = CHILD_DEADLINE
) -> None:
    """Answer each (socket path, client uid, handler) until terminated."""
    global _long_lived_fd
    selector = selectors.DefaultSelector()
    for path, uid, handler in clients:
        selector.register(_listen(path, uid), selectors.EVENT_READ, (uid, handler))
    announced, _long_lived_fd = os.pipe()
    selector.register(announced, selectors.EVENT_READ, None)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # counted and reaped below
    children: dict[int, float] = {}  # pid -> when its request came
    services: set[int] = set()  # children that stay with a service they started
    while True:
        ready = selector.select(timeout=1.0)
        _reap_all(children, services)
        _past_deadline(children, services, deadline)
        for key, _ in ready:
            if key.data is None:
                services.update(int(p) for p in os.read(announced, 4096).split() if p.isdigit())
                continue
            _accept(key, children, services, selector, layout)


def _accept(
    key: selectors.SelectorKey,
    children: dict[int, float],
    services: set[int],
    selector: selectors.BaseSelector,
    layout: Layout,
) -> None:
    client_uid, handler = key.data
    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
    try:
        # another account gets the connection closed, unread; a client gets at most
        # MAX_CHILDREN requests at once (each in its own short-lived child)
        if peer_uid(conn) != client_uid or len(children) - len(services) >= MAX_CHILDREN:
            return
        pid = os.fork()
        if pid:
            children[pid] = time.monotonic()
            return
        try:
            for other in list(selector.get_map().values()):
                if other.data is not None:
                    other.fileobj.close()  # type: ignore[union-attr]
            selector.close()
            try:
                handler(conn, layout)
            except Exception as e:  # never a closed connection without a word: say what
                traceback.print_exc(file=sys.stderr)
                with contextlib.suppress(OSError):
                    _answer(conn, {"error": f"the helper failed ({type(e).__name__}: {e})"})
        finally:
            sys.stderr.flush()
            os._exit(0)
    except OSError:
        pass
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubforge.privileged", description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="the shared data root")
    parser.add_argument("--state", required=True, type=Path, help="the workbench's state folder")
    parser.add_argument("--socket", type=Path, help="Label Studio's socket")
    parser.add_argument("--client-uid", type=int, help="Label Studio's account")
    parser.add_argument("--hub-socket", type=Path, help="the hub's socket")
    parser.add_argument("--hub-uid", type=int, help="the hub's account")
    parser.add_argument("--service-socket", type=Path, help="the hubforge service's socket")
    parser.add_argument("--service-uid", type=int, help="the hubforge service's account")
    parser.add_argument(
        "--deadline",
        type=float,
        default=CHILD_DEADLINE,
        help="seconds one request may take (its child is killed after)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the helper runs as root (it starts file reads as users' accounts)", file=sys.stderr)
        return 2
    clients: list[tuple[Path, int, Handler]] = []
    if args.socket is not None and args.client_uid is not None:
        clients.append((args.socket, args.client_uid, handle))
    if args.hub_socket is not None and args.hub_uid is not None:
        clients.append((args.hub_socket, args.hub_uid, handle_hub))
    if args.service_socket is not None and args.service_uid is not None:
        clients.append((args.service_socket, args.service_uid, handle_service))
    if not clients:
        parser.error("name a client: --socket and --client-uid, or --hub-socket and --hub-uid")
    _die_with_parent()
    _become_subreaper()
    if args.state.name != "state":
        parser.error("--state is the workbench's state folder, <data dir>/state")
    layout = Layout(root=args.state.parent, shared=args.data.resolve())
    private_proc.probe()
    if args.hub_socket is not None:
        hub_services.preload()  # the hub's service starts each fork a child that reads it
    serve(clients, layout, args.deadline)
    return 0


def _become_subreaper() -> None:
    """Servers the helper starts outlive the request that started them: they are reparented
    to the helper (PR_SET_CHILD_SUBREAPER), which collects them when they end."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1)


def _die_with_parent() -> None:
    """Stop when `hubforge up` (its parent) dies, even by kill -9 (PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


if __name__ == "__main__":
    sys.exit(main())
