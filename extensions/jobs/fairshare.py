"""The local queue's decisions, with no I/O: which queued jobs start now, in what order the rest
wait and why, and which running jobs a waiting one may preempt (issue #33).

Order: higher priority class first; within a class, the owner whose recent use is lowest
first (GPU-seconds, and CPU-slot-seconds for jobs without GPUs, decaying with a half-life),
then the older submission. Choosing several jobs at once charges each pick to its owner as if
it had run for a while (``PICK_CHARGE``), so one owner's ten jobs never all go ahead of a
teammate's one. Jobs start in that order; one that does not fit blocks every later job that
needs the same kind of capacity (no small job overtakes a waiting big one forever), while a job
that needs none of it may still start (CPU-only work beside a GPU job that waits).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

HALF_LIFE = 3600.0  # seconds for recent use to count half
PICK_CHARGE = 600.0  # seconds of use a pick counts for while deciding several at once


@dataclass(frozen=True)
class PriorityClass:
    """A named priority an admin configures; ``preemptible`` work may be stopped (and
    requeued, to resume from its checkpoint) for work of a higher class."""

    name: str
    value: int
    preemptible: bool = False
    users: tuple[str, ...] | None = None  # who may use it (None: everyone)


DEFAULT_CLASSES = (
    PriorityClass("interactive", 300),
    PriorityClass("normal", 200),
    PriorityClass("batch", 100, preemptible=True),
)


@dataclass(frozen=True)
class Request:
    """What a job asks of the machine: ``gpus`` devices and ``cpus`` slots."""

    id: str
    owner: str
    gpus: int = 0
    cpus: int = 1
    priority: str = "normal"
    submitted: float = 0.0


@dataclass(frozen=True)
class Running:
    """A job that holds capacity now."""

    request: Request
    started: float


@dataclass
class Capacity:
    """What is free now (or in all)."""

    gpus: int
    cpus: int

    def fits(self, request: Request) -> bool:
        return request.gpus <= self.gpus and request.cpus <= self.cpus

    def take(self, request: Request) -> None:
        self.gpus -= request.gpus
        self.cpus -= request.cpus


def weight(request: Request) -> float:
    """How much a second of the job counts against its owner: one per GPU; a job without
    GPUs a tenth per CPU slot (ten one-slot CPU jobs weigh as much as one GPU job)."""
    return float(request.gpus) if request.gpus else 0.1 * request.cpus


@dataclass
class Usage:
    """Recent use per owner, decaying with ``half_life``: (value, at which time)."""

    half_life: float = HALF_LIFE
    values: dict[str, tuple[float, float]] = field(default_factory=dict)

    def of(self, owner: str, now: float) -> float:
        value, at = self.values.get(owner, (0.0, now))
        return value * math.pow(0.5, max(0.0, now - at) / self.half_life)

    def add(self, owner: str, amount: float, now: float) -> None:
        self.values[owner] = (self.of(owner, now) + amount, now)

    def charge(self, running: Iterable[Running], since: float, now: float) -> None:
        """Charge running jobs for the time between ``since`` and ``now``."""
        for job in running:
            seconds = max(0.0, now - max(since, job.started))
            if seconds:
                self.add(job.request.owner, weight(job.request) * seconds, now)

    def to_dict(self) -> dict[str, Any]:
        return {"half_life": self.half_life, "values": {k: list(v) for k, v in self.values.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        values = {k: (float(v[0]), float(v[1])) for k, v in (data.get("values") or {}).items()}
        return cls(float(data.get("half_life", HALF_LIFE)), values)


def classes_from_config(entries: Iterable[Any]) -> tuple[PriorityClass, ...]:
    """Priority classes from settings (``[{"name", "value", "preemptible"?, "users"?}]``);
    ValueError naming what to fix. ``normal`` must be one: it is what a job gets unasked."""
    found = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"{entry!r}: give each class as {{'name': 'batch', 'value': 100}}")
        unknown = set(entry) - {"name", "value", "preemptible", "users"}
        if unknown:
            raise ValueError(f"class {entry['name']!r}: unknown key(s) {sorted(unknown)}")
        value = entry.get("value")
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"class {entry['name']!r}: 'value' must be a whole number")
        users = entry.get("users")
        if users is not None and not (
            isinstance(users, list) and all(isinstance(u, str) for u in users)
        ):
            raise ValueError(f"class {entry['name']!r}: 'users' must be a list of user names")
        found.append(
            PriorityClass(
                entry["name"],
                value,
                bool(entry.get("preemptible", False)),
                tuple(users) if users is not None else None,
            )
        )
    names = [c.name for c in found]
    if len(set(names)) != len(names):
        raise ValueError(f"priority classes {names}: each name once")
    if "normal" not in names:
        raise ValueError("the priority classes must include 'normal' (what a job gets unasked)")
    return tuple(found)


def may_use(cls: PriorityClass, user: str) -> bool:
    """Whether ``user`` may submit at ``cls`` (a class without a user list: everyone)."""
    return cls.users is None or user in cls.users


class UnknownPriority(ValueError):
    """A priority class that is not configured; the message lists those that are."""


def class_of(name: str, classes: Iterable[PriorityClass]) -> PriorityClass:
    by_name = {c.name: c for c in classes}
    if name not in by_name:
        raise UnknownPriority(
            f"no priority class {name!r}: use one of {', '.join(sorted(by_name))}"
        )
    return by_name[name]


def ordered(
    queued: Iterable[Request],
    usage: Usage,
    classes: Iterable[PriorityClass],
    now: float,
    running: Iterable[Request] = (),
) -> list[Request]:
    """The waiting jobs in the order they start (see the module's docstring). Between
    owners of equal recent use, the one holding less now (``running``) goes first: GPUs
    free one at a time, and one owner would otherwise get two in a row before the first
    was charged."""
    classes = tuple(classes)
    charged: dict[str, float] = {}
    holding: dict[str, float] = {}
    for job in running:
        holding[job.owner] = holding.get(job.owner, 0.0) + weight(job)
    left = sorted(queued, key=lambda r: (r.submitted, r.id))
    result: list[Request] = []
    while left:

        def key(r: Request) -> tuple[int, float, float, float]:
            # whole GPU-seconds: use that has all but decayed counts as none
            use = math.floor(usage.of(r.owner, now) + charged.get(r.owner, 0.0))
            return (
                -class_of(r.priority, classes).value,
                use,
                holding.get(r.owner, 0.0),
                r.submitted,
            )

        pick = min(left, key=key)
        left.remove(pick)
        result.append(pick)
        charged[pick.owner] = charged.get(pick.owner, 0.0) + weight(pick) * PICK_CHARGE
    return result


def to_start(
    queued: Iterable[Request],
    free: Capacity,
    usage: Usage,
    classes: Iterable[PriorityClass],
    now: float,
    running: Iterable[Request] = (),
) -> list[Request]:
    """The jobs to start now, in order: each fits what the ones before it left; a job that
    does not fit blocks later ones that need the kind of capacity it waits for."""
    free = Capacity(free.gpus, free.cpus)
    blocked_gpus = blocked_cpus = False
    starting = []
    for request in ordered(queued, usage, classes, now, running):
        needs_blocked = (request.gpus and blocked_gpus) or (request.cpus and blocked_cpus)
        if not needs_blocked and free.fits(request):
            free.take(request)
            starting.append(request)
            continue
        blocked_gpus = blocked_gpus or request.gpus > free.gpus
        blocked_cpus = blocked_cpus or request.cpus > free.cpus
    return starting


def waiting_reasons(
    queued: Iterable[Request],
    free: Capacity,
    usage: Usage,
    classes: Iterable[PriorityClass],
    now: float,
    count_slots: bool = True,
    running: Iterable[Request] = (),
) -> dict[str, dict[str, Any]]:
    """For each job that does not start now: its position (1 = next) and why it waits, in
    words for the sidebar, the CLI and REST (``count_slots`` False: the machine does not limit
    CPU slots, the words name GPUs only)."""
    running = tuple(running)
    order = ordered(queued, usage, classes, now, running)
    starting = {r.id for r in to_start(order, free, usage, classes, now, running)}
    waiting = [r for r in order if r.id not in starting]
    result = {}
    for position, request in enumerate(waiting, start=1):
        ahead = waiting[: position - 1]
        others = sorted({r.owner for r in ahead if r.owner != request.owner})
        wants = []
        if request.gpus:
            wants.append(f"{request.gpus} GPU{'s' if request.gpus != 1 else ''}")
        if request.cpus and count_slots:
            wants.append(f"{request.cpus} CPU slot{'s' if request.cpus != 1 else ''}")
        room = f"{free.gpus} GPUs, {free.cpus} slots free" if count_slots else f"{free.gpus} free"
        reason = f"waiting for {' and '.join(wants)} ({room})"
        if ahead:
            reason += f"; {len(ahead)} job{'s' if len(ahead) != 1 else ''} ahead" + (
                f", of {', '.join(others)}" if others else ", all yours"
            )
        else:
            reason += "; yours is next"
        result[request.id] = {"position": position, "reason": reason}
    return result


def preemptions(
    waiting: Request,
    running: Iterable[Running],
    free: Capacity,
    classes: Iterable[PriorityClass],
) -> list[Running]:
    """The running jobs to stop (and requeue) so that ``waiting`` fits: only preemptible
    ones of a lower class, the most recently started first (they lose the least work); []
    when stopping them all would still not make room (then nothing is stopped)."""
    classes = tuple(classes)
    level = class_of(waiting.priority, classes).value
    victims = [
        job
        for job in running
        if class_of(job.request.priority, classes).preemptible
        and class_of(job.request.priority, classes).value < level
    ]
    victims.sort(key=lambda j: (class_of(j.request.priority, classes).value, -j.started))
    room = Capacity(free.gpus, free.cpus)
    chosen = []
    for job in victims:
        if room.fits(waiting):
            break
        chosen.append(job)
        room.gpus += job.request.gpus
        room.cpus += job.request.cpus
    return chosen if room.fits(waiting) else []
