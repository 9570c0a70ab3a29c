"""Label Studio next to the hub: the JupyterHub-managed service that runs it under
``/services/label-studio/`` and the per-user accounts the hubforge service hands out.

Label Studio runs in its own virtual environment (``ls_main.py`` is its entry point); its data
lives in ``<data dir>/label-studio``. Each hub user gets a Label Studio user in an organisation
of their own, so users see only their projects; tokens are kept 0600 in the state folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Iterator
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


STARTING = "Label Studio is finishing its start: try again in a few seconds"


def admin_credentials(state_dir: Path) -> dict[str, str]:
    """The Label Studio admin (used only by Hubforge), generated once, and the service key:
    the secret that signs sign-in links and authorises account provisioning. Unlike the
    admin's API token it is never stored in Label Studio's database."""
    path = state_dir / "label-studio-admin.json"
    # `up`, the privileged helper and the hub each ask for them as a fresh workbench starts:
    # one at a time, or two would each make their own and Label Studio and the service would
    # hold different keys (CI saw every provisioning refused "only the hubforge service")
    with _locked(state_dir / "label-studio-admin.lock"):
        creds = read_json(path) or {
            "email": "hubforge-admin@hubforge.local",
            "password": secrets.token_urlsafe(18),
            "token": secrets.token_hex(20),
        }
        if "service_key" not in creds:
            creds["service_key"] = secrets.token_urlsafe(32)
            write_json(path, creds, mode=0o600)
        return creds


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """An exclusive lock between processes (flock on ``lock``, made 0600 if missing)."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
        # Label Studio asks git for its version in its package folder, which finds the
        # repository around its venv (Hubforge's clone): its version page then told
        # Hubforge's commit and message. No repository for it.
        "GIT_DIR": os.devnull,
        "HOME": str(data),
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",  # no call to the package index at every start
        "SENTRY_DSN": "",  # no error reports to the internet
        "FRONTEND_SENTRY_DSN": "",
        "HUBFORGE_LS_ADMIN_EMAIL": admin["email"],
        "HUBFORGE_LS_ADMIN_PASSWORD": admin["password"],
        "HUBFORGE_LS_ADMIN_TOKEN": admin["token"],
        "HUBFORGE_LS_SERVICE_KEY": admin["service_key"],
        **(
            {"HUBFORGE_HELPER_SOCKET": str(helper_socket(workbench))}
            if getattr(workbench, "isolation", "none") == "accounts"
            else {}
        ),
    }


def hub_service(
    workbench: Any, port: int, marker: dict[str, str], environment_too: bool = True
) -> dict[str, Any]:
    """The JupyterHub service entry: started and stopped with the hub, routed by its proxy.
    Without ``environment_too`` (the hub's own account, which may not read Label Studio's
    secrets: the privileged helper starts it) the entry has no environment."""
    path = prefix(workbench.base_url)
    cmd = [workbench.label_studio_python, str(LAUNCHER), "serve", "--port", str(port)]
    return {
        "name": SERVICE,
        "url": f"http://127.0.0.1:{port}",
        "command": cmd + ["--prefix", path],
        "environment": environment(workbench, path, marker) if environment_too else {},
        # its own data folder, not the folder `hubforge up` ran in: Label Studio's version
        # page reports the git commit and message of its working folder
        "cwd": str(workbench.root / "label-studio"),
        **_unprivileged(workbench),
        "display": True,
        "info": {"description": "Label data sets (Hubforge)"},
        # ls_main.py binds its port within a second and answers 503 "starting" while it
        # migrates; this only covers a slow interpreter start on a busy machine
        "timeout": 120,
    }


def helper_socket(workbench: Any) -> Path:
    """Where the workbench's privileged helper answers Label Studio (hubforge.privileged)."""
    return workbench.root / "run" / "helper.sock"


def _unprivileged(workbench: Any) -> dict[str, Any]:
    """With per-user accounts Label Studio runs as its own system account (``hf<wb>_ls``,
    made by `hubforge up`), never root; users' files reach it through the helper."""
    if getattr(workbench, "isolation", "none") != "accounts":
        return {}
    from ..accounts import service_account_name

    return {"user": service_account_name("ls", workbench.state_dir)}


