"""The ``hubforge`` command: up, down, status, users."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from . import lifecycle
from .atomic import DamagedStateFile, read_json, write_json, write_text
from .processes import sweep, workbench_processes
from .terminal import LogEcho
from .workbench import ConfigError, Workbench, load_workbench

FIRST_ADMIN = "admin"


# commands that act on a whole workbench: with several running they never guess
WORKBENCH_COMMANDS = {"down", "status", "users", "restore-database"}


def _apply_options(args: argparse.Namespace) -> None:
    """CLI options become the environment the Workbench defaults read (hub and service too).

    Without --data-dir or $HUBFORGE_DIR, commands other than `up` act on the one workbench of
    this account that runs now (found through the locks of their `up`s; with several the
    workbench commands refuse and list them), else on the data folder of the last
    `hubforge up` (they say which)."""
    if (
        getattr(args, "data_dir", None) is None
        and not os.environ.get("HUBFORGE_DIR")
        and args.command != "up"
    ):
        args.data_dir = _the_workbench(args.command)
    for option, env in (
        ("data_dir", "HUBFORGE_DIR"),
        ("ip", "HUBFORGE_IP"),
        ("port", "HUBFORGE_PORT"),
        ("base_url", "HUBFORGE_BASE_URL"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            os.environ[env] = (
                str(Path(value).expanduser().resolve()) if env == "HUBFORGE_DIR" else str(value)
            )
    if getattr(args, "config", None):
        os.environ["HUBFORGE_CONFIG"] = str(Path(args.config).expanduser().resolve())


def _the_workbench(command: str) -> str | None:
    running = lifecycle.running()
    if len(running) == 1:
        return running[0]
    if len(running) > 1 and command in WORKBENCH_COMMANDS:
        listed = "\n".join(f"  hubforge {command} --data-dir {d}" for d in running)
        raise SystemExit(
            f"error: {len(running)} workbenches are running here; say which one:\n{listed}"
        )
    return lifecycle.remembered()


def _store(workbench: Workbench):
    from hubforge.hub.passwords import PasswordStore

    return PasswordStore(workbench.passwords_file, workbench.sharing_refusal())


def _pid_file(workbench: Workbench) -> Path:
    return workbench.state_dir / "hubforge.json"


def running(workbench: Workbench) -> dict | None:
    """The record of the `hubforge up` that holds this data folder, or None."""
    if not lifecycle.is_locked(workbench.state_dir):
        return None
    record = read_json(_pid_file(workbench))
    if not record:
        return None
    try:
        os.kill(record["pid"], 0)
    except (ProcessLookupError, PermissionError):
        return None
    return record


def _ensure_first_admin(workbench: Workbench) -> str | None:
    """Create the first admin when there is no user yet; returns its password (shown once,
    at the end of start-up, where it does not scroll away)."""
    store = _store(workbench)
    if store.users():
        return None
    password = store.add(FIRST_ADMIN, admin=True)
    creds = workbench.initial_admin_file
    write_text(creds, f"user: {FIRST_ADMIN}\npassword: {password}\n", mode=0o600)
    return password


def _as_service(workbench: Workbench, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` as the hubforge service's account when its files are the service's
    (per-user accounts; root never writes in a folder another account owns), else here."""
    if workbench.isolation != "accounts" or os.geteuid() != 0:
        return fn(*args)
    from .accounts import as_account

    service = _service_account(workbench, _hub_account(workbench))
    return as_account(service, fn, *args)


def first_admin_box(password: str, creds: Path) -> str:
    """The first admin's credentials in a box, with what to do next."""
    lines = [
        "Created the first admin (shown once):",
        f"  user:     {FIRST_ADMIN}",
        f"  password: {password}",
        f"Change it: hubforge users reset-password {FIRST_ADMIN}",
        f"(kept, readable only by you, in {creds} until you do)",
    ]
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])


def _first_admin_hint(workbench: Workbench) -> str:
    creds = workbench.initial_admin_file
    return f" (first admin: see {creds})" if creds.exists() else ""


def _wait_ready(
    url: str,
    hub: subprocess.Popen,
    timeout: float = 300,
    first: tuple[tuple[str, str], ...] = (),
    say: Callable[[str], None] | None = None,
) -> bool:
    """Until the hub answers through the proxy. ``first``: (component, loopback URL) pairs
    (the hub itself, its services) that answer before the hub adds its proxy routes; waiting
    on them first keeps the proxy from logging a 404 error for every early try. ``say``
    gets one line per component as it becomes ready."""
    start = time.monotonic()
    deadline = start + timeout
    steps = [*((name, f, 1.0) for name, f in first), ("proxy routes", url + "hub/api/", 0.5)]
    for name, target, pause in steps:
        while True:
            if hub.poll() is not None or time.monotonic() > deadline:
                return False
            try:
                status = requests.get(target, timeout=5, allow_redirects=False).status_code
                if status == 200 or (target != url + "hub/api/" and status < 500):
                    break  # the hub, or a service that is up (a starting one answers 503)
            except requests.RequestException:
                pass
            time.sleep(pause)
        if say:  # Label Studio answers "starting" first: its API is announced when ready
            state = "listening" if name == "Label Studio" else "ready"
            say(f"  {name:<14} {state}  ({time.monotonic() - start:4.1f} s)")
    return True


