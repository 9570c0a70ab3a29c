"""Local backend: one detached supervisor process per job runs its workers on this machine."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from ..atomic import DamagedStateFile
from ..confined import UnsafeEntry
from ..owner_files import Areas
from ..processes import JOBS_MARKER, MARKER, alive, workload_env
from .base import LOG_PAGE, JobBackend, whole_characters
from .errors import JobError, JobNotFound
from .index import SupervisorIndex
from .spec import JobSpec
from .store import TERMINAL, JobStore, summarize_progress

log = logging.getLogger(__name__)


PREEMPTED = "preempted by a job of a higher priority"


def new_job_id(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


class LocalJobBackend(JobBackend):
    """Jobs live in ``<data_root>/users/<owner>/jobs/<id>``; state outlives every process."""

    def __init__(
        self,
        data_root: str | Path,
        env: dict[str, str] | None = None,
        areas: Areas | None = None,
        index_root: str | Path | None = None,
    ):
        self.data_root = Path(data_root)
        self.env = dict(env or {})
        # users' areas: with per-user accounts jobs run as their owner, and the service
        # reaches their files as the owner (through the privileged helper)
        self.areas = areas or Areas(self.data_root)
        # job.json is the owner's: not trusted; the index is the service's own
        self.index = SupervisorIndex(index_root or self.data_root)

    @classmethod
    def from_workbench(cls, workbench: Any, create_accounts: bool = True) -> LocalJobBackend:
        areas = Areas(workbench.shared_data, workbench, create_accounts)
        # with per-user accounts the index is the service's own (<data dir>/service), else it
        # is beside the users' areas, where a kernel that runs jobs itself keeps it too
        index = workbench.service_dir if areas.separate else workbench.shared_data
        return cls(workbench.shared_data, areas=areas, index_root=index)

    def jobs_dir(self, owner: str) -> Path:
        return self.data_root / "users" / owner / "jobs"

    def _store(self, owner: str, job_id: str) -> JobStore:
        return JobStore(self.jobs_dir(owner) / job_id, self.areas.of(owner))

    def store(self, owner: str, job_id: str) -> JobStore:
        if "/" in job_id or job_id.startswith("."):
            raise JobNotFound(f"No job {job_id!r}")
        store = self._store(owner, job_id)
        if not store.exists():
            raise JobNotFound(f"No job {job_id!r} for {owner}; `hubforge job list` shows yours")
        return store

    # -- JobBackend -------------------------------------------------------------------
    def submit(
        self,
        owner: str,
        spec: JobSpec,
        script: str,
        job_id: str | None = None,
        queued: bool = False,
    ) -> dict[str, Any]:
        spec.validate()
        job_id = job_id or new_job_id(spec.name)
        # the owner's account (made on first use) owns their area: the job's folder is made
        # as it, its supervisor and workers run as it and write there
        uid = self.areas.prepare(owner)
        store = self._store(owner, job_id)
        now = time.time()
        record = {
            "id": job_id,
            "owner": owner,
            "spec": spec.to_dict(),
            "state": "queued" if queued else "pending",
            "reason": "",
            "restarts": 0,
            "replicas": {},
            "created": now,
            "updated": now,
            "supervisor": None,
            "backend": "local",
        }
        _create(store, record, script, uid)
        if not queued:
            try:
                self._start_supervisor(store, uid)
            except UnsafeEntry as e:  # its log became a link: nothing was started
                raise JobError(f"Not submitted: {e}", 409) from None
            except FileNotFoundError:  # its folder was moved away: nothing was started
                raise JobError(
                    f"Not submitted: the job's folder ({store.path}) was moved away while it "
                    "was being started; try again",
                    409,
                ) from None
        try:
            return self.get(owner, job_id)
        except (JobNotFound, JobError):  # its owner moved or swapped the folder this instant:
            return record  # the job was made (and started); answer with what was written

    def start_queued(self, owner: str, job_id: str, devices: list[str]) -> None:
        """Start a job the queue kept waiting, on ``devices``; JobError when it no longer
        waits (cancelled meanwhile)."""
        store = self.store(owner, job_id)
        with _readable(job_id):
            record = store.read()
            if record.get("state") != "queued":
                raise JobError(f"Job {job_id} is {record.get('state')}, not queued", 409)
            store.update(state="pending", spec={**record["spec"], "devices": list(devices)})
        uid = self.areas.uid_of(owner) if self.areas.separate else None
        again = PREEMPTED if record.get("preempted") else None  # it ran before: resume
        try:
            self._start_supervisor(store, uid, resume=again, preempted=again is not None)
        except UnsafeEntry as e:
            raise JobError(f"Not started: {e}", 409) from None

    def can_resume(self, owner: str, job_id: str) -> bool:
        """Whether the job has a checkpoint to resume from (BackupAndRestore's backup/):
        only such a job may be preempted."""
        try:
            store = self.store(owner, job_id)
            return bool(store.files.listdir(store._relative("backup")))
        except (JobNotFound, FileNotFoundError, NotADirectoryError, UnsafeEntry, OSError):
            return False

    def preempt(self, owner: str, job_id: str) -> dict[str, Any]:
        """Stop a running job for a higher-priority one and record it as queued again: the
        queue starts it later and it resumes from its last checkpoint (no restart used)."""
        known = self.index.get(owner, job_id)
        if known:
            self._stop(owner, known)
        self.index.remove(owner, job_id)
        store = self.store(owner, job_id)
        with _readable(job_id):
            record = store.read()
            return store.update(  # (its history gets the preemption when it resumes)
                state="queued",
                reason=f"{PREEMPTED}; it waits to resume from its last checkpoint",
                preempted=int(record.get("preempted", 0)) + 1,
                supervisor=None,
            )

    def resume_interrupted(self) -> list[str]:
        """Start again the jobs whose supervisor was stopped mid-run by a crash of the whole
        workbench (kill -9, a power cut): those the service's own index lists, not ended,
        with no supervisor running. Each resumes from its last checkpoint, counted as a
        restart with the reason in its history. Run as the service starts; their ids."""
        resumed = []
        for entry in self.index.entries():
            owner, job_id = entry.get("owner"), entry.get("id")
            if not isinstance(owner, str) or not isinstance(job_id, str) or alive(entry):
                continue
            try:
                store = self.store(owner, job_id)
                record = store.read()
            except (JobNotFound, JobError, DamagedStateFile, UnsafeEntry, OSError):
                continue  # its folder is gone or damaged: get() says so when asked
            if record.get("state") in TERMINAL:
                self.index.remove(owner, job_id)
                continue
            if record.get("state") == "queued":  # the queue starts it (it never ran)
                continue
            try:
                uid = self.areas.uid_of(owner) if self.areas.separate else None
                self._start_supervisor(store, uid, resume="the workbench stopped while the job ran")
            except (UnsafeEntry, OSError) as e:
                log.error("Job %s of %s not resumed: %s", job_id, owner, e)
                continue
            resumed.append(job_id)
        return resumed

    def _start_supervisor(
        self,
        store: JobStore,
        uid: int | None = None,
        resume: str | None = None,
        preempted: bool = False,
    ) -> None:
        owner = store.path.parent.parent.name
        env = workload_env(
            HUBFORGE_DATA=str(self.data_root),
            HUBFORGE_USER_AREA=str(self.data_root / "users" / owner),
            HOME=str(store.path),
            TMPDIR=str(store.path / "tmp"),  # the owner's folder: no shared /tmp
            **self.env,
        )
        if os.environ.get(MARKER):  # not swept with the workbench's processes; see stop_all()
            env[JOBS_MARKER] = os.environ[MARKER]
        # Detached: the job outlives the kernel, the user's server and the hub.
        supervisor = store.files.spawn(
            "job-supervisor",
            [
                str(store.path),
                *(["--resume", resume] if resume else []),
                *(["--preempted"] if preempted else []),
            ],
            store._relative("supervisor.log"),
            env=env,
            cwd=store.path,
        )
        # Never job.json: the supervisor names itself in each of its writes there, and a
        # write here would race its first one (read 'pending', the supervisor writes
        # 'running', this puts 'pending' back: a running job shown pending until it ended)
        if self.index.add(owner, store.id, supervisor, uid):
            return
        # no index (a kernel with no service): the job's folder is all there is to find it
        # by. It is the owner's: if it cannot be written (a link swapped in), the job still runs
        with contextlib.suppress(UnsafeEntry, FileNotFoundError, NotADirectoryError):
            store.record_started(supervisor)

    def get(self, owner: str, job_id: str) -> dict[str, Any]:
        store = self.store(owner, job_id)
        known = self.index.get(owner, job_id)
        try:
            record = store.read()
            if known is None and not record.get("supervisor") and record["state"] == "pending":
                known = store.started()  # started, before its first write (and no index)
            if record["state"] not in TERMINAL and not _supervisor_alive(record, known):
                # The supervisor always records how the job ended; gone without: killed.
                time.sleep(0.2)  # it may be writing its last words right now
                record = store.read()
                if record["state"] not in TERMINAL and not _supervisor_alive(record, known):
                    record = store.update(state="failed", reason="the job's supervisor was killed")
        except FileNotFoundError:  # its owner moved the folder away this instant
            raise JobNotFound(f"No job {job_id} for {owner}") from None
        except (DamagedStateFile, UnsafeEntry) as e:
            raise JobError(f"Job {job_id}: {e}{_still_runs(job_id, known)}", 409) from None
        if known is not None and record["state"] in TERMINAL and not alive(known):
            self.index.remove(owner, job_id)
        if not record.get("supervisor") and known is not None:  # before its first write
            record["supervisor"] = {k: known[k] for k in ("pid", "create_time") if k in known}
        record["artifacts"] = store.artifacts()
        return record

    def list(self, owner: str) -> list[dict[str, Any]]:
        folder = self.jobs_dir(owner)
        files = self.areas.of(owner)
        try:  # never through a link: jobs/ and each job folder are opened O_NOFOLLOW
            names = files.listdir("jobs")
        except FileNotFoundError:  # none yet (or its owner moved it away this instant)
            return []
        except (UnsafeEntry, NotADirectoryError) as e:
            raise JobError(f"Your jobs folder cannot be read: {e}", 409) from None
        records = []
        for name in names:
            try:
                if "job.json" not in files.listdir(f"jobs/{name}"):
                    continue  # being made right now, or not a job
            except FileNotFoundError:
                continue  # gone meanwhile
            except (UnsafeEntry, NotADirectoryError) as e:
                with contextlib.suppress(FileNotFoundError, UnsafeEntry):  # gone meanwhile
                    records.append(JobStore(folder / name, files).damaged_record(owner, e))
                continue
            try:
                records.append(self.get(owner, name))
            except JobNotFound:
                continue  # removed while the list was made
            except JobError as e:  # one damaged job.json: list it as such, list the rest
                try:
                    record = JobStore(folder / name, files).damaged_record(owner, e)
                except (FileNotFoundError, UnsafeEntry):
                    continue
                known = self.index.get(owner, name)
                record["running"] = known is not None and alive(known)  # counts for limits
                records.append(record)
        return sorted(records, key=lambda r: r.get("created") or 0, reverse=True)

    def active(self, owner: str) -> list[str]:
        """The owner's jobs whose supervisor runs, from the index: no file of the owner's is
        read (a submit's limit check stays cheap however many jobs they ran before)."""
        return sorted(
            e["id"] for e in self.index.entries(owner) if e.get("owner") == owner and alive(e)
        )

    def cancel(self, owner: str, job_id: str) -> dict[str, Any]:
        return self._cancel(owner, job_id, "cancelled by the user")

    def _cancel(self, owner: str, job_id: str, reason: str) -> dict[str, Any]:
        """Stop the job's processes, found in the service's own index (job.json only for
        jobs started before it, and then only the owner's processes are signalled), even
        when job.json is damaged or gone. A job.json naming another supervisor than the
        index: the job is stopped, the pid named there is not signalled, and the answer is
        409 (job.json was changed by hand)."""
        known = self.index.get(owner, job_id)
        try:
            record: dict[str, Any] | None = self.get(owner, job_id)
        except (JobError, JobNotFound):
            if known is None or not alive(known):
                raise
            record = None
        if record is not None and record["state"] in TERMINAL:
            raise JobError(f"Job {job_id} already {record['state']}; nothing to cancel", 409)
        named = (record or {}).get("supervisor")
        supervisor = known or named
        if supervisor:
            self._stop(owner, supervisor)
        self.index.remove(owner, job_id)
        cancelled = self._cancelled(owner, job_id, reason)
        if known and named and not _same_process(known, named):
            raise JobError(
                f"Job {job_id} was cancelled, but its job.json names pid {named.get('pid')} as "
                f"its supervisor, not the job's own (pid {known['pid']}): job.json was changed "
                f"by hand. Pid {named.get('pid')} was not signalled",
                409,
            )
        return cancelled

    def _stop(self, owner: str, supervisor: dict[str, Any]) -> None:
        """SIGTERM the supervisor (it stops its workers and records it), SIGKILL its
        process group after 30 s; whatever is left in the group goes too. Signals are sent
        with the owner's rights (their process only: job.json is theirs to write)."""
        pid = supervisor["pid"]
        self._check_owns(owner, pid)
        if not alive(supervisor):
            return  # ended (or the pid is another process's now): nothing of the job's
        files = self.areas.of(owner)
        try:
            files.signal(pid, signal.SIGTERM)
        except PermissionError:
            raise JobError(
                f"The supervisor recorded for this job (pid {pid}) is not {owner}'s process; "
                "job.json was changed by hand. Nothing was stopped",
                409,
            ) from None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and alive(supervisor):
            time.sleep(0.1)
        with contextlib.suppress(OSError, UnsafeEntry):
            files.signal(pid, signal.SIGKILL, group=True)

    def _cancelled(self, owner: str, job_id: str, reason: str) -> dict[str, Any]:
        """The job's record once stopped; a job.json the supervisor could not rewrite is
        left as it is and answered with what the service knows."""
        store = self._store(owner, job_id)
        try:
            record = store.read()
        except (FileNotFoundError, DamagedStateFile, UnsafeEntry) as e:
            gone = {"id": job_id, "owner": owner, "state": "cancelled", "reason": reason}
            try:
                record = store.damaged_record(owner, e)
            except FileNotFoundError:
                return {**gone, "reason": f"{reason}; its folder {store.path} is gone"}
            return {**record, **gone, "reason": f"{reason}. {e}"}
        if record["state"] not in TERMINAL or record["state"] == "cancelled":
            store.update(state="cancelled", reason=reason)
        return self.get(owner, job_id)

    def _check_owns(self, owner: str, pid: int) -> None:
        """With per-user accounts job.json is the owner's to write: the pid it names is
        signalled only when that process runs as the owner's account."""
        if not self.areas.separate:
            return
        try:
            uid = psutil.Process(pid).uids().real
        except psutil.Error:
            return  # gone already: nothing will be signalled
        if uid != self.areas.uid_of(owner):
            raise JobError(
                f"The supervisor recorded for this job (pid {pid}) is not {owner}'s process; "
                "job.json was changed by hand. Nothing was stopped",
                409,
            )

    def stop_all(self, reason: str) -> list[str]:
        """Cancel every active job of every user (the workbench is stopping): those the
        index knows to run, whatever their job.json says, and those job.json calls active."""
        stopped = []
        for owner, job_id in self._active():
            try:  # signals only the owner's own processes (see _check_owns)
                self._cancel(owner, job_id, reason)
            except Exception as e:  # one owner's files never keep the others' jobs running
                log.warning("Job %s of %s not stopped: %s", job_id, owner, e)
                continue
            stopped.append(job_id)
        return stopped

    def _active(self) -> list[tuple[str, str]]:
        found = {(e["owner"], e["id"]) for e in self.index.entries() if alive(e)}
        users = self.data_root / "users"
        try:  # users/ is not listable for the service's own account: the index is its list
            owners = sorted(p.name for p in users.iterdir()) if users.is_dir() else []
        except PermissionError:
            owners = []
        for owner in owners:
            try:
                records = self.list(owner)
            except Exception:  # a jobs folder that is a link, a damaged record: skipped
                continue
            found |= {(owner, r["id"]) for r in records if r["state"] not in TERMINAL}
        return sorted(found)

    def logs(self, owner: str, job_id: str, replica: str, offset: int = 0) -> tuple[str, int]:
        store = self.store(owner, job_id)
        with _readable(job_id):
            replicas = store.read()["spec"]["workers"]
            valid = [f"worker-{i}" for i in range(replicas)]
            if replica not in valid:
                raise JobError(f"No replica {replica!r}; this job has {', '.join(valid)}")
            data = store.read_file(f"replicas/{replica}.log", offset, LOG_PAGE)
        if data is None:
            return "", offset
        data = whole_characters(data, LOG_PAGE)
        return data.decode("utf-8", errors="replace"), offset + len(data)

    def progress(self, owner: str, job_id: str) -> dict[str, Any]:
        with _readable(job_id):
            return summarize_progress(self.store(owner, job_id).progress_records())


@contextlib.contextmanager
def _readable(job_id: str) -> Iterator[None]:
    """A job file that is damaged or a link answers 409 with what to do; a job folder its
    owner moved away meanwhile answers 404 (JobNotFound)."""
    try:
        yield
    except (DamagedStateFile, UnsafeEntry) as e:
        raise JobError(f"Job {job_id}: {e}", 409) from None
    except (FileNotFoundError, NotADirectoryError):
        raise JobNotFound(
            f"No job {job_id}: its folder was moved away; `hubforge job list` shows yours"
        ) from None


def _create(store: JobStore, record: dict[str, Any], script: str, uid: int | None) -> None:
    """The job's folder and record, or JobError 409 (a link, an entry of that name, a folder
    moved away meanwhile) and no half-made job folder."""
    try:
        store.create(record, script, private=uid is not None)
    except BaseException as e:  # a full disk, a link: leave no half-made job folder
        if not isinstance(e, FileExistsError):  # (another job's folder is not ours)
            with contextlib.suppress(Exception):
                store.files.remove(store._relative(""))
        if isinstance(e, UnsafeEntry):
            raise JobError(f"Not submitted: {e}", 409) from None
        if isinstance(e, FileNotFoundError):  # its owner moved a folder away meanwhile
            raise JobError(
                f"Not submitted: your jobs folder ({store.path.parent}) was moved or "
                "replaced while the job was being made; try again",
                409,
            ) from None
        if isinstance(e, FileExistsError):  # a folder the owner made with the job's name
            raise JobError(
                f"Not submitted: your jobs folder already has an entry named {store.id}; "
                "remove or rename it",
                409,
            ) from None
        raise


def _supervisor_alive(record: dict[str, Any], known: dict[str, Any] | None = None) -> bool:
    """Whether the job's supervisor runs: the one the index knows (``known``), else the one
    job.json names."""
    supervisor = known or record.get("supervisor")
    if not supervisor:
        return record["state"] in ("pending", "queued")
    return alive(supervisor)


def _same_process(a: dict[str, Any], b: dict[str, Any]) -> bool:
    try:
        return a["pid"] == b["pid"] and abs(a["create_time"] - b["create_time"]) < 1
    except (KeyError, TypeError):
        return False


def _still_runs(job_id: str, known: dict[str, Any] | None) -> str:
    """What a damaged job's answer adds when its processes still run."""
    if known is None or not alive(known):
        return ""
    return f". The job still runs: `hubforge job cancel {job_id}` stops it"
