"""Notebook -> distributed TensorFlow job: ``submit``, ``get``, ``list`` and ``Job``."""

from .api import Job, get, list_jobs, submit
from .errors import JobError, JobNotFound
from .spec import JobSpec

list = list_jobs

__all__ = ["Job", "JobError", "JobNotFound", "JobSpec", "get", "list", "list_jobs", "submit"]
