"""The service's pass over schedules (#35), every second: each planned run is submitted as
its owner's job (their quota, the queue, their account), and each submitted run follows its
job to the end (state, times, the executed notebook).

A run is recorded ``planned`` before its job is submitted, with a job id fixed by schedule
and number: after a crash between the two, the next pass finds the job and only records it,
so a run is never lost nor doubled."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from collections.abc import Callable
from typing import Any

from ..jobs.errors import JobError, JobNotFound
from ..jobs.spec import JobSpec
from ..jobs.tuning import Waiting
from ..notify import Notifications
from .executor import job_script
from .store import ENDED, ScheduleNotFound, Schedules

log = logging.getLogger("hubforge.schedules")


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def _reason(text: Any) -> str:
    """A job's reason as a run keeps it: one line of at most 500 characters (the job's
    record is its owner's file: whatever it holds)."""
    line = " ".join(str(text or "").split())
    return line[:500]


def job_name(schedule: dict[str, Any]) -> str:
    """A valid job name from the schedule's name (its jobs are listed under it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(schedule.get("name", "")).lower()).strip("-")
    return slug[:40].strip("-") or "scheduled"


ENDINGS = {"succeeded": "succeeded", "failed": "failed", "cancelled": "was cancelled"}


def lab_path(owner: str, executed: str | None) -> str | None:
    """Where the owner's JupyterLab shows a job's file: ``hdfs/users/<owner>/jobs/...`` (their
    ~/hdfs holds their own area at the same place as the whole data mount)."""
    mark = f"/users/{owner}/jobs/"
    if not executed or mark not in executed:
        return None
    return "hdfs" + executed[executed.index(mark) :]


def run_message(schedule: dict[str, Any], run: dict[str, Any], public_url: str = "") -> dict:
    """What a notification of an ended run says: subject, text, and the data for webhooks."""
    state, number, name = run["state"], run["number"], schedule["name"]
    subject = f"[Hubforge] {name}: run {number} {ENDINGS.get(state, state)}"
    lines = [
        f"Schedule {name} ({schedule['id']}, '{schedule['cron']}' {schedule['timezone']}), "
        f"run {number}, due {run['due']}: {state}."
    ]
    if run.get("reason"):
        lines.append(f"{'Error' if state == 'failed' else 'Reason'}: {run['reason']}")
    if run.get("started") and run.get("ended"):
        lines.append(f"Duration: {run['ended'] - run['started']:.0f} s")
    link = None
    notebook = run.get("executed_notebook")
    if notebook:
        lines.append(f"Executed notebook: {notebook}")
        in_lab = lab_path(schedule["owner"], notebook)
        if public_url and in_lab:
            link = f"{public_url.rstrip('/')}/hub/user-redirect/lab/tree/{in_lab}"
            lines.append(f"Open it: {link}")
    data = {
        "schedule": schedule["id"],
        "name": name,
        "owner": schedule["owner"],
        "run": number,
        "due": run["due"],
        "state": state,
        "reason": run.get("reason", ""),
        "job": run["job"],
        "executed_notebook": notebook,
        "link": link,
    }
    return {"subject": subject, "text": "\n".join(lines), "state": state, "data": data}


class ScheduledRuns:
    """``jobs``: how the service submits a user's job (hubforge.jobs.tuning_handlers.
    ServiceTrialJobs: quotas and the queue); ``notifications``: how the owner is told that
    a run ended, as the schedule asks (hubforge.notify); ``leader``: with several services,
    whether this one is the one that plans, submits and follows (hubforge.schedules.leader)."""

    def __init__(
        self,
        schedules: Schedules,
        jobs: Any,
        notifications: Notifications | None = None,
        now: Callable[[], float] = _now,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self.schedules, self.jobs, self.now = schedules, jobs, now
        self.notifications = notifications
        self.leader = leader  # several services (Kubernetes): whether this one starts runs

    def run_pass(self) -> None:
        if self.leader is not None and not self.leader():
            return
        for step, runs in (
            (self.submit, self.schedules.due),
            (self.follow, self.schedules.following),
        ):
            try:
                found = runs()
            except Exception:  # the next pass tries again; the other half still runs
                log.exception("Schedules' pass (%s)", step.__name__)
                continue
            for schedule, run in found:
                self._guarded(step, schedule, run)

    def _guarded(self, step: Callable, schedule: dict[str, Any], run: dict[str, Any]) -> None:
        try:
            step(schedule, run)
        except ScheduleNotFound:
            return  # deleted meanwhile
        except Exception:  # one bad schedule never stops everyone else's
            log.exception("Schedule %s, run %s", schedule["id"], run["number"])

    def _mark(self, schedule: dict[str, Any], run: dict[str, Any], **fields: Any) -> None:
        self.schedules.mark(schedule["owner"], schedule["id"], run["number"], **fields)

    def submit(self, schedule: dict[str, Any], run: dict[str, Any]) -> None:
        owner = schedule["owner"]
        try:  # submitted before a crash, never recorded: record it now
            job = self.jobs.get(owner, run["job"])
        except JobNotFound:
            job = None
        if job is None:
            spec = JobSpec(
                name=job_name(schedule),
                workers=schedule["workers"],
                gpus_per_worker=schedule["gpus_per_worker"],
                params=dict(schedule["params"]),
            )
            try:  # before the script is made: a run waiting for its turn costs little
                getattr(self.jobs, "check_quota", lambda owner, spec: None)(owner, spec)
            except Waiting as e:
                if run.get("waiting") != str(e):
                    self._mark(schedule, run, waiting=str(e))
                return
            notebook = self.schedules.notebook(owner, schedule["id"])
            title = f"Run {run['number']} of schedule {schedule['name']} ({schedule['id']})"
            script = job_script(notebook, schedule["params"], title)
            try:
                job = self.jobs.submit(owner, spec, script, run["job"])
            except Waiting as e:  # the owner's quota: tried again next pass
                if run.get("waiting") != str(e):
                    self._mark(schedule, run, waiting=str(e))
                return
            except JobError as e:
                self._end(schedule, run, state="failed", reason=f"not submitted: {e}")
                return
        self._mark(schedule, run, state=job["state"], submitted=self.now(), waiting="")
        if job["state"] in ENDED:
            self.follow(schedule, {**run, "state": job["state"]})

    def follow(self, schedule: dict[str, Any], run: dict[str, Any]) -> None:
        try:
            job = self.jobs.get(schedule["owner"], run["job"])
        except JobNotFound:
            self._end(schedule, run, state="failed", reason="its job was removed")
            return
        except JobError as e:  # a damaged record: said, and asked again next pass
            if run.get("reason") != str(e):
                self._mark(schedule, run, reason=str(e))
            return
        state = job["state"]
        fields: dict[str, Any] = {}
        if state == "running" and not run.get("started"):
            fields["started"] = self.now()
        executed = (job.get("artifacts") or {}).get("executed_notebook")
        if executed and run.get("executed_notebook") != executed:
            fields["executed_notebook"] = executed
        if state in ENDED:
            self._end(schedule, run, state=state, reason=_reason(job.get("reason")), **fields)
        elif state != run["state"] or fields:
            self._mark(schedule, run, state=state, **fields)

    def _end(self, schedule: dict[str, Any], run: dict[str, Any], **fields: Any) -> None:
        fields.setdefault("ended", self.now())
        ended = self.schedules.mark(schedule["owner"], schedule["id"], run["number"], **fields)
        settings = schedule.get("notify")
        if self.notifications is None or not settings:
            return
        message = run_message(schedule, ended, self.notifications.public_url)

        def told(what: list[str]) -> None:  # (in the notifier's thread)
            if what:
                with contextlib.suppress(ScheduleNotFound):  # deleted meanwhile
                    self._mark(schedule, ended, notified=what)

        self.notifications.send_later(schedule["owner"], settings, message, told)
