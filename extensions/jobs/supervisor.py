"""The per-job supervisor (``python -m hubforge.jobs.supervisor JOB_DIR``).

Starts the job's workers with TF_CONFIG on free loopback ports, restarts the whole group when
one dies (training resumes from BackupAndRestore), and records every change in job.json.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..atomic import DamagedStateFile
from ..processes import identity
from .store import JobStore

GRACE_SECONDS = 10
# Space the supervisor holds while its job runs, given back when a worker died on a full
# disk: enough to record why, where nothing else would fit.
RESERVE = ".disk-reserve"
RESERVE_BYTES = 1 << 20
LOW_SPACE = 1 << 20  # less than this free: the disk is full for what a job writes


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Supervisor:
    def __init__(self, job_dir: str | Path):
        self.store = JobStore(job_dir)
        self.record = self.store.read()
        self.spec = self.record["spec"]
        self.stopping = False
        self.procs: dict[str, subprocess.Popen] = {}
        self._me: dict | None = None  # this process's identity, in every write of job.json

    def worker_env(self, index: int, ports: list[int], attempt: int) -> dict[str, str]:
        workers = self.spec["workers"]
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        per = self.spec["gpus_per_worker"]
        devices = self.spec.get("devices") or []
        env = dict(
            os.environ,
            HUBFORGE_JOB_DIR=str(self.store.path),
            HUBFORGE_JOB_ID=self.store.id,
            HUBFORGE_ATTEMPT=str(attempt),
            HUBFORGE_REPLICA=f"worker-{index}",
            TF_USE_LEGACY_KERAS="1",
            TF_NUM_INTRAOP_THREADS=threads,
            TF_NUM_INTEROP_THREADS=threads,
            OMP_NUM_THREADS=threads,
            PYTHONUNBUFFERED="1",
            CUDA_VISIBLE_DEVICES=",".join(devices[index * per : (index + 1) * per]),
        )
        env.pop("TF_CONFIG", None)
        if workers > 1:  # one worker runs as the kernel does: no cluster of one
            task = {"type": "worker", "index": index}
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
        return env

    def update(self, **changes: object) -> dict:
        """Record a change in job.json; on a full disk, keep the workers going and retry
        until there is space again (the job's state is never lost or guessed). A damaged
        job.json is written afresh from the supervisor's own record."""
        warned = False
        # every write names this supervisor: the service records it too, just after starting
        # it, and a write of this process that read job.json before would otherwise undo that
        if self._me is None:
            self._me = identity(os.getpid())
        changes.setdefault("supervisor", self._me)
        while True:
            try:
                try:
                    return self.store.update(**changes)
                except (DamagedStateFile, FileNotFoundError) as e:
                    return self.rewrite(changes, e)
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                if not warned:
                    print(f"supervisor: disk full ({e}); will retry", file=sys.stderr, flush=True)
                    warned = True
                time.sleep(2)

    def rewrite(self, changes: dict, problem: Exception) -> dict:
        """job.json from what this supervisor knows (it is the job's only writer)."""
        record = {**self.record, **changes, "updated": time.time()}
        record["supervisor"] = record.get("supervisor") or identity(os.getpid())
        self.store.replace(record)
        print(f"supervisor: {problem}; rewrote it from the supervisor's record", file=sys.stderr)
        return record

    def start_group(self, attempt: int) -> None:
        ports = free_ports(self.spec["workers"])
        replicas = {}
        for i in range(self.spec["workers"]):
            name = f"worker-{i}"
            log = self.store.replica_log(name)
            with log.open("ab") as out:
                with contextlib.suppress(OSError):  # a full disk must not stop the job
                    out.write(f"=== attempt {attempt} ({time.strftime('%H:%M:%S')}) ===\n".encode())
                    out.flush()
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "hubforge.jobs.runner", str(self.store.script_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.worker_env(i, ports, attempt),
                    cwd=self.store.path,
                )
            replicas[name] = {"state": "running", "pid": self.procs[name].pid, "exit_code": None}
        self.record = self.update(state="running", replicas=replicas)

    def stop_group(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + GRACE_SECONDS
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait_group(self) -> str:
        """'succeeded', 'failed:<replica>' or 'stopped'."""
        while True:
            if self.stopping:
                return "stopped"
            codes = {name: p.poll() for name, p in self.procs.items()}
            failed = [n for n, c in codes.items() if c not in (None, 0)]
            if failed:
                return f"failed:{failed[0]}"
            if all(c == 0 for c in codes.values()):
                return "succeeded"
            time.sleep(0.2)

    def error_of(self, replica: str, attempt: int) -> str | None:
        """The last line of the Python error that ended ``replica`` in ``attempt`` (None: it
        was killed, or died without a Python error)."""
        path = self.store.replica_log(replica).with_suffix(".error.json")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record.get("error") if record.get("attempt") == str(attempt) else None

    def trained(self, attempt: int) -> bool:
        """Whether training steps ran in ``attempt`` (the progress callback's records)."""
        return any(
            r.get("attempt") == attempt and r.get("event") in ("step", "epoch_end", "train_end")
            for r in self.store.progress_records()
        )

    def record_replicas(self, outcome: str) -> None:
        replicas = self.record["replicas"]
        for name, proc in self.procs.items():
            code = proc.poll()
            state = "succeeded" if code == 0 else ("running" if code is None else "failed")
            replicas[name] = {"state": state, "pid": proc.pid, "exit_code": code}
        self.record = self.update(replicas=replicas, last_outcome=outcome)

    def run(self, resume: str | None = None, preempted: bool = False) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        self.hold_reserve()
        try:
            if resume is not None and not self.resume(resume, counts=not preempted):
                return 1
            return self.attempts()
        except BaseException:
            self.stop_group()  # whatever went wrong, no worker outlives its supervisor
            raise
        finally:
            self.release_reserve()

    def hold_reserve(self) -> None:
        with contextlib.suppress(OSError):  # no room for it: the job runs all the same
            (self.store.path / RESERVE).write_bytes(b"\0" * RESERVE_BYTES)

    def release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            (self.store.path / RESERVE).unlink()

    def disk_full(self) -> bool:
        try:
            st = os.statvfs(self.store.path)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < LOW_SPACE

    def resume(self, why: str, counts: bool = True) -> bool:
        """Take over a job whose supervisor was stopped mid-run (``why``: by what): its
        workers left over are stopped, the next attempt counts as a restart and resumes
        from the last checkpoint (BackupAndRestore); False when no restart is left.
        ``counts`` False: the queue stopped it on purpose (preemption), no restart is used."""
        self.stop_leftovers()
        restarts = self.record.get("restarts", 0)
        history = [*self.record.get("history", []), {"time": time.time(), "event": why}]
        if not counts:
            self.record = self.update(
                state="restarting",
                history=history,
                reason=f"{why}; resuming from its last checkpoint",
            )
            return True
        if restarts >= self.spec["max_restarts"]:
            self.update(
                state="failed",
                history=history,
                reason=f"{why}, after {restarts} restart(s): no restart left "
                f"(max_restarts={self.spec['max_restarts']})",
            )
            return False
        self.record = self.update(
            state="restarting",
            restarts=restarts + 1,
            history=history,
            reason=f"{why}; resuming from its last checkpoint ({restarts + 1}/"
            f"{self.spec['max_restarts']})",
        )
        return True

    def stop_leftovers(self) -> None:
        """Workers of this job still running from before (their supervisor was killed
        alone): stopped, so no two attempts train at once. Only this account's processes
        running this job's script are touched."""
        import psutil

        script = str(self.store.script_file)
        for proc in psutil.process_iter(["uids", "cmdline"]):
            try:
                cmdline = proc.info["cmdline"] or []
                if (
                    proc.info["uids"].real == os.getuid()
                    and "hubforge.jobs.runner" in cmdline
                    and script in cmdline
                ):
                    proc.kill()
            except (psutil.Error, TypeError):
                continue

    def attempts(self) -> int:
        """Run the group until it succeeds, is stopped, or a restart would not help."""
        restarts = self.record.get("restarts", 0)
        previous: str | None = None  # the Python error that ended the attempt before
        while True:
            self.start_group(restarts)
            outcome = self.wait_group()
            full = outcome.startswith("failed") and self.disk_full()
            if full:  # room to record it (update() would wait for space)
                self.release_reserve()
            self.record_replicas(outcome)
            self.stop_group()
            if outcome == "succeeded":
                self.update(state="succeeded", reason="")
                return 0
            if outcome == "stopped":
                self.update(state="cancelled", reason="cancelled by the user")
                return 0
            replica = outcome.split(":", 1)[1]
            code = self.record["replicas"][replica]["exit_code"]
            if full:  # a restart would meet the same full disk
                self.update(
                    state="failed",
                    reason=f"{replica} exited with {code} while the disk holding the job's "
                    f"folder ({self.store.path}) was full: free some space there, then "
                    "submit the job again",
                )
                return 1
            error = self.error_of(replica, restarts)
            if error and (not self.trained(restarts) or error == previous):
                why = (
                    "the same error as the attempt before"
                    if error == previous and self.trained(restarts)
                    else "before the first training step"
                )
                self.update(
                    state="failed",
                    reason=f"{replica}: {error} ({why}: a restart would not help); see the "
                    f"logs of {replica}",
                )
                return 1
            previous = error
            if restarts >= self.spec["max_restarts"]:
                self.update(
                    state="failed",
                    reason=f"{replica} exited with {code} after {restarts} restart(s); "
                    f"see the logs of {replica}",
                )
                return 1
            restarts += 1
            self.record = self.update(
                state="restarting",
                restarts=restarts,
                reason=f"{replica} exited with {code}; restarting the group ({restarts}/"
                f"{self.spec['max_restarts']})",
            )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hubforge.jobs.supervisor")
    parser.add_argument("job_dir")
    parser.add_argument(
        "--resume", metavar="WHY", help="take over a job whose supervisor was stopped mid-run"
    )
    parser.add_argument(
        "--preempted",
        action="store_true",
        help="with --resume: the queue stopped the job for another; no restart is used",
    )
    args = parser.parse_args()
    sys.exit(Supervisor(args.job_dir).run(resume=args.resume, preempted=args.preempted))


if __name__ == "__main__":
    main()
