"""The contract every job backend (local processes, Kubernetes) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from .spec import JobSpec


class JobBackend(ABC):
    """Runs jobs for owners; records are JSON-able dicts (see LocalJobBackend for fields)."""

    #: True when the service hands out this machine's GPUs to jobs (CUDA_VISIBLE_DEVICES);
    #: False when a cluster's scheduler does (nvidia.com/gpu limits).
    local_devices = True

    @classmethod
    @abstractmethod
    def from_workbench(cls, workbench: Any) -> JobBackend:
        """The backend the hubforge service runs, configured from the Workbench settings."""

    @abstractmethod
    def submit(
        self, owner: str, spec: JobSpec, script: str, job_id: str | None = None
    ) -> dict[str, Any]:
        """Start a job (``job_id`` generated unless given); returns its record."""

    @abstractmethod
    def get(self, owner: str, job_id: str) -> dict[str, Any]:
        """The job's record with a fresh status; JobNotFound for another owner's job."""

    @abstractmethod
    def list(self, owner: str) -> list[dict[str, Any]]:
        """The owner's jobs, newest first."""

    @abstractmethod
    def cancel(self, owner: str, job_id: str) -> dict[str, Any]:
        """Stop every process of the job."""

    @abstractmethod
    def logs(self, owner: str, job_id: str, replica: str, offset: int = 0) -> tuple[str, int]:
        """Log text of one replica from byte ``offset``; returns (text, next offset)."""

    @abstractmethod
    def progress(self, owner: str, job_id: str) -> dict[str, Any]:
        """Epoch, step, metrics and history read from the job's progress records."""
