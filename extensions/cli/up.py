"""`hubforge up`: start the local workbench and keep its hub running (started again after a
crash) until Ctrl-C or `hubforge down`."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import data_path, lifecycle
from ..atomic import write_json, write_text
from ..data_path import DataPath, DataPathError
from ..terminal import LogEcho
from ..workbench import Workbench, load_workbench
from .common import _data_dir_flag, _pid_file
from .first_admin import _ensure_first_admin, _first_admin_hint, first_admin_box
from .helper import _start_helper
from .readiness import _announce_label_studio, _wait_ready
from .service_accounts import _hub_account, _proxy_account, _service_account
from .stopping import _stop_hub

LOG_KEEP_BYTES = 50 * 1024 * 1024
HUB_DATABASE_DAMAGED = 78  # hubforge.hub.database.DAMAGED (not imported: jupyterhub is slow)


@dataclass
class _Up:
    """What one `hubforge up` holds while it runs."""

    args: argparse.Namespace
    workbench: Workbench
    ports: dict[str, str]
    hub_account: Any
    helper: subprocess.Popen | None
    new_admin: str | None  # the first admin's password, until it is shown
    registered: Path | None
    stopping: list[int] = field(default_factory=list)  # the signals that asked it to stop
    hubs: list[subprocess.Popen] = field(default_factory=list)  # every hub it started
    echo: LogEcho | None = None
    sink: subprocess.Popen | None = None  # the hub's log (hubforge.logsink), unless --verbose
    data_path: DataPath | None = None  # the proxy and services, kept through hub restarts
    code: int = 0  # the last hub's exit status


def cmd_up(args: argparse.Namespace) -> int:
    workbench = _prepare(args)
    hub_account, service_account = _make_accounts(workbench)
    ports = lifecycle.fixed_ports()
    helper = _start_helper(workbench, ports, hub_account, service_account)
    new_admin = _first_admin(workbench, service_account)
    lifecycle.remember(workbench.data_dir)
    registered = lifecycle.register(workbench.data_dir)  # found by other commands while it runs
    up = _Up(args, workbench, ports, hub_account, helper, new_admin, registered)
    _catch_signals(up)
    restarts = lifecycle.Restarts()
    print(f"Starting Hubforge on {workbench.data_dir}", flush=True)
    up.echo = _show_hub_log(workbench, args)
    try:
        _start_data_path(up)
        _run_hubs(up, restarts)
    except DataPathError as e:
        print(f"Hubforge could not start: {e}", file=sys.stderr, flush=True)
        up.code = 1
    finally:
        _shut_down(up)
    return 0 if up.stopping else (up.code or 1)


def _start_data_path(up: _Up) -> None:
    """The log sink, then the proxy and the services (hubforge.data_path): started here,
    not by the hub, so that a hub restart leaves every route and endpoint answering."""
    workbench = up.workbench
    if not up.args.verbose:
        up.sink = lifecycle.start_log_sink(workbench.data_dir, workbench.state_dir, up.hub_account)
    os.environ.update(up.ports)  # where the services listen (hub.config.fixed_port)
    token = data_path.new_proxy_token()
    parts = data_path.parts(workbench, up.ports, up.hub_account, token)
    api = f"http://127.0.0.1:{up.ports['HUBFORGE_PROXY_API_PORT']}"
    output = up.sink.stdin if up.sink is not None else None
    up.data_path = DataPath(parts, api, token, output=output)
    up.ports = {**up.ports, **data_path.hub_env(token)}
    up.data_path.start()


def _prepare(args: argparse.Namespace) -> Workbench:
    """Load and prepare the workbench, lock its data folder (held until this process exits),
    warn about weak isolation, and check now that the proxy can start."""
    from hubforge.hub.config import find_proxy

    workbench = load_workbench(args.config)
    workbench.prepare()
    lifecycle.lock(workbench.state_dir)  # held until this process exits
    warning = workbench.isolation_warning()
    if warning:
        print(f"Warning: {warning}", file=sys.stderr, flush=True)
    if workbench.isolation == "accounts":
        # the hub, proxy, service and Label Studio write nothing other accounts may read;
        # users' servers, jobs and endpoints set their own umask (022) as they start
        os.umask(0o077)
    find_proxy()  # fail now, with the fix, rather than inside the hub
    return workbench


def _make_accounts(workbench: Workbench) -> tuple[Any, Any]:
    """The proxy's, the hub's and the service's accounts (per-user accounts; else None):
    returns the hub's and the service's."""
    _proxy_account(workbench)
    hub_account = _hub_account(workbench)
    service_account = _service_account(workbench, hub_account)
    return hub_account, service_account


def _first_admin(workbench: Workbench, service_account: Any) -> str | None:
    """The first admin's new password, if one was made (see _ensure_first_admin)."""
    if service_account is not None:  # the password hashes are the service's files
        from ..accounts import as_account

        return as_account(service_account, _ensure_first_admin, workbench)
    return _ensure_first_admin(workbench)


