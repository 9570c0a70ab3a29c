"""The contract every job backend (local processes, Kubernetes) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from .errors import JobError
from .spec import JobSpec
from .store import TERMINAL

# One call returns at most this much of a log: a huge log never sits whole in the service's
# memory (callers page with the offset they get back).
LOG_PAGE = 1 << 20


def whole_characters(data: bytes, limit: int) -> bytes:
    """``data`` without a UTF-8 character cut at its end when it is a full page (the next
    page starts with the whole character)."""
    if len(data) < limit:
        return data
    for back in range(1, 4):
        if len(data) <= back:
            break
        byte = data[-back]
        if byte & 0xC0 == 0xC0:  # the lead byte of a sequence that needs more than ``back``
            needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
            return data[:-back] if needed > back else data
        if byte & 0x80 == 0:
            return data
    return data


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
        self,
        owner: str,
        spec: JobSpec,
        script: str,
        job_id: str | None = None,
        queued: bool = False,
    ) -> dict[str, Any]:
        """Start a job (``job_id`` generated unless given); returns its record. ``queued``:
        record it as waiting in the service's queue, started later by ``start_queued``
        (backends whose ``local_devices`` is False are never asked to)."""

    def start_queued(self, owner: str, job_id: str, devices: list[str]) -> None:
        """Start a job recorded as queued, on ``devices``."""
        raise JobError("This job backend has no local queue: its cluster's queue starts jobs")

    @abstractmethod
    def get(self, owner: str, job_id: str) -> dict[str, Any]:
        """The job's record with a fresh status; JobNotFound for another owner's job."""

    @abstractmethod
    def list(self, owner: str) -> list[dict[str, Any]]:
        """The owner's jobs, newest first."""

    def active(self, owner: str) -> list[str]:
        """Ids of the owner's jobs that have not ended (pending, running, restarting; one
        whose record is damaged while it runs), for the per-user limit."""
        return [j["id"] for j in self.list(owner) if j["state"] not in TERMINAL or j.get("running")]

    @abstractmethod
    def cancel(self, owner: str, job_id: str) -> dict[str, Any]:
        """Stop every process of the job."""

    @abstractmethod
    def logs(self, owner: str, job_id: str, replica: str, offset: int = 0) -> tuple[str, int]:
        """Log text of one replica from byte ``offset``, at most LOG_PAGE bytes of it (read
        on until the text is empty); returns (text, next offset)."""

    @abstractmethod
    def progress(self, owner: str, job_id: str) -> dict[str, Any]:
        """Epoch, step, metrics and history read from the job's progress records."""
