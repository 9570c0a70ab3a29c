"""How the hub asks the workbench's privileged helper (:mod:`hubforge.privileged`) for what
only root may do: one JSON line out, one back, on the hub's own Unix socket."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

MAX_REPLY = 1024 * 1024


class HelperError(RuntimeError):
    """The helper refused, or could not be reached; the message says why."""


def hub_socket(root: str | Path) -> Path:
    """Where the helper answers the hub of the workbench whose data folder is ``root``."""
    return Path(root) / "run" / "hub.sock"


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
        conn.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n") and len(data) < MAX_REPLY:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:  # closed with our request unread
                chunk = b""
            if not chunk:
                break
            data += chunk
    if not data:
        raise HelperError(
            f"the privileged helper closed the connection unanswered ({path}): this process "
            "is not the account it serves there, or it is busy with too many requests"
        )
    try:
        reply = json.loads(data)
    except ValueError:
        raise HelperError("the privileged helper's answer was cut short") from None
    if "error" in reply:
        raise HelperError(str(reply["error"]))
    return reply
