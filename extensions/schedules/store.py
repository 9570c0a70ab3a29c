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
import logging
import re
import secrets
import shutil
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..atomic import DamagedStateFile, read_json, write_json
from .cron import ScheduleError, check_cron, check_timezone
from .planner import check_missed, plan

log = logging.getLogger("hubforge.schedules")
ID = re.compile(r"s-[a-z0-9]{8}")
OWNER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")  # a job's name
ENDED = ("succeeded", "failed", "cancelled", "damaged", "skipped")
REQUIRED = {"id", "owner", "name", "cron", "timezone", "params", "workers", "gpus_per_worker"}
REQUIRED |= {"missed", "paused", "created", "covered", "runs"}
KEPT_RUNS = 200  # the newest runs kept in a schedule's history
MAX_PER_OWNER = 20
# bytes of a scheduled notebook, outputs left out (on Kubernetes a job's script is a
# ConfigMap: 1 MiB at most, the notebook quoted within)
MAX_NOTEBOOK = 512 * 1024


class ScheduleNotFound(KeyError):
    """No such schedule of this owner (another owner's is not found either)."""


def job_id(schedule_id: str, run: int) -> str:
    return f"{schedule_id}-r{run}"


def _check_settings(
    owner: Any, timezone: Any, missed: Any, params: Any, workers: Any, gpus: Any, name: Any
) -> None:
    """ScheduleError saying what to change in a new schedule's settings."""
    if not isinstance(owner, str) or not OWNER.fullmatch(owner):
        raise ScheduleError(f"{owner!r} cannot have schedules (not a workbench user name)")
    check_timezone(timezone)
    check_missed(missed)
    if params is not None and not isinstance(params, dict):
        raise ScheduleError('params: an object of the notebook\'s parameters, e.g. {"epochs": 5}')
    if not _whole(workers) or not 1 <= workers <= 64:
        raise ScheduleError("workers: a whole number from 1 to 64")
    if not _whole(gpus) or not 0 <= gpus <= 16:
        raise ScheduleError("gpus_per_worker: a whole number from 0 to 16")
    if name and (not isinstance(name, str) or not NAME.fullmatch(name)):
        raise ScheduleError(f"name={name!r}: 1-40 lowercase letters, digits or '-', e.g. 'nightly'")