BIND_COOKIE = "hubforge-ls-bind"  # the browser's half of a sign-in link (see ls_main.login)


def sign_login(secret: str, email: str, next_path: str, ttl: float = 60, bind: str = "") -> str:
    """Query string of a short-lived link that logs ``email`` into Label Studio's UI
    (checked by ls_main.py with the same secret). ``bind``: SHA-256 (hex) of the nonce in the
    asking browser's BIND_COOKIE; the link works only in that browser."""
    expires = str(int(time.time() + ttl))
    message = f"{email}|{expires}|{next_path}|{bind}".encode()
    sig = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return urlencode({"email": email, "exp": expires, "next": next_path, "bind": bind, "sig": sig})


def _local_part(user: str) -> str:
    """An injective encoding of a hub user name for an e-mail local part: letters and digits
    stay, every other character (dots and dashes too) becomes "-" and its code point in hex,
    so "alice-", "Alice" and "alice" never share an account."""
    return "".join(
        c if c.isascii() and (c.islower() or c.isdigit()) else f"-{ord(c):x}-" for c in user
    )


def _email(user: str) -> str:
    return _local_part(user) + "@hubforge.local"


def _teammate_key(member: str, owner: str) -> str:
    """The account-map key of ``member``'s account for ``owner``'s projects; no hub user
    name can be it (names hold no newline)."""
    return f"teammate\n{member}\n{owner}"


class NotShared(PermissionError):
    """A user asked for another user's projects without being a teammate."""


def _teammate_email(member: str, owner: str) -> str:
    """The account ``member`` labels ``owner``'s projects with (in ``owner``'s organisation;
    annotations show it as member+owner)."""
    return f"{_local_part(member)}+{_local_part(owner)}@hubforge.local"