def _announce_label_studio(health: str, start: float, timeout: float = 900) -> None:
    """One line when Label Studio answers its API (the real time), or why it will not."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = requests.get(health, timeout=5)
                if r.status_code == 200:
                    took = time.monotonic() - start
                    print(f"  Label Studio   ready  ({took:4.1f} s)", flush=True)
                    return
                if r.status_code == 503 and r.json().get("status") == "damaged":
                    print(f"Label Studio cannot start: {r.json()['error']}", file=sys.stderr)
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1)

    threading.Thread(target=watch, name="label-studio-ready", daemon=True).start()


def _stop_jobs(workbench: Workbench) -> None:
    """Stop running jobs unless `hubforge down --keep-jobs` asked to leave them."""
    from .jobs.local import LocalJobBackend

    keep = workbench.state_dir / "keep-jobs"
    if keep.exists():
        keep.unlink()
        _stop_accounts(workbench, keep_jobs=True)
        return
    # signals go only to processes of each job's owner (job.json is the owner's to write)
    try:
        backend = LocalJobBackend.from_workbench(workbench, create_accounts=False)
        stopped = backend.stop_all(
            "stopped with the workbench (hubforge down); `hubforge down --keep-jobs` keeps jobs"
        )
        if stopped:
            print(f"Stopped job(s): {', '.join(stopped)}", file=sys.stderr)
    finally:  # whatever a user's files hold, every process of the accounts is stopped
        _stop_accounts(workbench, keep_jobs=False)


def _stop_accounts(workbench: Workbench, keep_jobs: bool) -> None:
    """Every process of the workbench's user accounts stops with it, whether it carries the
    workbench's marker or not (a job's too, unless `--keep-jobs`)."""
    from .accounts import AccountError, existing_account
    from .processes import sweep_accounts

    if workbench.isolation != "accounts":
        return
    uids = set()
    for folder in (workbench.homes_dir, workbench.shared_data / "users"):
        for user in sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []:
            with contextlib.suppress(AccountError):
                uids.add(existing_account(user, workbench.home_of(user), workbench.state_dir).uid)
    uids.discard(0)
    left = sweep_accounts(uids, keep_jobs=keep_jobs)
    if left:
        print(f"Stopped {left} process(es) of the workbench's user accounts", file=sys.stderr)


def _describe(proc: Any) -> str:
    """'python -m ipykernel_launcher' style: what a leftover process is."""
    try:
        cmd = proc.cmdline()
    except Exception:
        return f"pid {proc.pid}"
    words = [Path(cmd[0]).name] + [c for c in cmd[1:3] if not c.startswith("/")]
    return f"{' '.join(words)} (pid {proc.pid})"


def _stop_hub(hub: subprocess.Popen, workbench: Workbench, stop_jobs: bool = True) -> None:
    if hub.poll() is None:
        hub.terminate()
        try:
            hub.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hub.kill()
    names = [_describe(p) for p in workbench_processes(workbench.data_dir)]
    left = sweep(workbench.data_dir)
    if left:
        print(
            f"Stopped {left} process(es) the hub left running: {', '.join(names)}",
            file=sys.stderr,
        )
    if stop_jobs:
        _stop_jobs(workbench)
    _pid_file(workbench).unlink(missing_ok=True)


def _proxy_account(workbench: Workbench) -> None:
    """With per-user accounts the hub starts its proxy as ``hf<wb>_proxy`` (see
    hubforge.hub.config.proxy_command); the account is made here, by root, before the hub."""
    if workbench.isolation != "accounts":
        return
    from .accounts import AccountError, ensure_service_account

    run = workbench.root / "run"
    run.mkdir(exist_ok=True)
    os.chmod(run, 0o711)  # passable (the helper's socket), not listable
    try:
        ensure_service_account("proxy", run, workbench.state_dir)
    except AccountError as e:
        raise SystemExit(f"error: the proxy's account: {e}") from None


def _hub_account(workbench: Workbench) -> Any:
    """With per-user accounts the hub runs as the workbench's ``hf<wb>_hub`` account, made
    here by root: its own files in state/hub (0700, moved there from state/ by an upgrade),
    and state/ passable for it, with only its password hashes and service token readable."""
    if workbench.isolation != "accounts":
        return None
    from hubforge.hub.config import service_token

    from .accounts import AccountError, close_state, ensure_service_account, own_folder

    folder = workbench.hub_dir
    try:
        account = ensure_service_account("hub", folder, workbench.state_dir)
        own_folder(folder, account, 0o700)
    except AccountError as e:
        raise SystemExit(f"error: the hub's account: {e}") from None
    for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret"):
        old, new = workbench.state_dir / name, folder / name
        if old.is_file() and not old.is_symlink() and not os.path.lexists(new):
            os.rename(old, new)  # state/ is root's alone: nobody swapped these
            os.chown(new, account.uid, account.gid, follow_symlinks=False)
    service_token(workbench)  # made by root; the hub may only read it
    close_state(workbench.state_dir)
    return account


# the service's own files, moved from state/ into <data dir>/service by an upgrade
SERVICE_FILES = (
    "passwords.json",
    "gpus.json",
    "endpoints.json",
    "endpoints-starting.json",
    "label-studio-users.json",
    "label-studio-shares.json",
)


def _service_account(workbench: Workbench, hub: Any) -> Any:
    """With per-user accounts the hubforge service runs as ``hf<wb>_svc``, made here by
    root, with its own files in <data dir>/service (its account's; the hub's group may read
    the password hashes there, nothing else: files are 0600 but passwords.json, 0640).
    Users' areas it reaches only through the privileged helper, as their owners."""
    if workbench.isolation != "accounts":
        return None
    from dataclasses import replace

    from .accounts import AccountError, ensure_service_account, own_folder

    folder = workbench.service_dir
    try:
        account = ensure_service_account("svc", folder, workbench.state_dir)
        # group: the hub's (it reads passwords.json); set-gid, so new files get it too
        own_folder(folder, replace(account, gid=hub.gid), 0o2750)
    except AccountError as e:
        raise SystemExit(f"error: the hubforge service's account: {e}") from None
    for name in SERVICE_FILES:
        old, new = workbench.state_dir / name, folder / name
        if old.is_file() and not old.is_symlink() and not os.path.lexists(new):
            os.rename(old, new)  # state/ is root's alone: nobody swapped these
            os.chown(new, account.uid, hub.gid, follow_symlinks=False)
    return account