def _checked_notebook(notebook: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The notebook as nbformat writes it (what runs), its ``params`` ones the notebook's
    ``parameters`` cell sets (none without one); ScheduleError otherwise."""
    import nbformat

    from ..jobs.convert import check_params, parameters_of
    from ..jobs.errors import JobError

    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ScheduleError("notebook: the notebook's JSON (a dict with its cells)")
    given = {"metadata": {}, "nbformat": 4, "nbformat_minor": 5, **notebook}
    try:
        with warnings.catch_warnings():  # cells without ids: nbformat gives them ids
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(given), as_version=4)
        defaults = parameters_of(nb)
    except Exception as e:  # whatever a malformed notebook makes nbformat raise
        raise ScheduleError(f"notebook: not a notebook Jupyter can read ({e})") from None
    try:
        check_params(defaults, params)
    except JobError as e:
        raise ScheduleError(f"params: {e}") from None
    for cell in nb.cells:  # what runs: each run makes its own outputs
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    kept = json.loads(json.dumps(nb))  # (sources stay strings, as the owner's notebook has them)
    if len(json.dumps(kept)) > MAX_NOTEBOOK:
        raise ScheduleError(
            f"notebook: larger than {MAX_NOTEBOOK // 1024} KB without its outputs; keep data "
            "in files it reads, not in its cells"
        )
    return kept


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def file_clock(path: str | Path) -> Callable[[], dt.datetime]:
    """The time written in ``path`` (seconds since the epoch; the real time while it holds
    none): for tests and benchmarks, which move it on (Workbench.schedule_clock_file)."""

    def clock() -> dt.datetime:
        try:
            return dt.datetime.fromtimestamp(float(Path(path).read_text()), dt.UTC)
        except (OSError, ValueError, OverflowError):
            return _utc_now()

    return clock


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat()


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


class Schedules:
    """``max_per_owner``: how many schedules one user may have (Workbench.
    max_schedules_per_user)."""

    def __init__(
        self,
        root: str | Path,
        clock: Callable[[], dt.datetime] = _utc_now,
        max_per_owner: int = MAX_PER_OWNER,
    ):
        self.root = Path(root)
        self.clock = clock
        self.max_per_owner = max_per_owner
        # one change at a time (the service's pass and its requests run in threads): a pause
        # and a run's new state read and write the same record
        self.lock = threading.RLock()

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
        except OSError as e:  # gone this instant, or not readable
            raise ScheduleNotFound(f"No schedule {schedule_id!r}") from e
        if not isinstance(record, dict) or record.get("owner") != owner:
            raise ScheduleNotFound(f"No schedule {schedule_id!r}")
        if not set(record) >= REQUIRED or not isinstance(record["runs"], list):
            raise ScheduleError(f"Schedule {schedule_id}: its record is damaged (fields missing)")
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
        path: str = "",
        notify: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new schedule of ``notebook`` (its JSON: kept as it is now; ``path``: where it
        came from in the owner's home, shown with the schedule)."""
        _check_settings(owner, timezone, missed, params, workers, gpus_per_worker, name)
        notebook = _checked_notebook(notebook, params or {})
        schedule_id = "s-" + secrets.token_hex(4)
        folder = self._folder(owner, schedule_id)
        record = {
            "id": schedule_id,
            "owner": owner,
            "name": name or schedule_id,
            "path": path if isinstance(path, str) else "",
            "cron": check_cron(cron),
            "timezone": timezone,
            "params": dict(params or {}),
            "workers": workers,
            "gpus_per_worker": gpus_per_worker,
            "missed": missed,
            "notify": notify,  # checked by the caller (hubforge.notify.Notifications.check)
            "paused": False,
            "created": _iso(self.clock()),
            "covered": _iso(self.clock()),  # runs are planned for cron times after this
            "runs": [],
        }
        with self.lock:
            if sum(1 for _ in self._folders(owner)) >= self.max_per_owner:
                raise ScheduleError(
                    f"You have {self.max_per_owner} schedules, the most one user may have: "
                    "delete one you no longer need"
                )
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
        notebook = _checked_notebook(notebook, self._load(owner, schedule_id)["params"])
        with self.lock:  # (checked before: a big notebook holds up no one else)
            record = self._load(owner, schedule_id)
            _checked_notebook(notebook, record["params"])  # its params as they are now
            write_json(self._folder(owner, schedule_id) / "notebook.ipynb", notebook)

    def set_paused(self, owner: str, schedule_id: str, paused: bool) -> dict[str, Any]:
        """Pause, or resume: a resumed schedule plans from now (no catching up on the pause)."""
        with self.lock:
            record = self._load(owner, schedule_id)
            if record["paused"] and not paused:
                record["covered"] = _iso(self.clock())
            record["paused"] = paused
            self._save(record)
            return record

    def delete(self, owner: str, schedule_id: str) -> None:
        """Gone, with its frozen notebook (its runs' jobs and executed notebooks stay)."""
        with self.lock:
            self._load(owner, schedule_id)
            shutil.rmtree(self._folder(owner, schedule_id))

    # -- the service's tick ------------------------------------------------------------------
    def due(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(schedule, run) for every run to submit now: newly planned ones, and ones planned
        earlier but never marked submitted (a crash in between)."""
        now = self.clock()
        out = []
        for folder in self._folders(None):
            with self.lock:
                try:
                    record = self._load(folder.parent.name, folder.name)
                    if not record["paused"]:
                        self._plan(record, now)
                except (ScheduleNotFound, ScheduleError, OSError):
                    continue
                except Exception:  # one schedule the planner cannot take holds up no other
                    log.exception("Schedule %s of %s not planned", folder.name, folder.parent.name)
                    continue
            out += [(record, run) for run in record["runs"] if run["state"] == "planned"]
        return out

    def following(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(schedule, run) for every run submitted whose job has not ended."""
        out = []
        for record in self.list():
            out += [(record, r) for r in record["runs"] if r["state"] not in ("planned", *ENDED)]
        return out

    def _plan(self, record: dict[str, Any], now: dt.datetime) -> None:
        decided = plan(
            record["cron"], record["timezone"], _parse(record["covered"]), now, record["missed"]
        )
        if decided.covered is None:
            return
        record["covered"] = _iso(decided.covered)
        waiting = [r for r in record["runs"] if r["state"] == "planned"]
        if decided.run is not None and waiting:  # the last one still waits (the owner's quota)
            waiting[-1]["missed_while_waiting"] = waiting[-1].get("missed_while_waiting", 0) + 1
        elif decided.run is not None:
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
        with self.lock:
            record = self._load(owner, schedule_id)
            for run in record["runs"]:
                if run["number"] == number:
                    run.update(fields)
                    self._save(record)
                    return run
        raise ScheduleNotFound(f"No run {number} of schedule {schedule_id}")
