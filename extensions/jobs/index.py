"""The local backend's own record of each job's supervisor: pid, start time, owner's uid.

A job's ``job.json`` is in its owner's area: theirs to write, and to damage. Cancel and
`hubforge down` find a job's processes here instead, in ``<data root>/.job-supervisors/
<owner>/<job id>.json``, made by the account that runs the jobs (root with per-user
accounts: 0700, never in a user's area) and written atomically, never through a link.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from ..confined import (
    UnsafeEntry,
    _folder_beneath,
    list_beneath,
    make_folders_beneath,
    read_beneath,
    write_beneath,
)

INDEX = ".job-supervisors"


class SupervisorIndex:
    """One small file per job; readers and writers never share a file but the job's own."""

    def __init__(self, data_root: str | Path):
        self.root = Path(data_root)

    @staticmethod
    def _relative(owner: str, job_id: str | None = None) -> Path:
        """INDEX/<owner>/<job id>.json (INDEX/<owner> without a job id)."""
        for name in (owner, job_id or "-"):
            if not name or "/" in name or name.startswith("."):
                raise UnsafeEntry(f"{name!r} cannot name a job's record")
        return Path(INDEX, owner, f"{job_id}.json") if job_id else Path(INDEX, owner)

    def add(self, owner: str, job_id: str, supervisor: dict[str, Any], uid: int | None) -> bool:
        """Record the supervisor of a job just started (``uid``: the owner's account); False
        when it cannot be (an account that may not write the data root, such as a user's
        kernel on a shared workbench where the service keeps the index; a full disk): the
        job runs all the same, and job.json is then all there is to find it by."""
        entry = {"owner": owner, "id": job_id, "uid": uid, **supervisor}
        data = (json.dumps(entry, sort_keys=True) + "\n").encode()
        try:
            relative = self._relative(owner, job_id)
            make_folders_beneath(self.root, relative.parent, mode=0o700)
            write_beneath(self.root, relative, data, 0o600)
        except (OSError, UnsafeEntry):
            return False
        return True

    def get(self, owner: str, job_id: str) -> dict[str, Any] | None:
        """The recorded supervisor of ``owner``'s job, or None (none recorded, or unreadable:
        then job.json is all there is)."""
        try:
            data = read_beneath(self.root, self._relative(owner, job_id))
        except (UnsafeEntry, OSError):
            return None
        return _entry(data)

    def remove(self, owner: str, job_id: str) -> None:
        """Forget a job whose processes have ended (nothing happens when it is not recorded)."""
        with contextlib.suppress(OSError, UnsafeEntry):
            relative = self._relative(owner, job_id)
            folder = _folder_beneath(self.root, list(relative.parent.parts))
            try:
                os.unlink(relative.name, dir_fd=folder)
            finally:
                os.close(folder)

    def entries(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every recorded supervisor, of ``owner`` or of every owner."""
        found = []
        with contextlib.suppress(OSError, UnsafeEntry):
            owners = [owner] if owner else list_beneath(self.root, INDEX)
            for name in owners:
                found += self._entries_of(name)
        return found

    def _entries_of(self, owner: str) -> list[dict[str, Any]]:
        found = []
        with contextlib.suppress(OSError, UnsafeEntry):
            for name in list_beneath(self.root, self._relative(owner)):
                if name.endswith(".json") and not name.startswith("."):
                    entry = self.get(owner, name[: -len(".json")])
                    if entry is not None:
                        found.append(entry)
        return found


def _entry(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        entry = json.loads(data)
        int(entry["pid"]), float(entry["create_time"])
    except (ValueError, KeyError, TypeError):
        return None
    return entry