def _start_helper(
    workbench: Workbench, ports: dict[str, str], hub: Any = None, service: Any = None
) -> subprocess.Popen | None:
    """With per-user accounts the privileged helper (hubforge.privileged, root) does for
    the hub's spawner what needs root (a user's account and folders, their server started
    and signalled as their account), and opens users' files as their owners for Label
    Studio, which runs as its own system account. It also starts the hub's services and
    proxy, each as its account, when the hub asks (hubforge.hub_services): it knows the
    workbench (``HUBFORGE_DIR``, ``HUBFORGE_CONFIG``, the options of `up`) and its ports.
    Started before the hub, stopped after it, dies with `up` (a restarted hub finds it)."""
    if workbench.isolation != "accounts":
        return None
    from .accounts import AccountError, ensure_service_account, own_folder
    from .helper_client import hub_socket
    from .labeling.server import helper_socket
    from .owner_files import service_socket

    run = hub_socket(workbench.root).parent
    run.mkdir(exist_ok=True)
    os.chmod(run, 0o711)  # passable (the helper's sockets), not listable
    sockets = [hub_socket(workbench.root)]
    command = [
        # -I: nothing of the folder `up` runs in (or of PYTHON* variables) is imported as root
        *(sys.executable, "-I", "-m", "hubforge.privileged"),
        *("--data", str(workbench.shared_data), "--state", str(workbench.state_dir)),
        *("--hub-socket", str(sockets[0])),
        *("--hub-uid", str(hub.uid if hub is not None else os.geteuid())),
    ]
    if service is not None:
        sockets.append(service_socket(workbench.root))
        command += ["--service-socket", str(sockets[-1]), "--service-uid", str(service.uid)]
    if workbench.label_studio_python:
        folder = workbench.root / "label-studio"
        try:
            account = ensure_service_account("ls", folder, workbench.state_dir)
            own_folder(folder, account, 0o700)
        except AccountError as e:
            raise SystemExit(f"error: Label Studio's account: {e}") from None
        sockets.append(helper_socket(workbench))
        command += ["--socket", str(sockets[-1]), "--client-uid", str(account.uid)]
    for sock in sockets:
        sock.unlink(missing_ok=True)  # a socket of an earlier start
    helper = subprocess.Popen(
        command,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env={
            "PATH": os.environ.get("PATH", ""),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            # the workbench as `up` knows it: --config, --port, --base-url... (HUBFORGE_*)
            **{k: v for k, v in os.environ.items() if k.startswith("HUBFORGE_")},
            "HUBFORGE_DIR": workbench.data_dir,
            **ports,
        },
    )
    deadline = time.monotonic() + 30
    while not all(s.exists() for s in sockets) and helper.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return helper