def _catch_signals(up: _Up) -> None:
    """SIGTERM and SIGINT stop the hub, and `up` after it."""

    def stop(signum: int, frame: object) -> None:
        up.stopping.append(signum)
        for hub in up.hubs:
            if hub.poll() is None:
                hub.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _show_hub_log(workbench: Workbench, args: argparse.Namespace) -> LogEcho | None:
    """Keep one old hub log; say where the log goes, and echo what to act on of it here
    (unless --quiet; --verbose shows it all, from the hub itself)."""
    hub_log = workbench.state_dir / "jupyterhub.log"
    if hub_log.exists() and hub_log.stat().st_size > LOG_KEEP_BYTES:  # one old log is kept
        hub_log.replace(hub_log.with_name("jupyterhub.log.1"))
    if args.verbose:
        return None
    print(
        f"The hub's log: {hub_log} (errors and warnings to act on show here)",
        flush=True,
    )
    if args.quiet:
        return None
    hub_log.touch()
    return LogEcho(hub_log).start()


def _run_hubs(up: _Up, restarts: lifecycle.Restarts) -> None:
    """Start the hub, and again each time it exits by itself, until `up` is asked to stop,
    the hub's database is damaged, or it keeps crashing."""
    while not up.stopping:
        hub = _start_hub(up)
        _wait_for_hub(up, hub)
        up.code = hub.wait()
        if up.stopping or not _restart_hub(up, restarts):
            break


def _start_hub(up: _Up) -> subprocess.Popen:
    """One hub process, recorded (with `up`'s pid) for the other commands."""
    workbench = up.workbench
    hub = lifecycle.start_hub(
        workbench.data_dir,
        workbench.state_dir,
        up.ports,
        output=up.sink.stdin if up.sink is not None else None,
        account=up.hub_account,
    )
    up.hubs.append(hub)
    record = {"pid": os.getpid(), "hub_pid": hub.pid, "url": workbench.public_url}
    write_json(_pid_file(workbench), record)
    return hub


def _loopback(workbench: Workbench, port: str) -> str:
    """The workbench's base URL on a loopback port."""
    path = urlsplit(workbench.public_url).path  # the base URL, quoted as in the URL
    return ("http://127.0.0.1:{}" + path).format(port)


def _components(workbench: Workbench, ports: dict[str, str]) -> list[tuple[str, str]]:
    """(component, loopback URL) pairs that answer before the hub adds its proxy routes."""
    first = [("hub", _loopback(workbench, ports["HUBFORGE_HUB_PORT"]) + "hub/api/")]
    first.append(
        (
            "jobs/serving",
            _loopback(workbench, ports["HUBFORGE_SERVICE_PORT"]) + "services/hubforge/",
        )
    )
    if workbench.label_studio_python:  # the hub routes nothing until it is up
        ls = _loopback(workbench, ports["HUBFORGE_LABEL_STUDIO_PORT"])
        first.append(("Label Studio", ls + "services/label-studio/"))
    return first


def _say(line: str) -> None:
    print(line, flush=True)


def _wait_for_hub(up: _Up, hub: subprocess.Popen) -> None:
    """Until the hub answers (each component announced at the first start), then say where
    it runs; or that it did not answer."""
    workbench = up.workbench
    first = _components(workbench, up.ports)
    started = time.monotonic()
    ready = _wait_ready(
        workbench.public_url,
        hub,
        first=tuple(first),
        say=_say if len(up.hubs) == 1 else None,
    )
    if ready and len(up.hubs) == 1 and workbench.label_studio_python:
        ls = _loopback(workbench, up.ports["HUBFORGE_LABEL_STUDIO_PORT"])
        _announce_label_studio(ls + "services/label-studio/health", started)
    if ready:
        _say_running(up)
    elif not up.stopping and hub.poll() is None:
        print("The hub did not answer within 300 s; see its log.", file=sys.stderr)