class Accounts:
    """Hub user -> Label Studio account (created on first use, remembered); owners share
    their projects with teammates, who then label them with an account of their own inside the
    owner's organisation (Label Studio hands the two of them different items)."""

    def __init__(self, state_dir: Path, api_url: str, service_key: str):
        self.api_url = api_url
        self.service_key = service_key
        self.path = state_dir / "label-studio-users.json"
        self.shares_path = state_dir / "label-studio-shares.json"
        self._lock = threading.Lock()

    def login_link(
        self, user: str, prefix: str, next_path: str, owner: str | None = None, bind: str = ""
    ) -> str:
        """A one-minute link into Label Studio's UI as ``user`` (through the hub), working
        only in the browser whose bind cookie hashes to ``bind``; with ``owner``, as their
        account for ``owner``'s shared projects."""
        creds = self.credentials(user, owner)
        if not next_path.startswith("/") or next_path.startswith("//"):
            next_path = "/projects/"
        query = sign_login(self.service_key, creds["email"], next_path, bind=bind)
        return f"{prefix}/hubforge/login?{query}"

    def credentials(self, user: str, owner: str | None = None) -> dict[str, Any]:
        """``user``'s account, or with ``owner`` the one for labeling ``owner``'s projects
        (NotShared unless ``owner`` shared them with ``user``)."""
        if owner in (None, user):
            return self._account(user, _email(user))
        if user not in self.shares()["by_owner"].get(owner, []):
            raise NotShared(
                f"{owner} has not shared their labeling projects with you: ask them to run "
                f"hubforge.labeling.share({user!r})"
            )
        self._account(owner, _email(owner))  # the organisation must exist first
        return self._account(
            _teammate_key(user, owner), _teammate_email(user, owner), _email(owner)
        )

    def existing(self, user: str) -> dict[str, Any] | None:
        """``user``'s own account if one was made already (None: never labeled here)."""
        known = (read_json(self.path, {}) or {}).get(user)
        if known is None or known.get("email") != _email(user):
            return None
        return {**known, "api_url": self.api_url}

    def _account(self, key: str, email: str, organization_of: str | None = None) -> dict:
        with self._lock:
            known = read_json(self.path, {}) or {}
            # an entry made under another e-mail (the old, lossy encoding) is not this user's
            if key not in known or known[key].get("email") != email or known[key].get("revoked"):
                # an account this service made before (revoked when sharing ended) is its
                # own to take back, even one made before Label Studio recorded who made it
                vouch = key in known and known[key].get("email") == email
                known[key] = self._provision(email, organization_of, vouch)
                write_json(self.path, known, mode=0o600)
            return {**known[key], "api_url": self.api_url}

    def shares(self) -> dict[str, dict[str, list[str]]]:
        return read_json(self.shares_path, None) or {"by_owner": {}}

    def share(self, owner: str, member: str) -> list[str]:
        """Let ``member`` label ``owner``'s projects; returns everyone ``owner`` shares with."""
        if member == owner:
            raise ValueError("You always have your own projects: name a teammate")
        with self._lock:
            shares = self.shares()
            members = sorted(set(shares["by_owner"].get(owner, [])) | {member})
            shares["by_owner"][owner] = members
            write_json(self.shares_path, shares, mode=0o600)
        return members

    def unshare(self, owner: str, member: str) -> list[str]:
        """Stop sharing: ``member``'s account in ``owner``'s organisation loses its token."""
        with self._lock:
            shares = self.shares()
            members = [m for m in shares["by_owner"].get(owner, []) if m != member]
            shares["by_owner"][owner] = members
            write_json(self.shares_path, shares, mode=0o600)
            known = read_json(self.path, {}) or {}
            key = _teammate_key(member, owner)
            if key in known and not known[key].get("revoked"):
                self._post({"email": _teammate_email(member, owner), "revoke": True})
                # kept, marked: this service made the account and may take it back
                known[key] = {"email": known[key].get("email"), "revoked": True}
                write_json(self.path, known, mode=0o600)
        return members

    def wait_ready(self, timeout: float = 15) -> None:
        """Label Studio answers its API within seconds of a start (its database comes
        migrated): wait that long, then say it is starting (callers try again), well before
        a client's own timeout would call the service unreachable."""
        deadline = time.monotonic() + timeout
        said = STARTING
        while time.monotonic() < deadline:
            try:
                r = requests.get(self.api_url + "/health", timeout=5)
                if r.status_code == 200:
                    return
                if r.status_code == 503 and r.json().get("status") == "damaged":
                    said = r.json()["error"]
                    break
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        raise LabelingUnavailable(said)

    def _provision(
        self, email: str, organization_of: str | None = None, vouch: bool = False
    ) -> dict[str, Any]:
        """The account ``email`` from Label Studio (made once); ``vouch``: this service
        made it before (its own records say so), so Label Studio takes it back as Hubforge's
        even if it was made before it recorded that."""
        self.wait_ready()
        body: dict[str, Any] = {"email": email}
        if organization_of:
            body["organization_of"] = organization_of
        if vouch:
            body["made_by_hubforge"] = True
        return self._post(body)

    def add_storages(
        self,
        user: str,
        owner: str | None,
        project: int,
        folders: list[str],
        roots: list[Path],
    ) -> list[str]:
        """Let Label Studio serve ``folders`` to ``project``: only a project the caller's
        account reaches, only folders inside ``roots`` (the owner's area, datasets/) once
        every link is resolved."""
        creds = self.credentials(user, owner)
        r = requests.get(
            f"{self.api_url}/api/projects/{project}/",
            headers={"Authorization": f"Token {creds['token']}"},
            timeout=30,
        )
        if r.status_code != 200:
            raise NotShared(f"Project {project} is not one of the projects you label")
        real_roots = [os.path.realpath(r) for r in roots]
        added = []
        for folder in folders:
            real = os.path.realpath(folder)
            if not any(real == r or real.startswith(r + os.sep) for r in real_roots):
                raise NotShared(
                    f"{folder} is outside {', '.join(map(str, roots))}: Label Studio serves "
                    "only files of the project owner's area and datasets/"
                )
            added.append(self._post({"project": project, "path": real}, "storage")["path"])
        return added

    def _post(self, body: dict[str, Any], route: str = "provision") -> dict[str, Any]:
        r = requests.post(
            self.api_url + f"/hubforge/{route}",
            json=body,
            headers={"Authorization": f"Hubforge {self.service_key}"},
            timeout=60,
        )
        if r.status_code != 200:
            what = "user" if route == "provision" else "storage"
            raise LabelingUnavailable(
                f"Could not create the Label Studio {what}: {r.status_code} {r.text[:300]}"
            )
        return r.json()
