"""Scheduled notebook runs (#35), kept by the workbench rather than a user's server: cron
expressions (:mod:`.cron`), when a run starts (:mod:`.planner`) and the schedules' store
(:mod:`.store`). The service submits each planned run as an ordinary job."""

from .cron import ScheduleError, check_cron, describe, in_words, next_times
from .planner import Plan, plan
from .store import ScheduleNotFound, Schedules, job_id

__all__ = [
    "Plan",
    "ScheduleError",
    "ScheduleNotFound",
    "Schedules",
    "check_cron",
    "describe",
    "in_words",
    "job_id",
    "next_times",
    "plan",
]
