"""`hubforge schedule`: notebooks run on a schedule by the workbench (create, list, pause,
resume, delete, runs, explain)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .common import add_notify_options, notify_of
from .jobs import _param

if TYPE_CHECKING:
    from ..schedules import Schedule


def _show(schedule: Schedule) -> None:
    state = "paused" if schedule.paused else "active"
    owner = schedule.record.get("owner", "")
    print(
        f"{schedule.id}  {schedule.name}  {schedule.cron!r} ({schedule.description})  {state}"
        f"  {owner}"
    )
    last = schedule.runs[-1] if schedule.runs else None
    if last is not None:
        print(f"  last run: {last.number} {last.state}  due {last.due}")
    for words in schedule.next[:1]:
        print(f"  next: {words}")


def _runs(schedule: Schedule) -> None:
    print(f"{'RUN':>4}  {'STATE':<10} {'DUE':<26} {'DURATION':>9}  JOB / EXECUTED NOTEBOOK")
    for run in schedule.runs:
        took = f"{run.duration:.0f} s" if run.duration is not None else "-"
        print(f"{run.number:>4}  {run.state:<10} {run.due:<26} {took:>9}  {run.job_id}")
        if run.executed_notebook:
            print(f"{'':>4}  {run.executed_notebook}")
        if run.reason:
            print(f"{'':>4}  {run.reason}")


def cmd_schedule(args: argparse.Namespace) -> int:
    from .. import schedules

    try:
        if args.sched_command == "explain":
            told = schedules.explain(args.cron, args.timezone)
            print(told["description"])
            for words in told["next"]:
                print(f"  {words}")
        elif args.sched_command == "create":
            made = schedules.create(
                args.notebook,
                args.cron,
                params=dict(args.param or []),
                workers=args.workers,
                gpus_per_worker=args.gpus_per_worker,
                timezone=args.timezone,
                missed=args.missed,
                name=args.name,
                notify=notify_of(args),
            )
            print(f"Scheduled {made.id} ({made.name}): {made.description}")
            for words in made.next:
                print(f"  {words}")
        elif args.sched_command == "list":
            for schedule in schedules.list(everyone=args.all):
                _show(schedule)
        else:
            schedule = schedules.get(args.id, owner=getattr(args, "owner", None))
            if args.sched_command == "runs":
                _runs(schedule)
            elif args.sched_command == "pause":
                schedule.pause()
                print(f"Paused {schedule.id}: no runs until `hubforge schedule resume {args.id}`")
            elif args.sched_command == "resume":
                schedule.resume()
                print(f"Resumed {schedule.id}; next: {(schedule.next or ['-'])[0]}")
            else:
                schedule.delete()
                print(f"Deleted {args.id} (its runs' jobs and executed notebooks stay)")
    except schedules.ScheduleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _schedule_parser(sub: argparse._SubParsersAction) -> None:
    sched = sub.add_parser("schedule", help="run a notebook on a schedule, kept by the workbench")
    sched.set_defaults(func=cmd_schedule)
    actions = sched.add_subparsers(dest="sched_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="schedule a notebook (a copy of it as it is now)")
    create.add_argument("notebook", help="a notebook (.ipynb) in your home")
    create.add_argument("cron", help="five fields: minute hour day month weekday, e.g. '0 2 * * *'")
    create.add_argument("--param", type=_param, action="append", metavar="NAME=VALUE")
    create.add_argument("--workers", type=int, default=1)
    create.add_argument("--gpus-per-worker", type=int, default=0)
    create.add_argument("--timezone", default="UTC", help="e.g. Europe/Berlin (default UTC)")
    create.add_argument(
        "--missed",
        choices=["once", "skip"],
        default="once",
        help="a run missed while the workbench was down: run once when back, or skip it",
    )
    create.add_argument("--name", help="shown in lists and job names (default: the notebook's)")
    add_notify_options(create)
    listing = actions.add_parser("list", help="your schedules")
    listing.add_argument("--all", action="store_true", help="every user's (admins)")
    for action, what in (
        ("runs", "a schedule's runs: state, duration, job, executed notebook"),
        ("pause", "no runs until resumed"),
        ("resume", "runs again from the next time on"),
        ("delete", "no more runs (past runs stay)"),
    ):
        one = actions.add_parser(action, help=what)
        one.add_argument("id", help="e.g. s-1a2b3c4d")
        if action != "delete":
            one.add_argument("--owner", metavar="USER", help="another user's (admins)")
    explain = actions.add_parser("explain", help="a cron expression in words, next five times")
    explain.add_argument("cron")
    explain.add_argument("--timezone", default="UTC")
