"""Being told when a one-off job ends (#35): the same e-mail and webhook notifications as
scheduled runs, for a job whose owner asked (``hubforge.jobs.submit(..., notify=...)``,
``hubforge job submit --email``). The service keeps one small file per watched job
(``<service>/job-watch/<owner>/<job id>.json``) and its pass sends the notification once
the job has ended, then forgets it."""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any

from ..atomic import DamagedStateFile, read_json, write_json
from ..notify import Notifications
from .errors import JobError, JobNotFound
from .store import TERMINAL

log = logging.getLogger("hubforge.jobs")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # owners and job ids as folder names
MAX_WATCHED = 50  # jobs one user may be waiting to hear about


def job_message(job: dict[str, Any], public_url: str = "") -> dict[str, Any]:
    """What a notification of an ended job says: subject, text, and the data for webhooks."""
    state, name = job.get("state", ""), (job.get("spec") or {}).get("name") or job["id"]
    reason = " ".join(str(job.get("reason") or "").split())[:500]
    subject = f"[Hubforge] job {name} {'was cancelled' if state == 'cancelled' else state}"
    lines = [f"Job {name} ({job['id']}): {state}."]
    if reason:
        lines.append(f"{'Error' if state == 'failed' else 'Reason'}: {reason}")
    link = f"{public_url.rstrip('/')}/hub/user-redirect/lab" if public_url else None
    if link:
        lines.append(f"The Hubforge panel of your JupyterLab shows it: {link}")
    data = {"job": job["id"], "name": name, "owner": job.get("owner"), "state": state}
    data |= {"reason": reason, "link": link}
    return {"subject": subject, "text": "\n".join(lines), "state": state, "data": data}


class JobWatch:
    """``jobs``: the service's job backend; ``notifications``: how owners are told."""

    def __init__(self, root: str | Path, jobs: Any, notifications: Notifications) -> None:
        self.root, self.jobs, self.notifications = Path(root), jobs, notifications

    def _file(self, owner: str, job_id: str) -> Path:
        if not NAME.fullmatch(owner) or not NAME.fullmatch(job_id):
            raise JobNotFound(f"No job {job_id!r}")
        return self.root / owner / f"{job_id}.json"

    def add(self, owner: str, job_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Tell ``owner`` when their job ``job_id`` ends (``settings`` checked already)."""
        self.jobs.get(owner, job_id)  # theirs (JobNotFound otherwise)
        path = self._file(owner, job_id)
        folder = path.parent
        if folder.is_dir() and len(list(folder.glob("*.json"))) >= MAX_WATCHED:
            raise JobError(
                f"You wait to hear about {MAX_WATCHED} jobs already: let some end first", 429
            )
        write_json(path, {"owner": owner, "job": job_id, "notify": settings})
        return {"job": job_id, "notify": settings}

    def run_pass(self) -> None:
        """Each watched job that has ended: its owner is told, and it is watched no more."""
        for path in sorted(self.root.glob("*/*.json")):
            with contextlib.suppress(Exception):  # one bad file holds up no other
                self._check(path)

    def _check(self, path: Path) -> None:
        try:
            watched = read_json(path)
            owner, job_id = watched["owner"], watched["job"]
            job = self.jobs.get(owner, job_id)
        except (DamagedStateFile, KeyError, TypeError, JobNotFound):
            path.unlink(missing_ok=True)  # gone, or not a watch: nothing to tell
            return
        except JobError:
            return  # a damaged job record: asked again next pass
        if job.get("state") not in TERMINAL:
            return
        path.unlink(missing_ok=True)  # first: told once, even if the sending fails
        message = job_message(job, self.notifications.public_url)
        self.notifications.send_later(
            owner,
            watched["notify"],
            message,
            lambda told: log.info("Job %s of %s ended: %s", job_id, owner, "; ".join(told)),
        )