def cmd_up(args: argparse.Namespace) -> int:
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
    _proxy_account(workbench)
    hub_account = _hub_account(workbench)
    service_account = _service_account(workbench, hub_account)
    ports = lifecycle.fixed_ports()
    helper = _start_helper(workbench, ports, hub_account, service_account)
    if service_account is not None:  # the password hashes are the service's files
        from .accounts import as_account

        new_admin = as_account(service_account, _ensure_first_admin, workbench)
    else:
        new_admin = _ensure_first_admin(workbench)
    lifecycle.remember(workbench.data_dir)
    registered = lifecycle.register(workbench.data_dir)  # found by other commands while it runs
    stopping: list[int] = []
    hubs: list[subprocess.Popen] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)
        for hub in hubs:
            if hub.poll() is None:
                hub.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restarts = lifecycle.Restarts()
    print(f"Starting Hubforge on {workbench.data_dir}", flush=True)
    hub_log = workbench.state_dir / "jupyterhub.log"
    if hub_log.exists() and hub_log.stat().st_size > LOG_KEEP_BYTES:  # one old log is kept
        hub_log.replace(hub_log.with_name("jupyterhub.log.1"))
    echo = None
    if not args.verbose:
        print(f"The hub's log: {hub_log} (errors and warnings to act on show here)", flush=True)
        if not args.quiet:
            hub_log.touch()
            echo = LogEcho(hub_log).start()
    code = 0
    try:
        while not stopping:
            hub = lifecycle.start_hub(
                workbench.data_dir,
                workbench.state_dir,
                ports,
                to_file=not args.verbose,
                account=hub_account,
            )
            hubs.append(hub)
            record = {"pid": os.getpid(), "hub_pid": hub.pid, "url": workbench.public_url}
            write_json(_pid_file(workbench), record)
            path = urlsplit(workbench.public_url).path  # the base URL, quoted as in the URL
            loopback = "http://127.0.0.1:{}" + path
            first = [("hub", loopback.format(ports["HUBFORGE_HUB_PORT"]) + "hub/api/")]
            first.append(
                (
                    "jobs/serving",
                    loopback.format(ports["HUBFORGE_SERVICE_PORT"]) + "services/hubforge/",
                )
            )
            if workbench.label_studio_python:  # the hub routes nothing until it is up
                ls = loopback.format(ports["HUBFORGE_LABEL_STUDIO_PORT"])
                first.append(("Label Studio", ls + "services/label-studio/"))

            def say(line: str) -> None:
                print(line, flush=True)

            started = time.monotonic()
            ready = _wait_ready(
                workbench.public_url, hub, first=tuple(first), say=say if len(hubs) == 1 else None
            )
            if ready and len(hubs) == 1 and workbench.label_studio_python:
                _announce_label_studio(ls + "services/label-studio/health", started)
            if ready:
                if len(hubs) == 1 and new_admin:
                    creds = workbench.initial_admin_file
                    print("\n" + first_admin_box(new_admin, creds), flush=True)
                    new_admin = None
                print(
                    f"\nHubforge is running at {workbench.public_url}\n"
                    f"Log in with your user name and password{_first_admin_hint(workbench)}.\n"
                    "Stop with Ctrl-C or `hubforge down`.\n"
                    if len(hubs) == 1
                    else f"The hub is back at {workbench.public_url}",
                    flush=True,
                )
            elif not stopping and hub.poll() is None:
                print("The hub did not answer within 300 s; see its log.", file=sys.stderr)
            code = hub.wait()
            if stopping:
                break
            if code == HUB_DATABASE_DAMAGED:
                _say_database_damaged(workbench)
                break
            left = lifecycle.stop_leftovers(workbench.data_dir)
            if not restarts.allow():
                print(
                    f"The hub exited with status {code} {lifecycle.MAX_RESTARTS + 1} times "
                    f"within {lifecycle.RESTART_WINDOW // 60} minutes; giving up (see its log). "
                    "Training jobs and endpoints keep running; `hubforge up` again finds them.",
                    file=sys.stderr,
                )
                write_text(workbench.state_dir / "keep-jobs", "the hub kept crashing\n")
                break
            print(
                f"The hub exited with status {code}; restarting it (stopped {left} of its "
                "services; servers, training jobs and endpoints keep running).",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if hubs:
            _stop_hub(hubs[-1], workbench)
        if echo is not None:
            echo.stop()
        if helper is not None:
            helper.terminate()
            helper.wait(timeout=10)
        if registered is not None:
            registered.unlink(missing_ok=True)
    return 0 if stopping else (code or 1)


LOG_KEEP_BYTES = 50 * 1024 * 1024
HUB_DATABASE_DAMAGED = 78  # hubforge.hub.database.DAMAGED (not imported: jupyterhub is slow)


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


def _data_dir_flag(workbench: Workbench) -> str:
    if lifecycle.remembered() == workbench.data_dir:
        return ""
    return f" --data-dir {workbench.data_dir}"


def cmd_restore_database(args: argparse.Namespace) -> int:
    """Put back the newest sound backup of the hub's (or Label Studio's) database, as the
    account that owns its folder (the hub's, Label Studio's: never root in theirs)."""
    workbench = load_workbench(args.config)
    if running(workbench) or lifecycle.is_locked(workbench.state_dir):
        raise SystemExit("error: stop the workbench first (`hubforge down`): it uses it")
    if args.label_studio:
        folder, name = workbench.root / "label-studio", "label_studio.sqlite3"
    else:
        folder, name = workbench.hub_dir, "jupyterhub.sqlite"
    if not (folder / name).exists():
        raise SystemExit(f"error: there is no database {folder / name} to restore")
    info = os.lstat(folder)
    owner = {}
    if info.st_uid != os.geteuid():
        owner = {"user": info.st_uid, "group": info.st_gid, "extra_groups": []}
    done = subprocess.run(
        [sys.executable, "-m", "hubforge.sqlite_backup", "restore", str(folder / name)],
        cwd="/",
        **owner,
    )
    return done.returncode


def cmd_down(args: argparse.Namespace) -> int:
    workbench = load_workbench(args.config)
    record = running(workbench)
    if args.keep_jobs:
        write_text(workbench.state_dir / "keep-jobs", "keep running jobs\n", mode=0o600)
    if not record:
        left = sweep(workbench.data_dir)
        _stop_jobs(workbench)
        print(
            f"Hubforge is not running on {workbench.data_dir}"
            + (f"; stopped {left} leftover process(es)." if left else ".")
        )
        return 0
    os.kill(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and running(workbench):
        time.sleep(0.2)
    if running(workbench):
        print("Hubforge did not stop within 90 s; killing it.", file=sys.stderr)
        os.kill(record["pid"], signal.SIGKILL)
    sweep(workbench.data_dir)
    print(f"Hubforge stopped ({workbench.data_dir}).")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from hubforge.hub.config import service_token

    from .client import ServiceClient, ServiceError

    workbench = load_workbench(args.config)
    record = running(workbench)
    if not record:
        print(f"Hubforge is not running (data folder {workbench.data_dir}).")
        return 1
    print(f"Hubforge is running at {record['url']} (pid {record['pid']})")
    print(f"  data folder: {workbench.data_dir}")
    try:
        status = ServiceClient(
            record["url"] + "services/hubforge/api", service_token(workbench)
        ).status()
    except ServiceError as e:
        print(f"  service: not answering ({e})")
        return 1
    gpus = status["gpus"]
    print(f"  service: {status['service']} {status['version']}, mode {status['mode']}")
    print(f"  GPUs: {gpus['free']} free of {gpus['total']}")
    for owner, devices in sorted(gpus["allocations"].items()):
        print(f"    {owner}: {','.join(devices)}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    workbench = load_workbench(args.config)
    workbench.prepare()
    print(f"Workbench: {workbench.data_dir}", file=sys.stderr)
    password = None
    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\n")
    return _as_service(workbench, _users, workbench, args, password)


def _users(workbench: Workbench, args: argparse.Namespace, password: str | None) -> int:
    from hubforge.hub.passwords import UserError

    store = _store(workbench)
    try:
        if args.users_command == "add":
            password = store.add(args.name, password, admin=args.admin)
            print(
                f"Added {'admin ' if args.admin else ''}user {args.name} with password: {password}"
            )
        elif args.users_command == "reset-password":
            had_initial = store.initial_file.exists()
            password = store.reset(args.name, password)
            print(f"New password for {args.name}: {password}")
            if had_initial and not store.initial_file.exists():
                print(f"Removed {store.initial_file}: it held the old password.")
        else:
            for name, info in sorted(store.users().items()):
                print(f"{name}{'  (admin)' if info['admin'] else ''}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _param(text: str) -> tuple[str, object]:
    """NAME=VALUE, VALUE parsed as JSON when it can be (3, 0.1, true, "x"), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: use NAME=VALUE, e.g. epochs=3")
    name, value = text.split("=", 1)
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _print_job(record: dict) -> None:
    spec = record["spec"]
    print(
        f"{record['id']}  {record['state']}  workers={spec['workers']} "
        f"gpus/worker={spec['gpus_per_worker']} restarts={record['restarts']}"
    )
    if record.get("reason"):
        print(f"  {record['reason']}")
        blamed = re.search(r"see the logs of (worker-\d+)", record["reason"])
        if blamed:
            print(f"  logs: hubforge job logs {record['id']} --replica {blamed.group(1)}")
    for name, replica in sorted(record.get("replicas", {}).items()):
        print(f"  {name}: {replica['state']} (pid {replica['pid']}, exit {replica['exit_code']})")
    for key, value in record.get("artifacts", {}).items():
        if key == "figures":
            for path in value:  # what the job drew (plt.show(), figures left open)
                print(f"  figure: {path}")
        else:
            print(f"  {key}: {value}")


def _follow_progress(job) -> str:
    from .jobs.display import progress_line
    from .jobs.store import TERMINAL

    tty = sys.stderr.isatty()
    last = ""
    while True:
        state = job.status
        line = progress_line(state, job.progress)
        if line != last:
            print(
                ("\r\033[K" if tty else "") + line,
                end="" if tty else "\n",
                file=sys.stderr,
                flush=True,
            )
            last = line
        if state in TERMINAL:
            if tty:
                print(file=sys.stderr)
            return state
        time.sleep(0.5)


def _job_submit(args: argparse.Namespace) -> int:
    from . import jobs

    job = jobs.submit(
        args.notebook,
        workers=args.workers,
        gpus_per_worker=args.gpus,
        params=dict(args.param or []),
        name=args.name,
        max_restarts=args.max_restarts,
    )
    for warning in job.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    print(f"Submitted {job.id}; follow it with `hubforge job show {job.id}`")
    if args.follow:
        return 0 if _follow_progress(job) == "succeeded" else 1
    return 0


def _job_list(args: argparse.Namespace) -> int:
    from . import jobs

    for job in jobs.list_jobs():
        r = job.record
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        print(f"{r['id']:<24} {r['state']:<10} workers={r['spec']['workers']} {created}")
    return 0


def _job_show(args: argparse.Namespace) -> int:
    from . import jobs
    from .jobs.display import progress_line

    job = jobs.get(args.id)
    _print_job(job.record)
    print("  " + progress_line(job.record["state"], job.progress))
    print(f"  TensorBoard: hubforge tensorboard open {job.id}")
    return 0


def _job_logs(args: argparse.Namespace) -> int:
    from . import jobs

    output = jobs.get(args.id).logs(args.replica, follow=args.follow)
    for text in [output] if isinstance(output, str) else output:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def _job_cancel(args: argparse.Namespace) -> int:
    from . import jobs

    job = jobs.get(args.id).cancel()
    print(f"{job.id}: {job.record['state']}")
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    from . import jobs

    actions = {
        "submit": _job_submit,
        "list": _job_list,
        "show": _job_show,
        "logs": _job_logs,
        "cancel": _job_cancel,
    }
    try:
        return actions[args.job_command](args)
    except (jobs.JobError, jobs.JobNotFound) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from . import tensorboard

    try:
        if args.tb_command == "open":
            tb = tensorboard.open(
                args.logdir if len(args.logdir) > 1 else args.logdir[0], name=args.name
            )
            print(f"TensorBoard {tb.name}: {tb.url}")
        elif args.tb_command == "list":
            for tb in tensorboard.list_instances():
                print(f"{tb.name:<24} {tb.url}  {', '.join(tb.logdirs.values())}")
        elif args.all:
            for tb in tensorboard.list_instances():
                tb.stop()
                print(f"Stopped {tb.name}")
        elif args.name:
            tensorboard.stop(args.name)
            print(f"Stopped {args.name}")
        else:
            print("error: give a NAME or --all", file=sys.stderr)
            return 2
    except tensorboard.TensorBoardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from . import serving

    try:
        if args.serve_command == "deploy":
            ep = serving.deploy(
                _deploy_source(args),
                args.name,
                version=args.version,
                batching=_batching(args),
                gpus=args.gpus,
            )
            try:  # a row shaped like the model's input, so the printed line works as is
                example = ep.example_instances()
            except serving.ServingError:
                example = None
            print(f"{ep.name}: versions {ep.versions}\npredict with:\n  {ep.curl(example)}")
        elif args.serve_command == "list":
            for ep in serving.list_endpoints():
                state = "running" if ep.record["running"] else "stopped"
                print(f"{ep.name:<24} {state:<8} versions={ep.versions} {ep.url}")
        elif args.serve_command == "predict":
            instances = json.loads(args.instances)
            print(json.dumps(serving.get(args.name).predict(instances, version=args.version)))
        elif args.serve_command == "undeploy":
            serving.get(args.name).undeploy()
            print(f"Undeployed {args.name} (its model versions stay in your data area)")
        elif args.serve_command == "export-tflite":
            print("Converting (TensorFlow loads in a few seconds)...", file=sys.stderr)
            report = serving.export_tflite(
                args.model_dir,
                output=args.output,
                quantize=args.quantize,
                representative_data=_load_array(args.representative, "--representative"),
                sample_data=_load_array(args.samples, "--samples"),
                labels=_load_array(args.labels, "--labels"),
            )
            print(report)
    except (serving.ServingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _deploy_source(args: argparse.Namespace) -> object:
    if bool(args.model_dir) == bool(args.job):
        raise ValueError("give a MODEL_DIR or --job JOB_ID (one of them)")
    if args.job:
        from . import jobs

        return jobs.get(args.job)
    return args.model_dir


def _batching(args: argparse.Namespace) -> dict | None:
    if args.max_batch_size is None and args.batch_timeout_ms is None:
        return None
    batching: dict = {"max_batch_size": args.max_batch_size or 0}
    if args.batch_timeout_ms is not None:
        batching["batch_timeout_ms"] = args.batch_timeout_ms
    return batching


def _load_array(path: str | None, flag: str) -> object:
    """A .npy file, or a .npz whose arrays are the model's inputs by name."""
    if path is None:
        return None
    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{flag} {path}: not a .npy/.npz file numpy can read ({e})") from None
    return dict(data) if isinstance(data, np.lib.npyio.NpzFile) else data


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="deploy models to TF-Serving-compatible endpoints")
    serve_sub = serve.add_subparsers(dest="serve_command", required=True, metavar="ACTION")
    deploy = serve_sub.add_parser("deploy", help="serve a SavedModel (adds a version)")
    deploy.add_argument(
        "model_dir", nargs="?", help="the exported SavedModel folder in your data area"
    )
    deploy.add_argument("--job", help="deploy what this finished training job exported")
    deploy.add_argument("--name", required=True, help="endpoint name")
    deploy.add_argument("--version", type=int, help="version number (default: next)")
    deploy.add_argument("--gpus", type=int, default=0, help="GPUs (Kubernetes endpoints)")
    deploy.add_argument(
        "--max-batch-size", type=int, help="merge concurrent requests up to N rows (0: off)"
    )
    deploy.add_argument(
        "--batch-timeout-ms", type=float, help="longest a request waits for a batch (2)"
    )
    serve_sub.add_parser("list", help="your endpoints")
    predict = serve_sub.add_parser("predict", help="call an endpoint")
    predict.add_argument("name")
    predict.add_argument("instances", help='JSON rows, e.g. "[[1, 2, 3, 4]]"')
    predict.add_argument("--version", type=int)
    undeploy = serve_sub.add_parser("undeploy", help="stop an endpoint")
    undeploy.add_argument("name")
    export = serve_sub.add_parser(
        "export-tflite", help="convert a SavedModel for mobile, with a size/accuracy report"
    )
    export.add_argument("model_dir", help="a SavedModel, or a folder of versions (newest)")
    export.add_argument("--output", help="the .tflite file (default: next to the model)")
    export.add_argument(
        "--quantize", choices=["none", "dynamic", "float16", "int8"], default="none"
    )
    export.add_argument("--representative", help=".npy/.npz of typical inputs (int8 needs it)")
    export.add_argument("--samples", help=".npy/.npz inputs to compare the models on")
    export.add_argument("--labels", help=".npy class ids of --samples: reports accuracy")
    serve.set_defaults(func=cmd_serve)


def cmd_label(args: argparse.Namespace) -> int:
    from . import labeling

    try:
        if args.label_command == "list":
            for project in labeling.list_projects(args.owner):
                p = project.progress
                print(f"{project.name:<30} {project.task:<22} {p['labeled']}/{p['total']} labeled")
        elif args.label_command == "create":
            project = labeling.create_project(
                args.name, args.source, args.labels.split(","), task=args.task
            )
            print(f"{project.name}: {project.last_import}")
        elif args.label_command == "progress":
            p = labeling.open_project(args.name, args.owner).progress
            counts = ", ".join(f"{k} {v}" for k, v in p["per_label"].items())
            print(f"{p['labeled']}/{p['total']} labeled ({counts})")
        elif args.label_command == "export":
            path = labeling.open_project(args.name, args.owner).export(args.format, args.output)
            print(path)
        elif args.label_command in ("share", "unshare"):
            members = getattr(labeling, args.label_command)(args.member)
            print("Shared with: " + (", ".join(members) or "nobody"))
        elif args.label_command == "shares":
            shares = labeling.shares()
            print("Shared with: " + (", ".join(shares["shared_with"]) or "nobody"))
            print("Shared with you by: " + (", ".join(shares["shared_with_me"]) or "nobody"))
    except labeling.LabelingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _label_parser(sub: argparse._SubParsersAction) -> None:
    label = sub.add_parser("label", help="labeling projects in Label Studio")
    label_sub = label.add_subparsers(dest="label_command", required=True, metavar="ACTION")
    owner = argparse.ArgumentParser(add_help=False)
    owner.add_argument("--owner", help="a teammate who shared their projects with you")
    label_sub.add_parser("list", parents=[owner], help="your projects and their progress")
    create = label_sub.add_parser("create", help="create a project (or add new items)")
    create.add_argument("name")
    create.add_argument("source", help="a folder of the data area, e.g. datasets/pets")
    create.add_argument("--labels", required=True, help="comma-separated, e.g. cat,dog")
    create.add_argument(
        "--task",
        default="image-classification",
        choices=["image-classification", "text-classification", "object-detection"],
    )
    progress = label_sub.add_parser("progress", parents=[owner], help="labeled / total, per label")
    progress.add_argument("name")
    export = label_sub.add_parser("export", parents=[owner], help="write the annotations to a file")
    export.add_argument("name")
    export.add_argument("--format", default="JSON", choices=["JSON", "JSON_MIN", "CSV", "COCO"])
    export.add_argument("--output", help="file (default: your data area's labeling/)")
    share = label_sub.add_parser("share", help="let a teammate label your projects")
    share.add_argument("member", help="their hub user name")
    unshare = label_sub.add_parser("unshare", help="stop sharing your projects with a teammate")
    unshare.add_argument("member", help="their hub user name")
    label_sub.add_parser("shares", help="who you share with, and who shares with you")
    label.set_defaults(func=cmd_label)


def _tensorboard_parser(sub: argparse._SubParsersAction) -> None:
    tb = sub.add_parser("tensorboard", help="TensorBoard on log dirs and jobs")
    tb_sub = tb.add_subparsers(dest="tb_command", required=True, metavar="ACTION")
    open_ = tb_sub.add_parser("open", help="start (or reuse) a TensorBoard, print its URL")
    open_.add_argument("logdir", nargs="+", help="log dir(s) or job id(s); several compare")
    open_.add_argument("--name", help="instance name (default: from the log dirs)")
    tb_sub.add_parser("list", help="running TensorBoards")
    stop = tb_sub.add_parser("stop", help="stop a TensorBoard")
    stop.add_argument("name", nargs="?", help="instance name (see `list`)")
    stop.add_argument("--all", action="store_true", help="stop every instance")
    tb.set_defaults(func=cmd_tensorboard)


def _job_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    job = sub.add_parser("job", help="run notebooks as distributed TensorFlow jobs")
    job_sub = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    submit = job_sub.add_parser("submit", parents=[common], help="submit a notebook or script")
    submit.add_argument("notebook", help="notebook (.ipynb) or script (.py) in your home")
    submit.add_argument("--workers", type=int, default=1, help="number of workers (default 1)")
    submit.add_argument("--gpus", type=int, default=0, help="GPUs per worker (default 0)")
    submit.add_argument(
        "--param",
        type=_param,
        action="append",
        metavar="NAME=VALUE",
        help="override a variable of the 'parameters' cell (repeatable)",
    )
    submit.add_argument("--name", help="job name (default: from the file name)")
    submit.add_argument("--max-restarts", type=int, default=2, help="group restarts (default 2)")
    submit.add_argument("--follow", action="store_true", help="show progress until it ends")
    job_sub.add_parser("list", parents=[common], help="your jobs, newest first")
    show = job_sub.add_parser("show", parents=[common], help="state, replicas, progress")
    show.add_argument("id")
    logs = job_sub.add_parser("logs", parents=[common], help="a replica's output")
    logs.add_argument("id")
    logs.add_argument("--replica", default="worker-0", help="worker-N (default worker-0)")
    logs.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    cancel = job_sub.add_parser("cancel", parents=[common], help="stop every process of a job")
    cancel.add_argument("id")
    job.set_defaults(func=cmd_job)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubforge", description="Hubforge data-science workbench")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="workbench data folder (default ~/.hubforge)")
    common.add_argument("--config", help="hubforge_config.py to load")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    down = sub.add_parser("down", parents=[common], help="stop the workbench")
    for option in ("--ip", "--port", "--base-url"):  # `make down ARGS=...` with up's ARGS
        down.add_argument(option, help=argparse.SUPPRESS)
    down.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    down.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
    down.add_argument(
        "--keep-jobs",
        action="store_true",
        help="leave running training jobs running (the next `up` lists them)",
    )
    down.set_defaults(func=cmd_down)
    sub.add_parser("status", parents=[common], help="is it running?").set_defaults(func=cmd_status)
    restore = sub.add_parser(
        "restore-database", parents=[common], help="put back the hub database's last good backup"
    )
    restore.add_argument(
        "--label-studio", action="store_true", help="Label Studio's database instead"
    )
    restore.set_defaults(func=cmd_restore_database)

    users = sub.add_parser("users", help="manage workbench users")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", parents=[common], help="add a user, print the password")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="make the user a hub admin")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    reset = users_sub.add_parser("reset-password", parents=[common], help="set a new password")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    users_sub.add_parser("list", parents=[common], help="list users")
    users.set_defaults(func=cmd_users)
    _job_parser(sub, common)
    _tensorboard_parser(sub)
    _serve_parser(sub)
    _label_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _apply_options(args)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 2
    except DamagedStateFile as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
