"""What the ``hubforge`` commands share: options, the workbench they act on, its record."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import lifecycle
from ..atomic import read_json
from ..workbench import Workbench

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


def _data_dir_flag(workbench: Workbench) -> str:
    if lifecycle.remembered() == workbench.data_dir:
        return ""
    return f" --data-dir {workbench.data_dir}"


def add_notify_options(parser: argparse.ArgumentParser) -> None:
    """--notify, --email, --webhook: be told when a job or a scheduled run ends."""
    parser.add_argument(
        "--notify",
        choices=["failure", "success", "always"],
        help="when to tell you (with --email and/or --webhook; default: on failure)",
    )
    parser.add_argument("--email", action="store_true", help="by e-mail, to your address")
    parser.add_argument("--webhook", metavar="URL", help="a JSON POST to a URL an admin allows")


def notify_of(args: argparse.Namespace) -> dict | None:
    """The ``notify`` settings the options ask for (None: none)."""
    if not (args.email or args.webhook):
        if args.notify:
            raise SystemExit("error: --notify needs --email and/or --webhook URL")
        return None
    return {"on": args.notify or "failure", "email": args.email, "webhook": args.webhook}
