"""How the hub asks the workbench's privileged helper (:mod:`hubforge.privileged`) for what
only root may do: one JSON line out, one back, on the hub's own Unix socket."""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

MAX_REPLY = 1024 * 1024


class HelperError(RuntimeError):
    """The helper refused, or could not be reached; the message says why."""

    http_status = 503


def hub_socket(root: str | Path) -> Path:
    """Where the helper answers the hub of the workbench whose data folder is ``root``."""
    return Path(root) / "run" / "hub.sock"


def _unanswered(path: Path) -> dict[str, Any]:
    raise HelperError(
        f"the privileged helper closed the connection unanswered ({path}): this process "
        "is not the account it serves there, or it is busy with too many requests"
    )


def ask(path: Path, request: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Send ``request``; return the reply, or raise HelperError with the helper's reason."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise HelperError(
                f"the workbench's privileged helper is not running ({path}): start the "
                "workbench with `hubforge up`, which starts it before the hub"
            ) from None
        except PermissionError:
            raise HelperError(
                f"this account may not use the privileged helper ({path}): only the "
                "workbench's own account for that socket may"
            ) from None
        data = b""
        try:
            conn.sendall(json.dumps(request).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):  # closed unread: see below
            return _unanswered(path)
        while not data.endswith(b"\n") and len(data) < MAX_REPLY:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:  # closed with our request unread
                chunk = b""
            except TimeoutError:
                raise HelperError(
                    f"the privileged helper did not answer within {timeout:.0f} s ({path})"
                ) from None
            if not chunk:
                break
            data += chunk
    if not data:
        return _unanswered(path)
    try:
        reply = json.loads(data)
    except ValueError:
        raise HelperError("the privileged helper's answer was cut short") from None
    if "error" in reply:
        raise HelperError(str(reply["error"]))
    return reply


# What a relay passes on to the service the helper starts: what JupyterHub tells a service
# about itself (its token, URLs, OAuth client), and the proxy's token. Nothing else of the
# hub's environment reaches a process the helper starts.
PASSED_ON = ("JUPYTERHUB_",)
PASSED_ON_NAMES = {"CONFIGPROXY_AUTH_TOKEN"}


def relay(path: Path, name: str, args: list[str]) -> int:
    """Run as the hub's managed service (or proxy) ``name``: the helper starts the real one
    with the account it runs as and its output on this process's stdout/stderr, and stops
    it when this process is stopped or dies (the connection closes). Returns its exit code."""
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ON) or k in PASSED_ON_NAMES}
    request = {"command": "service", "name": name, "argv": args, "env": env}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError as e:
        print(f"hubforge relay: the privileged helper ({path}): {e}", file=sys.stderr)
        return 1
    socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [1, 2])
    stopping: list[float] = []

    def stop(signum: int, frame: object) -> None:
        if not stopping:
            stopping.append(time.monotonic())
            conn.shutdown(socket.SHUT_WR)  # the helper stops the service, then answers

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    data = b""
    while True:
        if stopping and time.monotonic() - stopping[0] > 45:
            return 1
        ready, _, _ = select.select([conn], [], [], 1.0)
        if not ready:
            continue
        chunk = conn.recv(65536)
        if not chunk:
            return 0 if stopping else 1  # the helper is gone: so is the service
        data += chunk
        while b"\n" in data:
            line, data = data.split(b"\n", 1)
            reply = json.loads(line)
            if "error" in reply:
                print(f"hubforge relay: {name}: {reply['error']}", file=sys.stderr)
                return 1
            if "exited" in reply:
                return int(reply["exited"]) if not stopping else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hubforge.helper_client")
    sub = parser.add_subparsers(dest="what", required=True)
    service = sub.add_parser("service", help="run a managed service through the helper")
    service.add_argument("--socket", required=True, type=Path)
    service.add_argument("name")
    service.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    return relay(args.socket, args.name, extra)


if __name__ == "__main__":
    sys.exit(main())
