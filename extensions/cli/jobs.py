"""`hubforge job`: submit notebooks and scripts as training jobs, list, show, follow and
cancel them."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from .common import add_notify_options, notify_of


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
    from ..jobs.display import progress_line
    from ..jobs.store import TERMINAL

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
    from .. import jobs

    job = jobs.submit(
        args.notebook,
        workers=args.workers,
        gpus_per_worker=args.gpus,
        params=dict(args.param or []),
        name=args.name,
        max_restarts=args.max_restarts,
        priority=args.priority,
        notify=notify_of(args),
    )
    for warning in job.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    print(f"Submitted {job.id}; follow it with `hubforge job show {job.id}`")
    if job.record.get("queue"):  # no capacity free now: it starts by itself later
        print(f"Queued: {_queued(job.record)}")
    if args.follow:
        return 0 if _follow_progress(job) == "succeeded" else 1
    return 0


def _job_list(args: argparse.Namespace) -> int:
    from .. import jobs

    for job in jobs.list_jobs():
        r = job.record
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        priority = r["spec"].get("priority", "normal")
        print(
            f"{r['id']:<24} {r['state']:<10} workers={r['spec']['workers']} {created} "
            f"priority={priority}"
        )
        if r.get("queue"):
            print(f"  {_queued(r)}")
    return 0


def _queued(record: dict) -> str:
    """Where a waiting job stands: "#2 in the queue: waiting for 1 GPU (0 free); ..."."""
    return f"#{record['queue']['position']} in the queue: {record['queue']['reason']}"


def _job_show(args: argparse.Namespace) -> int:
    from .. import jobs
    from ..jobs.display import progress_line

    job = jobs.get(args.id)
    _print_job(job.record)
    print("  " + progress_line(job.record["state"], job.progress))
    print(f"  TensorBoard: hubforge tensorboard open {job.id}")
    return 0


def _job_logs(args: argparse.Namespace) -> int:
    from .. import jobs

    output = jobs.get(args.id).logs(args.replica, follow=args.follow)
    for text in [output] if isinstance(output, str) else output:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def _job_cancel(args: argparse.Namespace) -> int:
    from .. import jobs

    job = jobs.get(args.id).cancel()
    print(f"{job.id}: {job.record['state']}")
    return 0


def _print_tuning(record: dict) -> None:
    goal = record["objective"]
    print(
        f"{record['id']}  {record['state']}  {len(record['trials'])}/{record['max_trials']} "
        f"trials, {record['parallel']} at a time  {record['algorithm']}  "
        f"{goal['direction']} {goal['name']}"
    )
    if record.get("reason"):
        print(f"  {record['reason']}")
    for trial in record["trials"]:
        value = "" if trial.get("objective") is None else f"{trial['objective']:.6g}"
        best = "  <- best" if trial["id"] == record.get("best") else ""
        params = " ".join(f"{k}={v}" for k, v in trial["params"].items())
        further = (trial.get("schedule") or {}).get("continues")
        further = f"  (trial {further} further)" if further else ""
        print(f"  trial {trial['id']:>3}  {trial['state']:<9} {value:>12}  {params}{further}{best}")
        if trial.get("message") and trial["state"] == "failed":
            print(f"             {trial['message']}")


def _space(text: str) -> dict:
    try:
        space = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            'JSON like \'{"lr": {"min": 0.0001, "max": 0.1, "log": true}, "units": [16, 32]}\''
        ) from None
    if not isinstance(space, dict):
        raise argparse.ArgumentTypeError("a JSON object: a range or a list per parameter")
    return space


def _job_tune(args: argparse.Namespace) -> int:
    from .. import jobs

    tuning = jobs.tune(
        args.notebook,
        args.space,
        args.objective,
        max_trials=args.max_trials,
        parallel=args.parallel,
        algorithm=args.algorithm,
        max_epochs=args.max_epochs,
        factor=args.factor,
        workers=args.workers,
        gpus_per_worker=args.gpus,
    )
    print(f"Tuning {tuning.id}; see it with `hubforge job tuning {tuning.id}`")
    if not args.follow:
        return 0
    shown = -1
    while True:
        state = tuning.state
        done = sum(t["state"] in ("succeeded", "failed") for t in tuning.record["trials"])
        if done != shown:
            print(f"{done}/{args.max_trials} trials done", file=sys.stderr, flush=True)
            shown = done
        if state != "running":
            break
        time.sleep(1)
    _print_tuning(tuning.record)
    return 0 if state == "succeeded" else 1


def _job_tunings(args: argparse.Namespace) -> int:
    from .. import jobs

    for tuning in jobs.list_tunings():
        r = tuning.record
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        print(
            f"{r['id']:<24} {r['state']:<10} {len(r['trials'])}/{r['max_trials']} trials {created}"
        )
    return 0


def _job_tuning(args: argparse.Namespace) -> int:
    from .. import jobs

    tuning = jobs.get_tuning(args.id)
    if args.cancel:
        tuning.cancel()
    _print_tuning(tuning.record)
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    from .. import jobs

    actions = {
        "submit": _job_submit,
        "list": _job_list,
        "show": _job_show,
        "logs": _job_logs,
        "cancel": _job_cancel,
        "tune": _job_tune,
        "tunings": _job_tunings,
        "tuning": _job_tuning,
    }
    try:
        return actions[args.job_command](args)
    except (jobs.JobError, jobs.JobNotFound) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


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
    submit.add_argument(
        "--priority",
        default="normal",
        metavar="CLASS",
        help="priority class in the queue: interactive, normal (default) or batch",
    )
    submit.add_argument("--follow", action="store_true", help="show progress until it ends")
    add_notify_options(submit)
    job_sub.add_parser("list", parents=[common], help="your jobs, newest first")
    show = job_sub.add_parser("show", parents=[common], help="state, replicas, progress")
    show.add_argument("id")
    logs = job_sub.add_parser("logs", parents=[common], help="a replica's output")
    logs.add_argument("id")
    logs.add_argument("--replica", default="worker-0", help="worker-N (default worker-0)")
    logs.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    cancel = job_sub.add_parser("cancel", parents=[common], help="stop every process of a job")
    cancel.add_argument("id")
    _tune_parsers(job_sub, common)
    job.set_defaults(func=cmd_job)


def _tune_parsers(job_sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tune = job_sub.add_parser(
        "tune", parents=[common], help="search a notebook's parameters, each trial a job"
    )
    tune.add_argument("notebook", help="notebook (.ipynb) in your home, with a 'parameters' cell")
    tune.add_argument(
        "--space",
        type=_space,
        required=True,
        help='JSON: per parameter a range {"min": .., "max": .., "log": true} or a list',
    )
    tune.add_argument(
        "--objective",
        required=True,
        help="metric to optimise: a Keras history metric, or one given to distribute.report "
        "(maximised unless it ends in loss/error)",
    )
    tune.add_argument("--max-trials", type=int, default=10, help="trials in all (default 10)")
    tune.add_argument("--parallel", type=int, default=2, help="trials at once (default 2)")
    tune.add_argument(
        "--algorithm",
        default="random",
        choices=["random", "bayesian", "hyperband"],
        help="default random",
    )
    tune.add_argument(
        "--max-epochs",
        type=int,
        help="hyperband: the most epochs a trial trains (it sets the notebook's 'epochs')",
    )
    tune.add_argument(
        "--factor", type=int, default=3, help="hyperband: 1 trial in FACTOR goes on (default 3)"
    )
    tune.add_argument("--workers", type=int, default=1, help="workers per trial (default 1)")
    tune.add_argument("--gpus", type=int, default=0, help="GPUs per worker (default 0)")
    tune.add_argument(
        "--follow", action="store_true", help="wait for the search, then show its trials"
    )
    job_sub.add_parser("tunings", parents=[common], help="your tuning runs")
    tuning = job_sub.add_parser("tuning", parents=[common], help="a run's trials and best")
    tuning.add_argument("id")
    tuning.add_argument("--cancel", action="store_true", help="stop the search and its trials")
