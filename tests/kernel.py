"""Run code in a real kernel of a user's server through the Jupyter websocket protocol."""

from __future__ import annotations

import json
import time
import uuid

import websocket


def execute(
    workbench, user: str, token: str, code: str, timeout: float = 120, shutdown: bool = True
) -> list[dict]:
    """Start a kernel, run ``code``, return the iopub outputs (stream/display/execute_result).

    With ``shutdown=False`` the kernel keeps running (what it started stays up); the caller
    deletes ``/api/kernels/<outputs.kernel_id>``."""
    r = workbench.api("POST", f"user/{user}/api/kernels", token, json={"name": "python3"})
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    url = workbench.url.replace("http://", "ws://") + f"user/{user}/api/kernels/{kernel}/channels"
    ws = websocket.create_connection(url, header=[f"Authorization: token {token}"], timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": user,
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                    },
                }
            )
        )
        outputs, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind in ("stream", "display_data", "update_display_data", "execute_result", "error"):
                outputs.append({"type": kind, **msg["content"]})
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                return Outputs(outputs, kernel)
        raise AssertionError(f"kernel did not finish: {outputs}")
    finally:
        ws.close()
        if shutdown:
            workbench.api("DELETE", f"user/{user}/api/kernels/{kernel}", token)


class Outputs(list):
    def __init__(self, outputs: list[dict], kernel_id: str):
        super().__init__(outputs)
        self.kernel_id = kernel_id
