"""Test helpers: run a real `hubforge up` (hub, proxy, service) on loopback and talk to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import requests

from hubforge.processes import free_port
from tests import cli_record

HUBFORGE = [sys.executable, "-m", "hubforge.cli"]
# An awkward prefix: '%40' (which clients turn into '@') and a space.
AWKWARD_BASE_URL = "/hub%40forge space/"


def xdg_state(data_dir: Path) -> Path:
    """Where the test workbench's `hubforge up` remembers its data folder."""
    return data_dir / ".xdg-state"


def hubforge(*args: str, data_dir: Path, input: str | None = None, timeout: float = 120):
    """Run the hubforge CLI; returns the CompletedProcess."""
    passable(data_dir)
    if data_dir not in STARTED:  # it may make the workbench's accounts (removed at the end)
        STARTED.append(data_dir)
    done = subprocess.run(
        [*HUBFORGE, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
    )
    return cli_record.recorded(done)


@dataclass
class RunningWorkbench:
    data_dir: Path
    url: str
    proc: subprocess.Popen
    log: Path
    admin_password: str
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        """The workbench's state folder (its per-user OS accounts are named after it)."""
        return self.data_dir / "state"

    @property
    def service_dir(self) -> Path:
        """The hubforge service's own files (see Workbench.service_dir)."""
        return service_dir(self.data_dir)

    def hub_log(self) -> str:
        """What `up` printed and the hub's whole log (state/jupyterhub.log) together."""
        hub = self.data_dir / "state" / "jupyterhub.log"
        return self.log.read_text() + (hub.read_text(errors="replace") if hub.exists() else "")

    # -- auth ---------------------------------------------------------------------
    def login(self, user: str, password: str) -> requests.Session:
        """A browser-like session logged in through the hub's form."""
        s = requests.Session()
        s.get(self.url + "hub/login", timeout=30)
        r = s.post(
            self.url + "hub/login",
            data={"username": user, "password": password, "_xsrf": s.cookies.get("_xsrf")},
            allow_redirects=False,
            timeout=30,
        )
        if r.status_code != 302:
            raise AssertionError(f"login of {user} failed: {r.status_code} {r.text[:300]}")
        return s

    def login_token(self, user: str, password: str) -> str:
        """Log in through the form, then make an API token as that user would."""
        s = self.login(user, password)
        r = s.post(
            self.url + f"hub/api/users/{user}/tokens",
            json={"note": "tests"},
            headers={"X-XSRFToken": s.cookies.get("_xsrf")},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()["token"]

    def admin_token(self) -> str:
        if "admin" not in self._tokens:
            self._tokens["admin"] = self.login_token("admin", self.admin_password)
        return self._tokens["admin"]

    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"token {token}"
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def create_user(self, name: str) -> str:
        """Create ``name`` through the hub's REST API; returns a token of that user."""
        admin = self.admin_token()
        r = self.api("POST", f"hub/api/users/{name}", admin)
        assert r.status_code in (201, 409), r.text
        r = self.api("POST", f"hub/api/users/{name}/tokens", admin, json={"note": "tests"})
        r.raise_for_status()
        return r.json()["token"]

    def deploy_sum_model(self, token: str, owner: str, bias: float = 1.0) -> Path:
        """y = sum(x) + ``bias`` exported into ``owner``'s exports and deployed as endpoint
        'clf' through the service's REST API (201, or the test fails); returns the export."""
        from tests.models import keras_model

        export = keras_model(self.data_dir / "hdfs" / "users" / owner / "exports", 1, bias=bias)
        body = {"name": "clf", "model_dir": str(export)}
        r = self.api("POST", "services/hubforge/api/endpoints", token, json=body)
        assert r.status_code == 201, r.text
        return export

    # -- servers --------------------------------------------------------------------
    def spawn(self, name: str, token: str, profile: str = "cpu") -> requests.Response:
        """Start ``name``'s server and wait until it is ready (or the spawn fails)."""
        r = self.api("POST", f"hub/api/users/{name}/server", token, json={"profile": profile})
        if r.status_code not in (201, 202):
            return r
        self.wait_ready(name, token)
        return r

    def wait_ready(self, name: str, token: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"hub/api/users/{name}", token).json()
            server = model["servers"].get("")
            if server and server["ready"]:
                return
            if not server and not model.get("pending"):
                raise AssertionError(f"server of {name} stopped while starting: {model}")
            time.sleep(0.25)  # (each look is a hub request: CPU the spawn needs)
        raise AssertionError(f"server of {name} not ready after {timeout}s")

    def stop_server(self, name: str, token: str) -> None:
        r = self.api("DELETE", f"hub/api/users/{name}/server", token)
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            model = self.api("GET", f"hub/api/users/{name}", token).json()
            if not model["servers"] and not model.get("pending"):
                return
            time.sleep(0.25)
        raise AssertionError(f"server of {name} did not stop")

    def wait_label_studio(self, deadline: float) -> None:
        """Until Label Studio answers its health check through the hub (200, not 503)."""
        status = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hubforge up exited:\n{self.hub_log()[-20000:]}")
            try:
                status = requests.get(self.url + "services/label-studio/health", timeout=10)
                if status.status_code == 200:
                    return
            except requests.RequestException as e:
                status = e
            time.sleep(0.5)
        raise RuntimeError(f"Label Studio did not start ({status}):\n{self.hub_log()[-20000:]}")

    def wait_gpus_free(self, timeout: float = 90) -> None:
        """Until every GPU of the inventory is free (an earlier test's job or server gives
        its GPUs back asynchronously: the service reconciles every 2 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            gpus = self.api("GET", "services/hubforge/api/status", self.admin_token()).json()
            if gpus["gpus"]["free"] == gpus["gpus"]["total"]:
                return
            time.sleep(0.2)
        raise AssertionError(f"GPUs still held after {timeout}s: {gpus['gpus']}")

    def ensure_stopped(self, name: str) -> None:
        """Stop ``name``'s server if it runs or is starting (cleanup in ``finally``)."""
        admin = self.admin_token()
        self.api("DELETE", f"hub/api/users/{name}/server", admin)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            model = self.api("GET", f"hub/api/users/{name}", admin).json()
            if not model.get("servers") and not model.get("pending"):
                return
            time.sleep(0.2)
        raise AssertionError(f"server of {name} did not stop")

    def down(self) -> subprocess.CompletedProcess:
        result = hubforge("down", data_dir=self.data_dir)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
        return result


def isolated() -> bool:
    """Whether test workbenches run with per-user OS accounts: $HUBFORGE_ISOLATION, else
    what the Workbench default picks here (root with useradd and a Python every account
    reaches: the suite run by root in CI)."""
    mode = os.environ.get("HUBFORGE_ISOLATION")
    if mode:
        return mode == "accounts"
    from hubforge import accounts

    return accounts.refusal(tempfile.gettempdir()) is None


def service_dir(data_dir: Path) -> Path:
    """Where a workbench on ``data_dir`` keeps the service's files (password hashes, endpoint
    records...): <data>/service with per-user accounts, <data>/state otherwise."""
    return Path(data_dir) / ("service" if isolated() else "state")


STARTED: list[Path] = []  # every data folder a test started a workbench on


def remove_accounts(data_dirs: list[Path]) -> int:
    """Delete the OS accounts and groups the workbenches on ``data_dirs`` made (each
    workbench's own: hf<tag>-<user>, hf<tag>_<role>, hf<tag>_users), so runs of the suite on
    one machine do not use up its system uids and gids. Returns how many went."""
    import grp
    import pwd

    from hubforge.accounts import workbench_tag

    tags = {workbench_tag(d / "state") for d in data_dirs}
    gone = 0
    for entry in pwd.getpwall():
        if entry.pw_name[:8] in tags:
            done = subprocess.run(["userdel", entry.pw_name], capture_output=True)
            gone += done.returncode == 0
    for group in grp.getgrall():
        if group.gr_name[:8] in tags:
            subprocess.run(["groupdel", group.gr_name], capture_output=True)
    return gone


def passable(data_dir: Path) -> None:
    """With per-user accounts (see isolated()): let every account pass through the folders
    above ``data_dir`` that pytest made 0700 (x only: they cannot list them). The paths stay
    the same."""
    if not isolated():
        return
    for folder in [data_dir, *data_dir.parents]:
        if str(folder).startswith(tempfile.gettempdir() + "/") and folder.exists():
            folder.chmod(folder.stat().st_mode | 0o011)


def start_workbench(
    data_dir: Path,
    base_url: str = AWKWARD_BASE_URL,
    config: str = "",
    timeout: float = 300,
    label_studio: bool | None = None,
    xdg: Path | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> RunningWorkbench:
    """`hubforge up` as a subprocess; returns once the hub answers through the proxy and,
    with ``label_studio``, once Label Studio answers. ``xdg``: where `up` notes that it runs
    (default: a folder of this workbench's own); ``env``: the environment `up` gets (default:
    this process's, as it is now)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    passable(data_dir)
    STARTED.append(data_dir)
    config_file = data_dir / "hubforge_config.py"
    config_file.write_text(config)
    port = port or free_port()
    log = data_dir / "up.log"
    with log.open("wb") as out:
        log.chmod(0o600)  # the hub's log: for the tests' eyes only, as a terminal would be
        proc = cli_record.popen(
            [
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--base-url",
                base_url,
                "--config",
                str(config_file),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            # `up` remembers its data folder there (not in the real home)
            env=dict(
                os.environ if env is None else env,
                PYTHONUNBUFFERED="1",
                XDG_STATE_HOME=str(xdg or xdg_state(data_dir)),
            ),
        )
    from hubforge.workbench import normalize_base_url

    url = f"http://127.0.0.1:{port}{normalize_base_url(base_url)}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hubforge up exited {proc.returncode}:\n{log.read_text()}")
        if "Hubforge is running at" in log.read_text():
            break
        time.sleep(0.1)
    else:
        proc.kill()
        proc.wait()  # (left unwaited, its ResourceWarning failed the next test: CI25)
        raise RuntimeError(f"hubforge up did not start:\n{log.read_text()}")
    # where this workbench keeps the service's files (its config may set the isolation)
    kept = [d / "initial-admin.txt" for d in (data_dir / "service", data_dir / "state")]
    creds = next(p for p in kept if p.exists()).read_text()
    password = creds.split("password:")[1].split()[0]
    wb = RunningWorkbench(data_dir, url, proc, log, password)
    if label_studio is None:  # tests that turn it off say so in their config
        label_studio = 'label_studio_python = ""' not in config
    if label_studio:
        wb.wait_label_studio(deadline=time.monotonic() + 600)
    return wb


def quote_path(path: str) -> str:
    return quote(path, safe="/@")
