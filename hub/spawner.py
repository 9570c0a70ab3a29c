"""Local spawner: JupyterLab per user with a profile, a home folder, the data mount and GPUs."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Instance, Unicode, default

from hubforge import accounts, examples
from hubforge.accounts import Account
from hubforge.confined import UnsafeEntry, make_folders_beneath, make_link_beneath, open_log
from hubforge.processes import MARKER as WORKBENCH_MARKER
from hubforge.profiles import ProfileError, find_profile
from hubforge.service.culler import idle_note, idle_timeout
from hubforge.tensorboard.api import stop_processes
from hubforge.tensorboard.store import InstanceStore
from hubforge.workbench import Workbench, load_workbench


class HubforgeLocalSpawner(SimpleLocalProcessSpawner):
    """Starts JupyterLab as a local process and asks the hubforge service for GPUs."""

    workbench = Instance(Workbench)

    @default("workbench")
    def _default_workbench(self) -> Workbench:
        return load_workbench()

    service_url = Unicode(
        config=True,
        help="Internal URL of the hubforge service API (set by the hub configuration).",
    )
    service_token = Unicode(
        config=True, help="Token the hub uses to call the hubforge service (set by the hub)."
    )

    @default("home_dir_template")
    def _default_home_template(self) -> str:
        return str(self.workbench.homes_dir / "{username}")

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return [sys.executable, "-m", "jupyterhub.singleuser"]

    @default("default_url")
    def _default_default_url(self) -> str:
        return "/lab"

    @default("options_form")
    def _default_options_form(self) -> Any:
        return self._render_form

    # Profiles ----------------------------------------------------------------------
    def usable_profiles(self) -> list[dict[str, Any]]:
        """Profiles the inventory can ever satisfy."""
        total = len(self.workbench.gpus)
        return [p for p in self.workbench.profiles if p["gpus"] <= total]

    async def _render_form(self, spawner: Any = None) -> str:
        free = None
        if self.workbench.gpus:
            try:
                free = (await self._service("GET", "status"))["gpus"]["free"]
            except web.HTTPError:
                self.log.warning("hubforge service unavailable: GPU availability unknown")
        cards = []
        for p in self.usable_profiles():
            busy = free is not None and p["gpus"] > free
            attrs = (" checked" if p.get("default") else "") + (" disabled" if busy else "")
            wb = self.workbench
            idle = idle_note(idle_timeout(p, wb.idle_timeout, wb.gpu_idle_timeout))
            facts = [
                f"{p['cpu']:g} CPU" if p.get("cpu") else "CPU: shared",
                f"{p['memory']} memory" if p.get("memory") else "memory: shared",
                f"{p['gpus']} GPU{'s' if p['gpus'] != 1 else ''}"
                + (f" ({p['gpu_type']})" if p.get("gpu_type") else ""),
            ]
            if busy:
                facts.append(f"only {free} GPU(s) free now")
            items = "".join(f"<li>{html.escape(f)}</li>" for f in facts)
            cards.append(
                f'<label class="hubforge-profile card{" text-muted" if busy else ""}">'
                f'<span class="card-body">'
                f'<input type="radio" name="profile" value="{html.escape(p["slug"])}"{attrs}> '
                f"<strong>{html.escape(p['display_name'])}</strong>"
                f'<span class="d-block text-muted">{html.escape(p.get("description", ""))}</span>'
                f'<ul class="hubforge-facts">{items}</ul>'
                f'<span class="hubforge-idle text-muted">{idle}</span>'
                "</span></label>"
            )
        header = ""
        if free is not None:
            total = len(self.workbench.gpus)
            header = f'<p id="hubforge-gpus-free">GPUs free now: {free} of {total}</p>'
        style = (
            "<style>#hubforge-profiles .hubforge-cards{display:grid;gap:12px;"
            "grid-template-columns:repeat(auto-fill,minmax(200px,1fr));margin:12px 0}"
            "#hubforge-profiles .hubforge-profile{cursor:pointer;margin:0}"
            "#hubforge-profiles .hubforge-profile:has(input:checked){border-color:#1565c0;"
            "box-shadow:0 0 0 2px #1565c0}"
            "#hubforge-profiles .hubforge-facts{padding-left:1.2em;margin:6px 0}</style>"
        )
        return (
            f'<div id="hubforge-profiles">{style}{header}'
            f'<div class="hubforge-cards">{"".join(cards)}</div></div>'
        )

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        return {"profile": formdata.get("profile", [""])[0]}

    def selected_profile(self) -> dict[str, Any]:
        slug = (self.user_options or {}).get("profile")
        profiles = self.usable_profiles()
        if not slug:
            return (
                next(p for p in profiles if p.get("default"))
                if any(p.get("default") for p in profiles)
                else profiles[0]
            )
        try:
            return find_profile(profiles, slug)
        except ProfileError as e:
            raise web.HTTPError(400, str(e)) from None

    # GPUs through the hubforge service ---------------------------------------------------
    @property
    def gpu_owner(self) -> str:
        return f"{self.user.name}/{self.name}"

    async def _service(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        request = HTTPRequest(
            self.service_url.rstrip("/") + "/" + path,
            method=method,
            headers={"Authorization": f"token {self.service_token}"},
            body=json.dumps(body) if body is not None else None,
            request_timeout=20,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            message = e.message
            if e.response is not None and e.response.body:
                message = json.loads(e.response.body).get("message", message)
            raise web.HTTPError(e.code, message) from None
        return json.loads(response.body)

    # Lifecycle ------------------------------------------------------------------------
    def prepare_folders(self, account: Account | None = None) -> None:
        """The home's and the area's folders, the examples and ~/hdfs. With per-user accounts
        (``account``) the home and the area are already the account's: everything in them is
        made relative to fds opened O_NOFOLLOW (never through a link the user put there) and
        given to the account as it is made; nothing of the user's is walked or re-owned."""
        home = Path(self.home_dir)
        home.mkdir(parents=True, exist_ok=True)
        owner = (account.uid, account.gid) if account is not None else None
        # the example series (label -> train -> watch -> deploy -> pre-label), once per user
        given = self.workbench.state_dir / "examples-copied"
        given.mkdir(mode=0o700, exist_ok=True)
        examples.install(home, given / self.user.name, owner)
        area = self.workbench.user_area(self.user.name)
        if account is None:
            area.mkdir(parents=True, exist_ok=True)
        for sub in ("jobs", "models", "labeling"):
            with contextlib.suppress(UnsafeEntry, NotADirectoryError):  # theirs to fix
                make_folders_beneath(area, sub, owner, 0o755)
        link = home / "hdfs"
        if account is not None:
            self._own_view_of_the_data(home, area, owner)
        elif not link.is_symlink() and not link.exists():
            link.symlink_to(self.workbench.shared_data, target_is_directory=True)

    def _own_view_of_the_data(self, home: Path, area: Path, owner: tuple[int, int]) -> None:
        """~/hdfs with per-user accounts: the user's own area and datasets/, nothing else
        (same paths as the whole mount: ~/hdfs/users/<me>/..., ~/hdfs/datasets/...). Made
        relative to O_NOFOLLOW fds of the home: a link the user put on the way is refused."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISLNK(os.lstat(home / "hdfs").st_mode):  # the whole area, from before
                os.unlink(home / "hdfs")  # homes/<name> is root's to trust: not a link
        try:
            make_folders_beneath(home, "hdfs/users", owner, 0o755)
            links = {
                "hdfs/datasets": self.workbench.shared_data / "datasets",
                f"hdfs/users/{self.user.name}": area,
            }
            for relative, target in links.items():
                make_link_beneath(home, relative, target, owner)
        except (UnsafeEntry, NotADirectoryError) as e:
            self.log.warning("~/hdfs of %s left as it is: %s", self.user.name, e)

    def prepare_account(self) -> Account | None:
        """With Workbench.isolation='accounts': the user's OS account (made on first spawn),
        owning the home and the user area (0700); the server then starts as it."""
        if self.workbench.isolation != "accounts":
            return None
        wb = self.workbench
        try:
            account = accounts.ensure_account(self.user.name, Path(self.home_dir), wb.state_dir)
        except accounts.AccountError as e:
            raise web.HTTPError(
                500, f"Could not make the OS account of {self.user.name}: {e}"
            ) from None
        accounts.prepare_shared(wb.root, wb.shared_data, wb.homes_dir, wb.state_dir)
        try:
            accounts.own_folder(Path(self.home_dir), account)
            accounts.own_folder(wb.user_area(self.user.name), account)
        except accounts.AccountError as e:
            raise web.HTTPError(
                500, f"Could not prepare the folders of {self.user.name}: {e}"
            ) from None
        for needed in (Path(sys.executable), Path(self.home_dir), wb.user_area(self.user.name)):
            closed = accounts.unreachable(needed, account)
            if closed is not None:
                raise web.HTTPError(
                    500,
                    f"The OS account {account.name} cannot reach {needed}: the folder {closed} "
                    "is closed to other accounts. Put the workbench's data folder and Python "
                    f"where every account can pass (e.g. /srv, /opt), or `chmod o+x {closed}`.",
                )
        return account

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env = super().user_env(env)
        account = getattr(self, "_account", None)
        if account is not None:
            env["USER"] = env["LOGNAME"] = account.name
        return env

    def get_env(self) -> dict[str, str]:
        from hubforge.channels import ENV as PRIVATE_CHANNELS

        env = super().get_env()
        profile = self.selected_profile()
        env.update(
            {
                "HUBFORGE_DATA": str(self.workbench.shared_data),
                "HUBFORGE_USER_AREA": str(self.workbench.user_area(self.user.name)),
                "HUBFORGE_PROFILE": profile["slug"],
                "HUBFORGE_PROFILE_GPUS": str(profile["gpus"]),
                "HUBFORGE_SERVICE_URL": self.service_url,
                # where other applications reach the hub (curl lines, links)
                "HUBFORGE_PUBLIC_ORIGIN": self.workbench.public_origin,
                "HUBFORGE_DIR": self.workbench.data_dir,
                WORKBENCH_MARKER: self.workbench.data_dir,
                # Terminals, `!` commands and %tensorboard use the workbench's environment.
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
                "TF_USE_LEGACY_KERAS": "1",
                # debugpy listens on a loopback TCP port every account could reach: with
                # per-user accounts kernels offer no debugger (hubforge.kernel_launcher)
                "HUBFORGE_KERNEL_DEBUGGER": (
                    "off" if self.workbench.isolation == "accounts" else "on"
                ),
                # ... and JupyterLab shows no debugger (its page config, see _lab_config_path)
                **self._lab_config_path(env),
                # %tensorboard renders its iframe through the server's proxy.
                "TENSORBOARD_PROXY_URL": env["JUPYTERHUB_SERVICE_PREFIX"] + "proxy/%PORT%/",
                "HUBFORGE_TENSORBOARD_IDLE_TIMEOUT": str(self.workbench.tensorboard_idle_timeout),
                "HUBFORGE_TENSORBOARD_MAX": str(self.workbench.tensorboard_max),
                "CUDA_VISIBLE_DEVICES": ",".join(getattr(self, "_devices", [])),
                # the server makes its private folder (0700) and points TMPDIR into it
                PRIVATE_CHANNELS: "1",
            }
        )
        return env

    def _lab_config_path(self, env: dict[str, str]) -> dict[str, str]:
        """With per-user accounts: JupyterLab's debugger extension off (the kernels offer
        none), through a Jupyter config folder of Hubforge's ahead of the others."""
        if self.workbench.isolation != "accounts":
            return {}
        ours = str(Path(__file__).parent / "jupyter-accounts")
        rest = env.get("JUPYTER_CONFIG_PATH") or os.environ.get("JUPYTER_CONFIG_PATH", "")
        return {"JUPYTER_CONFIG_PATH": os.pathsep.join(p for p in (ours, rest) if p)}

    def get_args(self) -> list[str]:
        args = super().get_args()
        # Kernels over Unix sockets in the server's private folder, not TCP on the loopback
        # every account shares (hubforge.channels)
        args += [
            "--KernelManager.transport=ipc",
            "--MultiKernelManager.kernel_manager_class=hubforge.channels.PrivateKernelManager",
        ]
        if os.geteuid() == 0 and self.workbench.isolation != "accounts":
            args.append("--allow-root")
        return args

    async def start(self) -> Any:
        profile = self.selected_profile()
        # Local mode cannot enforce these; they reach the server as CPU_LIMIT / MEM_LIMIT.
        if profile.get("cpu"):
            self.cpu_limit = float(profile["cpu"])
        if profile.get("memory"):
            self.mem_limit = profile["memory"]
        if profile["gpus"] or self.workbench.gpus:
            granted = await self._service(
                "POST", "gpus", {"owner": self.gpu_owner, "count": profile["gpus"]}
            )
            self._devices = granted["devices"]
        else:
            self._devices = []
        try:
            self._account = await asyncio.to_thread(self.prepare_account)
            await asyncio.to_thread(self.prepare_folders, self._account)
            if self._account is not None:
                log = self._own_log(self._account)
                self.popen_kwargs = {
                    **self._account.popen_kwargs(),
                    "cwd": self.home_dir,
                    "stdout": log,
                    "stderr": log,
                }
            try:
                ip, port = await super().start()
            finally:
                if self._account is not None:
                    os.close(self.popen_kwargs.pop("stdout"))
                    self.popen_kwargs.pop("stderr")
            await self._wait_listening(ip, port)
        except BaseException:
            await self._release_gpus()
            raise
        return ip, port

    SERVER_LOG = ".hubforge/server.log"
    SERVER_LOG_KEEP = 20 * 1024 * 1024

    def _own_log(self, account: Account) -> int:
        """With per-user accounts the server and its kernels write to the user's own log
        (~/.hubforge/server.log, the user's file), not into the hub's log: what a user's code
        prints never reaches the admin's terminal or another user's view. Opened relative to
        O_NOFOLLOW fds of the home; started afresh past SERVER_LOG_KEEP bytes."""
        home = Path(self.home_dir)
        try:
            fd = open_log(home / self.SERVER_LOG, (account.uid, account.gid), root=home)
        except (UnsafeEntry, NotADirectoryError) as e:
            raise web.HTTPError(500, f"Your server's log cannot be opened: {e}") from None
        if os.fstat(fd).st_size > self.SERVER_LOG_KEEP:
            os.ftruncate(fd, 0)
        return fd

    async def _wait_listening(self, ip: str, port: int) -> None:
        """Return as soon as the server accepts connections.

        The hub polls a new server with exponential backoff (0.2, 0.4, 0.8, 1.6 s...), so a
        server ready after 2.1 s is only noticed after 3 s. A 50 ms poll here removes that.
        """
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if await self.poll() is not None:
                return  # exited: the hub reports it
            try:
                _, writer = await asyncio.open_connection(ip or "127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return

    async def stop(self, now: bool = False) -> None:
        pid = self.pid
        await super().stop(now=now)
        if pid:
            # The server runs in its own session: take its kernels and helpers with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        # TensorBoards run detached from the server; they stop with it (and come back with it).
        await asyncio.to_thread(self._stop_tensorboards)
        await self._release_gpus()

    def _stop_tensorboards(self) -> None:
        """Stop the user's TensorBoards. Their records are in the user's home, the user's to
        write: with per-user accounts a process of the user's own account reads them and
        sends the signals, so a pid the user wrote there reaches only the user's processes."""
        records = Path(self.home_dir) / ".hubforge" / "tensorboards.json"
        if self.workbench.isolation != "accounts":
            stop_processes(InstanceStore(records))
            return
        try:
            account = accounts.existing_account(
                self.user.name, Path(self.home_dir), self.workbench.state_dir
            )
        except accounts.AccountError:
            return  # never spawned as an account: nothing of theirs runs
        code = (
            "import sys, pathlib\n"
            "from hubforge.tensorboard.api import stop_processes\n"
            "from hubforge.tensorboard.store import InstanceStore\n"
            "stop_processes(InstanceStore(pathlib.Path(sys.argv[1])))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(records)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env={"PATH": os.environ.get("PATH", ""), "HOME": self.home_dir},
            **account.popen_kwargs(),
        )
        if done.returncode:
            self.log.warning("TensorBoards of %s: %s", self.user.name, done.stderr[-500:])

    async def _release_gpus(self) -> None:
        if self.workbench.gpus:
            try:
                await self._service("DELETE", f"gpus/{self.gpu_owner}")
            except Exception:
                self.log.exception("Could not release GPUs of %s", self.gpu_owner)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["devices"] = getattr(self, "_devices", [])
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self._devices = state.get("devices", [])
