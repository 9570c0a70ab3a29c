"""Scheduled notebook runs (#35), kept by the workbench rather than a user's server.

For users: :func:`create`, :func:`list`, :func:`get` (:mod:`.api`, through the hubforge
service). Inside the service: cron expressions (:mod:`.cron`), when a run starts
(:mod:`.planner`), the schedules' store (:mod:`.store`), the pass that submits each run as an
ordinary job and follows it (:mod:`.runs`), and the job that runs the notebook
(:mod:`.executor`)."""

from .api import Run, Schedule, create, explain, get, list_schedules
from .cron import ScheduleError, check_cron, describe, in_words, next_times
from .planner import Plan, plan
from .store import ScheduleNotFound, Schedules, job_id

list = list_schedules  # hubforge.schedules.list(), as the issue names it

__all__ = [
    "Plan",
    "Run",
    "Schedule",
    "ScheduleError",
    "ScheduleNotFound",
    "Schedules",
    "check_cron",
    "create",
    "describe",
    "explain",
    "get",
    "in_words",
    "job_id",
    "list",
    "list_schedules",
    "next_times",
    "plan",
]
