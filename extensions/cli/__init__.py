"""The ``hubforge`` command: up, down, status, users, job, tensorboard, serve, label,
base-model, schedule.

Each capability is a module here with its commands and its sub-parser: up (up.py, with
first_admin, helper, readiness, service_accounts and stopping), the other workbench commands
(workbench_commands.py), jobs.py, tensorboard.py, serve.py, label.py, automl.py and
schedule.py;
common.py holds what they share."""

from __future__ import annotations

import argparse
import sys

from .. import deferred_imports
from ..atomic import DamagedStateFile
from ..workbench import ConfigError
from .automl import _automl_parser
from .common import _apply_options
from .jobs import _job_parser
from .label import _label_parser
from .schedule import _schedule_parser
from .serve import _serve_parser
from .tensorboard import _tensorboard_parser
from .up import _up_parser
from .workbench_commands import _workbench_parsers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubforge", description="Hubforge data-science workbench")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="workbench data folder (default ~/.hubforge)")
    common.add_argument("--config", help="hubforge_config.py to load")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _up_parser(sub, common)
    _workbench_parsers(sub, common)
    _job_parser(sub, common)
    _tensorboard_parser(sub)
    _serve_parser(sub)
    _label_parser(sub)
    _automl_parser(sub)
    _schedule_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _apply_options(args)
    deferred_imports.defer()  # exports import TensorFlow: without what Keras imports unused
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
