"""The journal: annotations on their way to Label Studio, kept on disk until sent once."""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
from label_studio_sdk.core.api_error import ApiError

from ..atomic import file_lock, read_json, write_json
from .configs import _plain
from .errors import LabelingError, LabelStudioDown


class Journal:
    """Annotations on their way to Label Studio, on disk (a kernel restart loses nothing),
    exactly once across processes and crashes.

    Every change to the file happens under a lock shared by all of the user's processes (two
    kernels labeling at once lose nothing). A replay holds a lock per project, so one process
    at a time sends a project's entries; each entry is marked in flight before it is sent, and
    each result item carries the entry's id, so a replay after a crash or a lost answer looks
    for it on the task first and never sends it twice."""

    def __init__(self, path: Path):
        self.path = path

    def _lock(self, suffix: str = "", timeout: float | None = None) -> Any:
        return file_lock(self.path.with_name(f"{self.path.name}{suffix}.lock"), timeout)

    def _read(self) -> list[dict[str, Any]]:
        return read_json(self.path, []) or []

    def add(
        self, project: int, task: int, result: list[dict[str, Any]], account: str = ""
    ) -> dict[str, Any]:
        uid = uuid.uuid4().hex[:16]
        for i, item in enumerate(result):
            item["id"] = f"hf{uid}{i}"
        entry = {"uid": uid, "project": project, "task": task, "result": result}
        if account:  # sent only through that account (own projects, or a teammate's)
            entry["account"] = account
        try:
            with self._lock():
                write_json(self.path, [*self._read(), entry], mode=0o600)
        except OSError as e:
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            fix = (
                "Free some space (or ask an admin to)"
                if full
                else f"Make {self.path.parent} yours and writable (or ask an admin to)"
            )
            raise LabelingError(
                f"Your label was not saved: {e.strerror} ({self.path.parent}). {fix}, then "
                "label this item again; nothing else was lost"
            ) from None
        return entry

    def pending(self, uid: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self._read() if uid is None or e["uid"] == uid]

    def mark_attempted(self, uid: str) -> None:
        """Record that ``uid`` may have reached Label Studio (before each send)."""
        with self._lock():
            entries = self._read()
            for e in entries:
                if e["uid"] == uid:
                    e["attempted"] = True
            write_json(self.path, entries, mode=0o600)

    def drop(self, uid: str) -> None:
        """Forget an entry (sent, or taken back)."""
        with self._lock():
            write_json(self.path, [e for e in self._read() if e["uid"] != uid], mode=0o600)

    def retract(self, uid: str) -> None:
        """Forget an entry no replay of its project is sending right now (undo)."""
        for entry in self.pending(uid):
            with self._lock(f".{entry['project']}"):
                self.drop(uid)

    def replay(self, ls: Any, project: int, timeout: float, account: str = "") -> int:
        """Send the project's entries in order; returns how many are still queued (those
        another process is sending right now included)."""
        options = {"timeout_in_seconds": timeout, "max_retries": 0}

        def mine(e: dict[str, Any]) -> bool:
            return e["project"] == project and e.get("account", "") in ("", account)

        with self._lock(f".{project}", timeout=timeout) as held:
            if held:
                self._send(ls, [e for e in self._read() if mine(e)], options)
        return len([e for e in self._read() if mine(e)])

    def _send(self, ls: Any, entries: list[dict[str, Any]], options: dict[str, Any]) -> None:
        for entry in entries:
            try:
                if entry.get("attempted"):  # it may have arrived, its answer lost: look first
                    existing = ls.annotations.list(id=entry["task"], request_options=options)
                    ids = {r.get("id") for a in existing for r in (_plain(a).get("result") or [])}
                    sent = entry["result"][0]["id"] in ids
                else:
                    sent = False
                if not sent:
                    self.mark_attempted(entry["uid"])  # a crash from here on: look first
                    ls.annotations.create(
                        id=entry["task"], result=entry["result"], request_options=options
                    )
            except (httpx.TransportError, OSError, LabelStudioDown):
                break  # unreachable: keep the rest in order for the next try
            except ApiError as e:
                if e.status_code is not None and e.status_code >= 500:
                    break
                raise LabelingError(f"Label Studio refused an annotation: {e.body}") from None
            self.drop(entry["uid"])


_journals: dict[Path, Journal] = {}


def journal() -> Journal:
    """This user's journal, in their data area (or home when outside a workbench)."""
    area = os.environ.get("HUBFORGE_USER_AREA")
    base = Path(area) if area else Path.home() / ".hubforge"
    path = base / "labeling" / ".journal.json"
    return _journals.setdefault(path, Journal(path))
