"""The job spec: what to run, on how many workers, with which resources."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import JobError

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
DEFAULT_MAX_WORKERS = 8


MEMORY = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,6})?(Ki|Mi|Gi|Ti|K|M|G|T|k)?$")


@dataclass
class JobSpec:
    name: str
    workers: int = 1
    gpus_per_worker: int = 0
    cpu: float | None = None
    memory: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    max_restarts: int = 2
    source: str = ""
    devices: list[str] = field(default_factory=list)
    priority: str = "normal"  # a priority class of the queue (see jobs.fairshare)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise JobError(
                f"Unknown job field(s) {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}"
            )
        if "name" not in data:
            raise JobError('Bad job spec: give the job a \'name\', e.g. {"name": "mnist"}')
        try:
            return cls(**data)
        except TypeError as e:
            raise JobError(f"Bad job spec: {e}") from None

    def validate(
        self,
        max_workers: int = DEFAULT_MAX_WORKERS,
        max_gpus: int | None = None,
        gpu_limit: str = "your profile allows",
    ) -> None:
        """Raise JobError listing every problem (``gpu_limit`` says where ``max_gpus``
        comes from)."""
        problems = []
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            problems.append(
                f"name={self.name!r}: use 1-40 lowercase letters, digits or '-', e.g. 'mnist'"
            )
        if not _is_int(self.workers) or not 1 <= self.workers <= max_workers:
            problems.append(f"workers={self.workers!r}: choose between 1 and {max_workers}")
        if not _is_int(self.gpus_per_worker) or self.gpus_per_worker < 0:
            problems.append(f"gpus_per_worker={self.gpus_per_worker!r}: must be an integer >= 0")
        elif max_gpus is not None and self.gpus_per_worker > max_gpus:
            problems.append(
                f"gpus_per_worker={self.gpus_per_worker}: {gpu_limit} at most {max_gpus}; "
                "pick a GPU profile or ask for fewer"
            )
        if not _is_int(self.max_restarts) or not 0 <= self.max_restarts <= 20:
            problems.append(f"max_restarts={self.max_restarts!r}: choose between 0 and 20")
        if self.cpu is not None and (
            not isinstance(self.cpu, int | float)
            or isinstance(self.cpu, bool)
            or not math.isfinite(self.cpu)
            or not 0 < self.cpu <= 1024
        ):
            problems.append(f"cpu={self.cpu!r}: cores as a number > 0, e.g. 4 or 0.5")
        if self.memory is not None and (
            not isinstance(self.memory, str) or not MEMORY.fullmatch(self.memory)
        ):
            problems.append(
                f"memory={self.memory!r}: a Kubernetes quantity such as '16Gi' or '512M'"
            )
        if not isinstance(self.priority, str) or not NAME.fullmatch(self.priority):
            problems.append(f"priority={self.priority!r}: a priority class, e.g. 'normal'")
        if not isinstance(self.params, dict):
            problems.append("params must be a dict of parameter names to values")
        if problems:
            raise JobError("Invalid job:\n  " + "\n  ".join(problems))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