def _say_running(up: _Up) -> None:
    """Where the workbench runs (at the first start, with the first admin's password once),
    or that the hub is back."""
    workbench = up.workbench
    if len(up.hubs) == 1 and up.new_admin:
        creds = workbench.initial_admin_file
        print("\n" + first_admin_box(up.new_admin, creds), flush=True)
        up.new_admin = None
    print(
        f"\nHubforge is running at {workbench.public_url}\n"
        f"Log in with your user name and password{_first_admin_hint(workbench)}.\n"
        "Stop with Ctrl-C or `hubforge down`.\n"
        if len(up.hubs) == 1
        else f"The hub is back at {workbench.public_url}",
        flush=True,
    )


def _restart_hub(up: _Up, restarts: lifecycle.Restarts) -> bool:
    """After the hub exited by itself: whether to start it again (saying why not, or that it
    restarts); the proxy and services keep running meanwhile."""
    workbench, code = up.workbench, up.code
    if code == HUB_DATABASE_DAMAGED:
        _say_database_damaged(workbench)
        return False
    if not restarts.allow():
        print(
            f"The hub exited with status {code} {lifecycle.MAX_RESTARTS + 1} times "
            f"within {lifecycle.RESTART_WINDOW // 60} minutes; giving up (see its log). "
            "Training jobs and endpoints keep running; `hubforge up` again finds them.",
            file=sys.stderr,
        )
        write_text(workbench.state_dir / "keep-jobs", "the hub kept crashing\n")
        return False
    print(
        f"The hub exited with status {code}; restarting it (the proxy, services, servers, "
        "training jobs and endpoints keep running).",
        file=sys.stderr,
        flush=True,
    )
    return True


def _shut_down(up: _Up) -> None:
    """Stop the last hub (and what it left), the log echo and the helper; `up` is no
    longer registered."""

    def after_the_hub() -> None:
        """The proxy and services, then the log sink: it ends (with the last lines) when
        its last writer, `up`, closes the pipe; nothing of it is left for the sweep."""
        if up.data_path is not None:
            up.data_path.stop()
        if up.sink is not None and up.sink.stdin is not None:
            up.sink.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                up.sink.wait(timeout=10)

    if up.hubs:
        _stop_hub(up.hubs[-1], up.workbench, before_sweep=after_the_hub)
    else:
        after_the_hub()
    if up.echo is not None:
        up.echo.stop()
    if up.helper is not None:
        up.helper.terminate()
        up.helper.wait(timeout=10)
    if up.registered is not None:
        up.registered.unlink(missing_ok=True)


def _say_database_damaged(workbench: Workbench) -> None:
    from hubforge.hub import database

    path = workbench.hub_dir / "jupyterhub.sqlite"
    newest = next((b for b in database.backups(path) if database.check(b) is None), None)
    if newest is None:
        print(
            f"The hub's database {path} is damaged and has no backup: move it aside and "
            "start again (users and passwords are kept; API tokens are not).",
            file=sys.stderr,
        )
        return
    print(
        f"The hub's database {path} is damaged. Its backup of {database.when(newest)} keeps "
        "users, servers and tokens as they were then: run `hubforge restore-database"
        f"{_data_dir_flag(workbench)}`, then `hubforge up` again.",
        file=sys.stderr,
    )


def _up_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    up = sub.add_parser("up", parents=[common], help="start the local workbench")
    up.add_argument("--ip", help="address to listen on (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="public port (default 8000)")
    up.add_argument("--base-url", help="URL prefix (default /)")
    shown = up.add_mutually_exclusive_group()
    shown.add_argument(
        "--quiet",
        action="store_true",
        help="show only start-up and Hubforge's own messages (the hub's log: state/jupyterhub.log)",
    )
    shown.add_argument(
        "--verbose",
        action="store_true",
        help="show the hub's whole log here (default: its errors and warnings to act on; "
        "the rest goes to state/jupyterhub.log)",
    )
    up.set_defaults(func=cmd_up)
