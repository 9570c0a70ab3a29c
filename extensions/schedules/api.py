"""``hubforge.schedules``: run a notebook on a schedule, kept by the workbench (#35).

The hubforge service keeps the schedule and starts every run as one of your jobs, whether
or not you are logged in; each run keeps the notebook with its outputs
(``run.executed_notebook``). Needs a workbench (inside a Hubforge server, or ``url=`` and
``token=``)::

    from hubforge import schedules
    nightly = schedules.create("train.ipynb", "0 2 * * *", params={"epochs": 20},
                               timezone="Europe/Berlin")
    schedules.list()[0].runs[-1].executed_notebook
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..client import ServiceClient, ServiceError
from ..jobs.api import Job, _inside_home, _slug, default_backend
from ..jobs.errors import JobError
from .cron import ScheduleError
from .store import ID


class Run:
    """One run: ``number``, ``due`` (its cron time), ``state`` (planned, queued, pending,
    running, succeeded, failed, cancelled), ``reason``, ``job`` and ``executed_notebook``."""

    def __init__(self, record: dict[str, Any]):
        self._record = record

    def __repr__(self) -> str:
        return f"<Run {self.number} {self.state} due {self.due}>"

    number = property(lambda self: self._record["number"])
    due = property(lambda self: self._record["due"])
    state = property(lambda self: self._record["state"])
    reason = property(lambda self: self._record.get("reason", ""))
    job_id = property(lambda self: self._record["job"])
    record = property(lambda self: dict(self._record))

    @property
    def executed_notebook(self) -> str | None:
        """The notebook with this run's outputs (a path you can open), once it started."""
        return self._record.get("executed_notebook")

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while it runs or before it started)."""
        start, end = self._record.get("started"), self._record.get("ended")
        return end - start if start and end else None

    @property
    def job(self) -> Job | None:
        """The run's job (None before it was submitted)."""
        if self.state == "planned":
            return None
        backend = default_backend()
        return Job(backend.get("", self.job_id), backend)


class Schedule:
    """A handle on one schedule; properties read what was last fetched (``refresh()``)."""

    def __init__(self, record: dict[str, Any], client: ServiceClient):
        self._record = record
        self._client = client
        self._path = f"schedules/{record['id']}?owner={quote(record['owner'])}"

    def __repr__(self) -> str:
        paused = " paused" if self.paused else ""
        return f"<Schedule {self.id} {self.name!r} {self.cron!r}{paused}>"

    id = property(lambda self: self._record["id"])
    name = property(lambda self: self._record["name"])
    cron = property(lambda self: self._record["cron"])
    timezone = property(lambda self: self._record["timezone"])
    params = property(lambda self: dict(self._record["params"]))
    paused = property(lambda self: self._record["paused"])
    description = property(lambda self: self._record.get("description", self.cron))
    record = property(lambda self: dict(self._record))

    @property
    def next(self) -> list[str]:
        """The next five run times, in words."""
        return [t["words"] for t in self._record.get("next", [])]

    @property
    def runs(self) -> list[Run]:
        """Its runs, oldest first (the newest 200 are kept)."""
        return [Run(r) for r in self._record["runs"]]

    def refresh(self) -> Schedule:
        self._record = _call(self._client, "GET", self._path)
        return self

    def pause(self) -> Schedule:
        self._record = _call(self._client, "PATCH", self._path, json={"paused": True})
        return self

    def resume(self) -> Schedule:
        """Runs again from the next time on (no catching up on the pause)."""
        self._record = _call(self._client, "PATCH", self._path, json={"paused": False})
        return self

    def update_notebook(self, notebook: str | Path | None = None) -> Schedule:
        """Runs from now on run the notebook as it is now (by default the one scheduled)."""
        path = notebook or self._record.get("path")
        if not path:
            raise ScheduleError("update_notebook(notebook): which notebook to run from now on")
        body = {"notebook": _read_notebook(path)[0]}
        self._record = _call(self._client, "PATCH", f"schedules/{self.id}", json=body)
        return self

    def delete(self) -> None:
        """No more runs; past runs' jobs and executed notebooks stay."""
        _call(self._client, "DELETE", f"schedules/{self.id}")


