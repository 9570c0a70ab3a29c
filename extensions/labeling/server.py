"""Label Studio next to the hub: the JupyterHub-managed service that runs it under
``/services/label-studio/`` and the per-user accounts the hubforge service hands out.

Label Studio runs in its own virtual environment (``ls_main.py`` is its entry point); its data
lives in ``<data dir>/label-studio``. Each hub user gets a Label Studio user in an organisation
of their own, so users see only their projects; tokens are kept 0600 in the state folder.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from ..atomic import read_json, write_json

SERVICE = "label-studio"
LAUNCHER = Path(__file__).with_name("ls_main.py")


def prefix(hub_base_url: str) -> str:
    """Where the hub's proxy serves Label Studio (no trailing slash)."""
    return f"{hub_base_url}services/{SERVICE}"


class LabelingUnavailable(RuntimeError):
    """Label Studio is not installed or not running."""


def admin_credentials(state_dir: Path) -> dict[str, str]:
    """The Label Studio admin (used only by Hubforge), generated once."""
    path = state_dir / "label-studio-admin.json"
    creds = read_json(path)
    if not creds:
        creds = {
            "email": "hubforge-admin@hubforge.local",
            "password": secrets.token_urlsafe(18),
            "token": secrets.token_hex(20),
        }
        write_json(path, creds, mode=0o600)
    return creds


def environment(workbench: Any, prefix: str, marker: dict[str, str]) -> dict[str, str]:
    """What Label Studio reads. Not inherited: bare USERNAME/PASSWORD/PORT, which it would
    take for its own settings."""
    admin = admin_credentials(workbench.state_dir)
    data = workbench.root / "label-studio"
    data.mkdir(parents=True, exist_ok=True)
    return {
        **marker,
        "PATH": os.environ.get("PATH", ""),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        # its pages link to assets and its API through this public URL (hub address + path)
        "LABEL_STUDIO_HOST": workbench.public_origin + prefix.rstrip("/"),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(workbench.shared_data),
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",  # no error reports to the internet
        "FRONTEND_SENTRY_DSN": "",
        "HUBFORGE_LS_ADMIN_EMAIL": admin["email"],
        "HUBFORGE_LS_ADMIN_PASSWORD": admin["password"],
        "HUBFORGE_LS_ADMIN_TOKEN": admin["token"],
    }


def hub_service(workbench: Any, port: int, marker: dict[str, str]) -> dict[str, Any]:
    """The JupyterHub service entry: started and stopped with the hub, routed by its proxy."""
    path = prefix(workbench.base_url)
    cmd = [workbench.label_studio_python, str(LAUNCHER), "serve", "--port", str(port)]
    return {
        "name": SERVICE,
        "url": f"http://127.0.0.1:{port}",
        "command": cmd + ["--prefix", path],
        "environment": environment(workbench, path, marker),
        "display": True,
        "info": {"description": "Label data sets (Hubforge)"},
    }


def sign_login(secret: str, email: str, next_path: str, ttl: float = 60) -> str:
    """Query string of a short-lived link that logs ``email`` into Label Studio's UI
    (checked by ls_main.py with the same secret)."""
    expires = str(int(time.time() + ttl))
    message = f"{email}|{expires}|{next_path}".encode()
    sig = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return urlencode({"email": email, "exp": expires, "next": next_path, "sig": sig})


def _email(user: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", user.lower()).strip("-.") + "@hubforge.local"


class Accounts:
    """Hub user -> Label Studio account (created on first use, remembered)."""

    def __init__(self, state_dir: Path, api_url: str, admin_token: str):
        self.api_url = api_url
        self.admin_token = admin_token
        self.path = state_dir / "label-studio-users.json"
        self._lock = threading.Lock()

    def login_link(self, user: str, prefix: str, next_path: str) -> str:
        """A one-minute link into Label Studio's UI as ``user`` (through the hub)."""
        creds = self.credentials(user)
        if not next_path.startswith("/") or next_path.startswith("//"):
            next_path = "/projects/"
        return f"{prefix}/hubforge/login?" + sign_login(self.admin_token, creds["email"], next_path)

    def credentials(self, user: str) -> dict[str, Any]:
        with self._lock:
            known = read_json(self.path, {}) or {}
            if user not in known:
                known[user] = self._provision(_email(user))
                write_json(self.path, known, mode=0o600)
            return {**known[user], "api_url": self.api_url}

    def wait_ready(self, timeout: float = 180) -> None:
        """Label Studio migrates its database on first start (~35 s): wait for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.api_url + "/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise LabelingUnavailable(
            f"Label Studio did not answer within {timeout:.0f} s; see the hub's log"
        )

    def _provision(self, email: str) -> dict[str, Any]:
        self.wait_ready()
        r = requests.post(
            self.api_url + "/hubforge/provision",
            json={"email": email},
            headers={"Authorization": f"Hubforge {self.admin_token}"},
            timeout=60,
        )
        if r.status_code != 200:
            raise LabelingUnavailable(
                f"Could not create the Label Studio user: {r.status_code} {r.text[:300]}"
            )
        return r.json()
