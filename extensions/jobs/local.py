"""Local backend: one detached supervisor process per job runs its workers on this machine."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from ..accounts import Account, AccountError, account_lookup, own_folder
from ..atomic import DamagedStateFile
from ..confined import UnsafeEntry, list_beneath
from ..processes import JOBS_MARKER, MARKER, alive, spawn_detached, workload_env
from .base import LOG_PAGE, JobBackend, whole_characters
from .errors import JobError, JobNotFound
from .spec import JobSpec
from .store import TERMINAL, JobStore, summarize_progress


def new_job_id(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


class LocalJobBackend(JobBackend):
    """Jobs live in ``<data_root>/users/<owner>/jobs/<id>``; state outlives every process."""

    def __init__(
        self,
        data_root: str | Path,
        env: dict[str, str] | None = None,
        account_of: Callable[[str], Account] | None = None,
    ):
        self.data_root = Path(data_root)
        self.env = dict(env or {})
        self.account_of = account_of  # isolation='accounts': jobs run as their owner

    @classmethod
    def from_workbench(cls, workbench: Any) -> LocalJobBackend:
        return cls(workbench.shared_data, account_of=account_lookup(workbench))

    def jobs_dir(self, owner: str) -> Path:
        return self.data_root / "users" / owner / "jobs"

    def store(self, owner: str, job_id: str) -> JobStore:
        if "/" in job_id or job_id.startswith("."):
            raise JobNotFound(f"No job {job_id!r}")
        store = JobStore(self.jobs_dir(owner) / job_id)
        if not store.record_file.exists():
            raise JobNotFound(f"No job {job_id!r} for {owner}; `hubforge job list` shows yours")
        return store

    # -- JobBackend -------------------------------------------------------------------
    def submit(
        self, owner: str, spec: JobSpec, script: str, job_id: str | None = None
    ) -> dict[str, Any]:
        spec.validate()
        job_id = job_id or new_job_id(spec.name)
        store = JobStore(self.jobs_dir(owner) / job_id)
        now = time.time()
        record = {
            "id": job_id,
            "owner": owner,
            "spec": spec.to_dict(),
            "state": "pending",
            "reason": "",
            "restarts": 0,
            "replicas": {},
            "created": now,
            "updated": now,
            "supervisor": None,
            "backend": "local",
        }
        account = self._account(owner)
        try:
            store.create(record, script, (account.uid, account.gid) if account else None)
        except UnsafeEntry as e:
            raise JobError(f"Not submitted: {e}", 409) from None
        except OSError:  # a full disk: leave no half-made job folder behind
            shutil.rmtree(store.path, ignore_errors=True)
            raise
        self._start_supervisor(store, account)
        return self.get(owner, job_id)

    def _account(self, owner: str) -> Account | None:
        """The owner's OS account, owning their area (the job's folder is made for it: its
        supervisor and workers run as it and write there); None without per-user accounts."""
        if self.account_of is None:
            return None
        account = self.account_of(owner)
        own_folder(self.data_root / "users" / owner, account)
        return account

    def _start_supervisor(self, store: JobStore, account: Account | None = None) -> None:
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
        supervisor = spawn_detached(
            [sys.executable, "-m", "hubforge.jobs.supervisor", str(store.path)],
            store.path / "supervisor.log",
            log_root=store.area,
            env=env,
            cwd=store.path,
            popen=account.popen_kwargs() if account else None,
        )
        store.update(supervisor=supervisor)

    def get(self, owner: str, job_id: str) -> dict[str, Any]:
        store = self.store(owner, job_id)
        try:
            record = store.read()
        except (DamagedStateFile, UnsafeEntry) as e:
            raise JobError(f"Job {job_id}: {e}", 409) from None
        if record["state"] not in TERMINAL and not _supervisor_alive(record):
            # The supervisor always records how the job ended; gone without it: it was killed.
            time.sleep(0.2)  # it may be writing its last words right now
            record = store.read()
            if record["state"] not in TERMINAL and not _supervisor_alive(record):
                record = store.update(state="failed", reason="the job's supervisor was killed")
        record["artifacts"] = store.artifacts()
        return record

    def list(self, owner: str) -> list[dict[str, Any]]:
        folder = self.jobs_dir(owner)
        area = folder.parent
        try:  # never through a link: jobs/ and each job folder are opened O_NOFOLLOW
            names = list_beneath(area, "jobs")
        except (UnsafeEntry, NotADirectoryError) as e:
            raise JobError(f"Your jobs folder cannot be read: {e}", 409) from None
        records = []
        for name in names:
            try:
                if "job.json" not in list_beneath(area, f"jobs/{name}"):
                    continue  # being made right now, or not a job
            except (UnsafeEntry, NotADirectoryError) as e:
                records.append(JobStore(folder / name).damaged_record(owner, e))
                continue
            try:
                records.append(self.get(owner, name))
            except JobError as e:  # one damaged job.json: list it as such, list the rest
                records.append(JobStore(folder / name).damaged_record(owner, e))
        return sorted(records, key=lambda r: r["created"], reverse=True)

    def cancel(self, owner: str, job_id: str) -> dict[str, Any]:
        record = self.get(owner, job_id)
        if record["state"] in TERMINAL:
            raise JobError(f"Job {job_id} already {record['state']}; nothing to cancel", 409)
        pid = record["supervisor"]["pid"]
        self._check_owns(owner, pid)
        os.kill(pid, signal.SIGTERM)  # the supervisor stops its workers, then records it
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _supervisor_alive(record):
            time.sleep(0.1)
        if _supervisor_alive(record):
            os.killpg(pid, signal.SIGKILL)
        # Whatever is left in the job's process group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        store = self.store(owner, job_id)
        if store.read()["state"] not in TERMINAL:
            store.update(state="cancelled", reason="cancelled by the user")
        return self.get(owner, job_id)

    def _check_owns(self, owner: str, pid: int) -> None:
        """With per-user accounts job.json is the owner's to write: the pid it names is
        signalled only when that process runs as the owner's account."""
        if self.account_of is None:
            return
        try:
            uid = psutil.Process(pid).uids().real
        except psutil.Error:
            return  # gone already: nothing will be signalled
        try:
            expected = self.account_of(owner).uid
        except AccountError:
            expected = None  # no account: no process can be the owner's
        if uid != expected:
            raise JobError(
                f"The supervisor recorded for this job (pid {pid}) is not {owner}'s process; "
                "job.json was changed by hand. Nothing was stopped",
                409,
            )

    def stop_all(self, reason: str) -> list[str]:
        """Cancel every active job of every user (the workbench is stopping)."""
        stopped = []
        users = self.data_root / "users"
        for owner in sorted(p.name for p in users.iterdir()) if users.is_dir() else []:
            try:
                records = self.list(owner)
            except JobError:
                continue  # a jobs folder that is a link: nothing of this owner's is followed
            for record in records:
                if record["state"] not in TERMINAL:
                    try:  # signals only the owner's own processes (see _check_owns)
                        self.cancel(owner, record["id"])
                        self.store(owner, record["id"]).update(reason=reason)
                    except (JobError, UnsafeEntry, DamagedStateFile):
                        continue
                    stopped.append(record["id"])
        return stopped

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
    """A job file that is damaged or a link answers 409 with what to do."""
    try:
        yield
    except (DamagedStateFile, UnsafeEntry) as e:
        raise JobError(f"Job {job_id}: {e}", 409) from None


def _supervisor_alive(record: dict[str, Any]) -> bool:
    supervisor = record.get("supervisor")
    if not supervisor:
        return record["state"] == "pending"
    return alive(supervisor)