def _client(url: str | None = None, token: str | None = None) -> ServiceClient:
    try:
        return ServiceClient(url, token)
    except ServiceError as e:
        raise ScheduleError(
            f"{e}. Schedules are kept by the hubforge service: start the workbench "
            "(`hubforge up`) and use them from a Hubforge server"
        ) from None


def _call(client: ServiceClient, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return client.request(method, path, **kwargs)
    except ServiceError as e:
        if e.status in (400, 403, 404, 409, 413):
            raise ScheduleError(str(e).removeprefix("hubforge service: ")) from None
        raise


def _read_notebook(notebook: str | Path) -> tuple[dict[str, Any], str]:
    """The notebook's JSON and its path relative to the home folder."""
    try:
        path = _inside_home(Path(notebook))
    except JobError as e:
        raise ScheduleError(str(e)) from None
    if path.suffix != ".ipynb":
        raise ScheduleError(f"{path.name}: schedule a notebook (.ipynb)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScheduleError(f"No notebook {notebook!s}") from None
    except (OSError, ValueError) as e:
        raise ScheduleError(f"{notebook!s} is not a notebook to read ({e})") from None
    home = _inside_home(Path("~"))
    return data, str(path.relative_to(home))


def create(
    notebook: str | Path,
    cron: str,
    params: dict[str, Any] | None = None,
    workers: int = 1,
    gpus_per_worker: int = 0,
    timezone: str = "UTC",
    notify: dict[str, Any] | None = None,
    missed: str = "once",
    name: str | None = None,
    url: str | None = None,
    token: str | None = None,
) -> Schedule:
    """Run ``notebook`` (a path in your home) at the times of ``cron`` (five fields, e.g.
    ``"0 2 * * *"``: 02:00 every day) in ``timezone``. The notebook is copied now: later
    edits run only after ``update_notebook()``. ``missed``: a run missed while the workbench
    was down runs once when it is back (``"once"``) or waits for the next time
    (``"skip"``)."""
    data, path = _read_notebook(notebook)
    client = _client(url, token)
    body: dict[str, Any] = {
        "notebook": data,
        "path": path,
        "cron": cron,
        "timezone": timezone,
        "params": params or {},
        "workers": workers,
        "gpus_per_worker": gpus_per_worker,
        "missed": missed,
        "name": name or _slug(Path(path).stem),
    }
    if notify is not None:
        body["notify"] = notify
    return Schedule(_call(client, "POST", "schedules", json=body), client)


def list_schedules(
    everyone: bool = False, url: str | None = None, token: str | None = None
) -> list[Schedule]:
    """Your schedules, oldest first (``everyone``: every user's, for admins)."""
    client = _client(url, token)
    found = _call(client, "GET", "schedules?all=1" if everyone else "schedules")
    return [Schedule(r, client) for r in found["schedules"]]


def get(
    schedule_id: str, owner: str | None = None, url: str | None = None, token: str | None = None
) -> Schedule:
    """Your schedule ``schedule_id`` (e.g. "s-1a2b3c4d"); admins: ``owner``'s, to see its
    runs, pause or resume it."""
    if not isinstance(schedule_id, str) or not ID.fullmatch(schedule_id):
        raise ScheduleError(f"No schedule {schedule_id!r}: ids look like s-1a2b3c4d")
    client = _client(url, token)
    query = f"?owner={quote(owner)}" if owner else ""
    return Schedule(_call(client, "GET", f"schedules/{schedule_id}{query}"), client)


def explain(cron: str, timezone: str = "UTC") -> dict[str, Any]:
    """``cron`` in words and its next five run times (the cron helper), without a service."""
    import datetime as dt

    from .cron import check_cron, describe, in_words, next_times

    now = dt.datetime.now(dt.UTC)
    times = next_times(check_cron(cron), timezone, now)
    return {"description": describe(cron), "next": [in_words(t, now) for t in times]}
