"""Schedules kept by the workbench, not by a user's server (#35): one folder per schedule,
``<root>/<owner>/<id>/`` with ``schedule.json`` (written atomically) and the notebook as it
was when scheduled (``notebook.ipynb``: later edits of the original change nothing until the
owner asks for ``update_notebook``).

:meth:`Schedules.due` is the service's tick: it records each run it plans (``planned``)
before anything is submitted, and hands back every planned run not yet submitted, so a run
planned before a crash is submitted after it, once: its job id is fixed by the schedule and
the run's number (:func:`job_id`)."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..atomic import DamagedStateFile, read_json, write_json
from .cron import ScheduleError, check_cron, check_timezone
from .planner import check_missed, plan

ID = re.compile(r"s-[a-z0-9]{8}")
OWNER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
KEPT_RUNS = 200  # the newest runs kept in a schedule's history


class ScheduleNotFound(KeyError):
    """No such schedule of this owner (another owner's is not found either)."""


def job_id(schedule_id: str, run: int) -> str:
    return f"{schedule_id}-r{run}"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat()


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


class Schedules:
    def __init__(self, root: str | Path, clock: Callable[[], dt.datetime] = _utc_now):
        self.root = Path(root)
        self.clock = clock

    # -- where ---------------------------------------------------------------------------
    def _folder(self, owner: str, schedule_id: str) -> Path:
        if not isinstance(owner, str) or not OWNER.fullmatch(owner):
            raise ScheduleNotFound(f"No schedule {schedule_id!r}")
        if not isinstance(schedule_id, str) or not ID.fullmatch(schedule_id):
            raise ScheduleNotFound(f"No schedule {schedule_id!r}: ids look like s-1a2b3c4d")
        return self.root / owner / schedule_id

    def _load(self, owner: str, schedule_id: str) -> dict[str, Any]:
        folder = self._folder(owner, schedule_id)
        try:
            record = read_json(folder / "schedule.json")
        except DamagedStateFile as e:
            raise ScheduleError(f"Schedule {schedule_id}: its record is damaged ({e})") from None
        if not isinstance(record, dict) or record.get("owner") != owner:
            raise ScheduleNotFound(f"No schedule {schedule_id!r}")
        return record

    def _save(self, record: dict[str, Any]) -> None:
        record["runs"] = record["runs"][-KEPT_RUNS:]
        write_json(self._folder(record["owner"], record["id"]) / "schedule.json", record)

    # -- the owner's requests ----------------------------------------------------------------
    def create(
        self,
        owner: str,
        notebook: dict[str, Any],
        cron: str,
        timezone: str = "UTC",
        params: dict[str, Any] | None = None,
        workers: int = 1,
        gpus_per_worker: int = 0,
        missed: str = "once",
        name: str = "",
    ) -> dict[str, Any]:
        """A new schedule of ``notebook`` (its JSON: kept as it is now)."""
        if not isinstance(notebook, dict) or "cells" not in notebook:
            raise ScheduleError("notebook: the notebook's JSON (a dict with its cells)")
        check_timezone(timezone)
        check_missed(missed)
        if not isinstance(workers, int) or not 1 <= workers <= 64:
            raise ScheduleError("workers: a whole number from 1 to 64")
        if not isinstance(gpus_per_worker, int) or not 0 <= gpus_per_worker <= 16:
            raise ScheduleError("gpus_per_worker: a whole number from 0 to 16")
        schedule_id = "s-" + secrets.token_hex(4)
        folder = self._folder(owner, schedule_id)
        record = {
            "id": schedule_id,
            "owner": owner,
            "name": name or schedule_id,
            "cron": check_cron(cron),
            "timezone": timezone,
            "params": dict(params or {}),
            "workers": workers,
            "gpus_per_worker": gpus_per_worker,
            "missed": missed,
            "paused": False,
            "created": _iso(self.clock()),
            "covered": _iso(self.clock()),  # runs are planned for cron times after this
            "runs": [],
        }
        folder.mkdir(parents=True)
        write_json(folder / "notebook.ipynb", notebook)
        self._save(record)
        return record

    def get(self, owner: str, schedule_id: str) -> dict[str, Any]:
        return self._load(owner, schedule_id)

    def list(self, owner: str | None = None) -> list[dict[str, Any]]:
        """``owner``'s schedules, or everyone's (for admins), oldest first."""
        found = []
        for folder in sorted(self._folders(owner)):
            try:
                found.append(self._load(folder.parent.name, folder.name))
            except (ScheduleNotFound, ScheduleError):
                continue
        return sorted(found, key=lambda r: r["created"])

    def _folders(self, owner: str | None) -> Iterator[Path]:
        owners = [self.root / owner] if owner else self.root.glob("*")
        for place in owners:
            if place.is_dir() and not place.is_symlink():
                yield from (f for f in place.glob("s-*") if ID.fullmatch(f.name))

    def notebook(self, owner: str, schedule_id: str) -> dict[str, Any]:
        """The notebook as it was scheduled (what every run runs)."""
        self._load(owner, schedule_id)
        return json.loads((self._folder(owner, schedule_id) / "notebook.ipynb").read_text())

    def update_notebook(self, owner: str, schedule_id: str, notebook: dict[str, Any]) -> None:
        """Runs from now on run this version of the notebook."""
        if not isinstance(notebook, dict) or "cells" not in notebook:
            raise ScheduleError("notebook: the notebook's JSON (a dict with its cells)")
        self._load(owner, schedule_id)
        write_json(self._folder(owner, schedule_id) / "notebook.ipynb", notebook)

    def set_paused(self, owner: str, schedule_id: str, paused: bool) -> dict[str, Any]:
        """Pause, or resume: a resumed schedule plans from now (no catching up on the pause)."""
        record = self._load(owner, schedule_id)
        if record["paused"] and not paused:
            record["covered"] = _iso(self.clock())
        record["paused"] = paused
        self._save(record)
        return record

    def delete(self, owner: str, schedule_id: str) -> None:
        """Gone, with its frozen notebook (its runs' jobs and executed notebooks stay)."""
        self._load(owner, schedule_id)
        shutil.rmtree(self._folder(owner, schedule_id))

    # -- the service's tick ------------------------------------------------------------------
    def due(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(schedule, run) for every run to submit now: newly planned ones, and ones planned
        earlier but never marked submitted (a crash in between)."""
        now = self.clock()
        out = []
        for folder in self._folders(None):
            try:
                record = self._load(folder.parent.name, folder.name)
            except (ScheduleNotFound, ScheduleError):
                continue
            if not record["paused"]:
                self._plan(record, now)
            out += [(record, run) for run in record["runs"] if run["state"] == "planned"]
        return out

    def _plan(self, record: dict[str, Any], now: dt.datetime) -> None:
        decided = plan(
            record["cron"], record["timezone"], _parse(record["covered"]), now, record["missed"]
        )
        if decided.covered is None:
            return
        record["covered"] = _iso(decided.covered)
        if decided.run is not None:
            number = (record["runs"][-1]["number"] + 1) if record["runs"] else 1
            record["runs"].append(
                {
                    "number": number,
                    "due": _iso(decided.run),
                    "state": "planned",
                    "job": job_id(record["id"], number),
                    "skipped_before": decided.skipped,
                }
            )
        self._save(record)

    def mark(self, owner: str, schedule_id: str, number: int, **fields: Any) -> dict[str, Any]:
        """Note what became of run ``number`` (state, started, executed notebook...)."""
        record = self._load(owner, schedule_id)
        for run in record["runs"]:
            if run["number"] == number:
                run.update(fields)
                self._save(record)
                return run
        raise ScheduleNotFound(f"No run {number} of schedule {schedule_id}")
