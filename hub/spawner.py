"""Local spawner: JupyterLab per user with a profile, a home folder, the data mount and GPUs."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub.utils import random_port
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Instance, Unicode, default

from hubforge import accounts, helper_client, user_setup
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
        # fast_start: a second less of CPU at each start (see hubforge.fast_start)
        return [sys.executable, "-m", "hubforge.fast_start", "jupyterhub.singleuser"]

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
    @property
    def with_accounts(self) -> bool:
        """Per-user OS accounts: the privileged helper prepares, starts and signals."""
        return self.workbench.isolation == "accounts"

    def _helper(self, command: str, **fields: Any) -> dict[str, Any]:
        """Ask the workbench's privileged helper (hubforge.privileged) to do ``command``
        for this user: the hub itself never needs root for a user's account or files."""
        request = {"command": command, "user": self.user.name, **fields}
        try:
            return helper_client.ask(helper_client.hub_socket(self.workbench.root), request)
        except helper_client.HelperError as e:
            raise web.HTTPError(500, f"{self.user.name}'s server ({command}): {e}") from None

    async def _ask_helper(self, command: str, **fields: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self._helper, command, **fields)

    def _account_uid(self) -> int | None:
        """The uid of the user's account (looked up, never made), or None."""
        try:
            home = Path(self.home_dir)
            return accounts.existing_account(self.user.name, home, self.workbench.state_dir).uid
        except accounts.AccountError:
            return None

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env = super().user_env(env)
        account = getattr(self, "_account_name", None)
        if account is not None:
            env["USER"] = env["LOGNAME"] = account
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
                # how often the server tells the hub it is active (idle culling's clock)
                "JUPYTERHUB_ACTIVITY_INTERVAL": str(self.workbench.activity_interval),
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
            if self.with_accounts:
                prepared = await self._ask_helper("prepare")
                self._account_name = prepared["account"]
                ip, port = await self._start_as_account()
            else:
                layout = user_setup.Layout.of(self.workbench)
                await asyncio.to_thread(user_setup.prepare_folders, layout, self.user.name)
                ip, port = await super().start()
            await self._wait_listening(ip, port)
        except BaseException:
            await self._release_gpus()
            raise
        return ip, port

    async def _start_as_account(self) -> tuple[str, int]:
        """The server as the user's account, started by the privileged helper; what it and
        its kernels print goes to the user's own ~/.hubforge/server.log, not the hub's log."""
        if self.port == 0:
            self.port = random_port()
        env = self.get_env()
        cmd = [*self.cmd, *self.get_args()]
        self.log.info("Spawning %s as %s", shlex.join(cmd), self._account_name)
        self.pid = (await self._ask_helper("start", argv=cmd, env=env))["pid"]
        return (self.ip or "127.0.0.1", self.port)

    async def _signal(self, sig: int) -> bool:
        """With per-user accounts the hub needs no right over the user's processes: whether
        the server runs is read from /proc (the user's uid, not a zombie), and signals are
        sent by the helper as the user's account (only their own processes can be reached)."""
        if not self.with_accounts:
            return await super()._signal(sig)
        if sig != 0:
            try:
                await self._ask_helper("signal", pid=self.pid, signum=int(sig), group=False)
            except web.HTTPError as e:
                self.log.warning("%s", e.log_message)
        return self._running()

    def _running(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return proc.status() != psutil.STATUS_ZOMBIE and proc.uids().real == self._account_uid()
        except psutil.Error:
            return False

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
            if self.with_accounts:
                with contextlib.suppress(web.HTTPError):
                    await self._ask_helper("signal", pid=pid, signum=signal.SIGKILL, group=True)
            else:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        # TensorBoards run detached from the server; they stop with it (and come back with it).
        await self._stop_tensorboards()
        await self._release_gpus()

    async def _stop_tensorboards(self) -> None:
        """Stop the user's TensorBoards. Their records are in the user's home, the user's to
        write: with per-user accounts the helper reads them and sends the signals as the
        user's own account, so a pid the user wrote there reaches only the user's processes."""
        if not self.with_accounts:
            records = Path(self.home_dir) / ".hubforge" / "tensorboards.json"
            await asyncio.to_thread(stop_processes, InstanceStore(records))
            return
        if self._account_uid() is None:
            return  # never spawned as an account: nothing of theirs runs
        try:
            await self._ask_helper("stop-tensorboards")
        except web.HTTPError as e:
            self.log.warning("TensorBoards of %s: %s", self.user.name, e.log_message)

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
