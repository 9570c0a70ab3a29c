"""The commands on a whole workbench besides `up`: down, status, users, restore-database."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from .. import lifecycle
from ..atomic import write_text
from ..processes import sweep
from ..workbench import Workbench, load_workbench
from .common import _store, running
from .service_accounts import _as_service
from .stopping import _stop_jobs


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

    from ..client import ServiceClient, ServiceError

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
    waiting = status.get("queue") or []
    print(f"  queue: {len(waiting)} job{'s' if len(waiting) != 1 else ''} waiting")
    for job in waiting:
        print(
            f"    #{job['position']} {job['owner']}/{job['id']} ({job['priority']}, "
            f"{job['gpus']} GPU{'s' if job['gpus'] != 1 else ''}, waiting {job['waiting_s']} s): "
            f"{job['reason']}"
        )
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


def _workbench_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """down, status, restore-database and users, in that order."""
    _down_parser(sub, common)
    sub.add_parser("status", parents=[common], help="is it running?").set_defaults(func=cmd_status)
    restore = sub.add_parser(
        "restore-database",
        parents=[common],
        help="put back the hub database's last good backup",
    )
    restore.add_argument(
        "--label-studio", action="store_true", help="Label Studio's database instead"
    )
    restore.set_defaults(func=cmd_restore_database)
    _users_parser(sub, common)


def _down_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    down = sub.add_parser("down", parents=[common], help="stop the workbench")
    for option in (
        "--ip",
        "--port",
        "--base-url",
    ):  # `make down ARGS=...` with up's ARGS
        down.add_argument(option, help=argparse.SUPPRESS)
    down.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    down.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
    down.add_argument(
        "--keep-jobs",
        action="store_true",
        help="leave running training jobs running (the next `up` lists them)",
    )
    down.set_defaults(func=cmd_down)


def _users_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
