"""A Label Studio project of yours (``Project``): its items, importing more, labeling them
through the journal, pre-labels, and what it gives back (exports, a tf.data.Dataset)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ..client import ServiceClient
from . import exports, predictions
from .configs import _check as _check_label
from .configs import _done, _labels_in, _labels_of, _plain, _result, _task_of
from .connection import _account, _service, credentials, data_root
from .errors import LabelingError
from .files import _batches, _collect, _image_size
from .journal import journal


@dataclass
class ImportReport:
    added: int = 0
    already_there: int = 0
    unsupported: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.added} added, {self.already_there} already in the project"
        if self.unsupported:
            shown = ", ".join(self.unsupported[:5]) + ("…" if len(self.unsupported) > 5 else "")
            text += f"; skipped {len(self.unsupported)} unsupported: {shown}"
        return text


class Project:
    """One Label Studio project of yours; properties read the current state."""

    def __init__(self, raw: Any, ls: Any):
        self.id: int = raw.id
        self.name: str = raw.title
        self.config: str = raw.label_config
        self.task = _task_of(self.config)
        self.labels = _labels_of(self.config)
        self._ls = ls
        self.owner: str | None = None  # set when it is a teammate's shared project
        # counts Label Studio keeps with the project (no task listing needed for a summary)
        self._counts = (
            getattr(raw, "num_tasks_with_annotations", None),
            getattr(raw, "task_number", None),
        )

    def __repr__(self) -> str:
        return f"<Project {self.name!r} {self.task} labels={self.labels}>"

    def summary(self) -> dict[str, Any]:
        """Name, task, labels and how many items are labeled, as the project list has them."""
        labeled, total = self._counts
        if labeled is None or total is None:
            progress = self.progress
            labeled, total = progress["labeled"], progress["total"]
        return {
            "id": self.id,
            "name": self.name,
            "task": self.task,
            "labels": self.labels,
            "labeled": labeled,
            "total": total,
            "owner": self.owner,
        }

    @property
    def url(self) -> str:
        """Opens the project in Label Studio's own UI, logged in as you (through your
        server, which asks the hub for a one-minute sign-in link)."""
        server = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
        if server:
            query = {"next": f"/projects/{self.id}/data"}
            if self.owner:
                query["owner"] = self.owner
            return f"{server}hubforge/labeling/open?{urlencode(query, safe='/')}"
        return f"{credentials().get('ui_url', '')}projects/{self.id}/data"

    # -- items ------------------------------------------------------------------------
    def _tasks(self, fields: str = "all") -> list[dict[str, Any]]:
        tasks = []
        for task in self._ls.tasks.list(project=self.id, fields=fields, page_size=1000):
            tasks.append(_plain(task))
        return tasks

    def tasks(self, labeled: bool | None = None) -> list[dict[str, Any]]:
        """The project's tasks (Label Studio's dicts); only labeled or unlabeled ones if
        ``labeled`` is given."""
        tasks = self._tasks("all")
        if labeled is None:
            return tasks
        return [t for t in tasks if bool(_done(t)) == labeled]

    def _keys(self) -> set[str]:
        return {t["data"].get("hubforge_key") for t in self._tasks("task_only")} - {None}

    def storage_folders(self) -> list[str]:
        """The project's local-files storage folders, relative to the data area (folders
        Label Studio serves from outside it are left out)."""
        response = self._ls._client_wrapper.httpx_client.request(
            "api/storages/localfiles", method="GET", params={"project": self.id}
        )
        response.raise_for_status()
        rows = response.json()
        rows = rows.get("results", []) if isinstance(rows, dict) else rows
        root = os.path.realpath(data_root())
        out = []
        for row in rows:
            path = os.path.normpath(str(row.get("path", "")))
            if path.startswith(root + os.sep):
                out.append(path[len(root) + 1 :])
        return out

    def import_items(self, source: Any, shuffle: bool = True, seed: int = 0) -> ImportReport:
        """Add what ``source`` has that the project does not (re-running adds nothing).

        New items join Label Studio's queue in an order shuffled with ``seed`` (the same
        items and seed, the same order), so labeling does not go through one class's
        folder or file-name run at a time; ``shuffle=False`` keeps the source's order."""
        items, unsupported = _collect(source, self.task)
        if not items and not unsupported:
            raise LabelingError(f"{source!r} has nothing to label (an empty folder or list)")
        known = self._keys()
        new, already = [], 0
        for item in items:
            if item["hubforge_key"] in known:
                already += 1
            else:
                known.add(item["hubforge_key"])  # the same item twice in one source: once
                new.append(item)
        if shuffle:
            random.Random(seed).shuffle(new)
        report = ImportReport(len(new), already, unsupported)
        if self.task != "text-classification":
            self._allow_folders({str(Path(item["hubforge_path"]).parent) for item in new})
            for item in new:
                item["image"] = self._file_url(item["hubforge_path"])
        http = self._ls._client_wrapper.httpx_client  # the SDK's session and auth
        for batch in _batches(new):
            # posted as plain JSON: the SDK's typed import validates every task (~4x slower)
            response = http.request(
                f"api/projects/{self.id}/import",
                method="POST",
                json=batch,
                request_options={"timeout_in_seconds": 600},
            )
            if response.status_code >= 400:
                raise LabelingError(f"Label Studio refused the import: {response.text[:300]}")
        return report

    def _file_url(self, relative: str) -> str:
        ui = credentials().get("ui_url") or "/"
        return f"{ui}data/local-files/?d={relative}"

    def _allow_folders(self, folders: set[str]) -> None:
        """Label Studio serves a project's local files only under its storages' folders,
        which the hubforge service makes (inside the owner's area or datasets/ only)."""
        root = data_root()
        if not folders:
            return
        if ServiceClient.available():
            body: dict[str, Any] = {
                "project": self.id,
                "folders": [str(root / folder) for folder in sorted(folders)],
            }
            if self.owner:
                body["owner"] = self.owner
            _service("POST", "labeling/storages", body)
            return
        # Label Studio reached directly (HUBFORGE_LABEL_STUDIO_URL/TOKEN, no service)
        have = {s.path for s in self._ls.import_storage.local.list(project=self.id)}
        for folder in sorted(folders):
            path = str(root / folder)
            if path not in have:
                self._ls.import_storage.local.create(
                    project=self.id, path=path, use_blob_urls=False, title=folder[-50:]
                )
                have.add(path)

    @property
    def progress(self) -> dict[str, Any]:
        counts: dict[str, int] = {x: 0 for x in self.labels}
        labeled = 0
        tasks = self._tasks("all")
        for task in tasks:
            done = _done(task)
            if done:
                labeled += 1
                for label in _labels_in(done[-1]):
                    counts[label] = counts.get(label, 0) + 1
        return {"labeled": labeled, "total": len(tasks), "per_label": counts}

    def next_item(self) -> dict[str, Any] | None:
        """The next task to label, from Label Studio's own queue (locked for you, so two
        people never get the same one); None when everything is labeled."""
        wrapper = self._ls._client_wrapper
        response = wrapper.httpx_client.request(f"api/projects/{self.id}/next", method="GET")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def annotate(
        self, task_id: int, label: str | list[dict[str, Any]], timeout: float = 10
    ) -> dict[str, Any]:
        """Record ``label`` (a class name, or boxes for detection) as your annotation.

        It is written to a journal first; if Label Studio cannot be reached it stays there
        (``{"queued": True}``) and is sent, exactly once, by the next call or ``flush()``."""
        result = self.result(label, self._size_for(task_id, label))
        entry = journal().add(self.id, task_id, result, _account(self._ls))
        self.flush(timeout)
        if journal().pending(entry["uid"]):
            return {"queued": True, "uid": entry["uid"], "task": task_id}
        return {"queued": False, "uid": entry["uid"], "task": task_id}

    def queue_annotation(self, task_id: int, label: str | list[dict[str, Any]]) -> dict[str, Any]:
        """Write the annotation to the journal only; ``flush()`` sends it (the widget does
        that in the background so the next item shows at once)."""
        result = self.result(label, self._size_for(task_id, label))
        return journal().add(self.id, task_id, result, _account(self._ls))

    def _size_for(self, task_id: int, label: Any) -> tuple[int, int] | None:
        """A detection item's image size in pixels (COCO export needs it with each box)."""
        if self.task != "object-detection" or not isinstance(label, list):
            return None
        if label and isinstance(label[0], dict) and "original_width" in label[0]:
            return int(label[0]["original_width"]), int(label[0]["original_height"])
        return _image_size(_plain(self._ls.tasks.get(id=task_id))["data"])

    def unlabeled(self, limit: int = 50) -> list[dict[str, Any]]:
        """Up to ``limit`` unlabeled tasks in Label Studio's order (reads only as many pages
        as it needs)."""
        found = []
        for task in self._ls.tasks.list(project=self.id, fields="all", page_size=100):
            plain = _plain(task)
            if not _done(plain):
                found.append(plain)
                if len(found) >= limit:
                    break
        return found

    def flush(self, timeout: float = 10) -> int:
        """Send what the journal holds for this project; returns how many are still queued."""
        return journal().replay(self._ls, self.id, timeout, _account(self._ls))

    def retract(self, task_id: int, uid: str) -> None:
        """Take back the annotation ``annotate`` returned ``uid`` for (undo)."""
        journal().retract(uid)
        for annotation in self._ls.annotations.list(id=task_id):
            plain = _plain(annotation)
            if any(str(r.get("id", "")).startswith(f"hf{uid}") for r in plain["result"] or []):
                self._ls.annotations.delete(id=plain["id"])

    def preannotate(
        self,
        model: Any,
        image_size: tuple[int, int] | None = None,
        model_version: str = "hubforge",
        batch_size: int = 32,
    ) -> int:
        """Store ``model``'s guesses for the unlabeled items as Label Studio predictions
        (with scores), so the widget can show them and order items least-confident first.

        ``model``: a deployed endpoint (``hubforge.serving`` Endpoint), a Keras model, or a
        function from a batch (images as float arrays in [0, 1], or texts) to class
        probabilities in this project's label order. Detection projects: a function from a
        batch of images to one list of boxes per image, each ``{"label", "x", "y", "width",
        "height", "score"}`` (percent of the image). Returns how many items got one."""
        return predictions.preannotate(self, model, image_size, model_version, batch_size)

    def result(
        self, label: str | list[dict[str, Any]], size: tuple[int, int] | None = None
    ) -> list[dict[str, Any]]:
        """Label Studio's result list for a class name (or detection boxes, with the image's
        ``size`` in pixels when known)."""
        return _result(self.task, self.labels, label, size)

    def _check(self, label: Any) -> None:
        _check_label(self.labels, label)

    # -- export ---------------------------------------------------------------------------
    def export(self, format: str = "JSON", path: str | os.PathLike | None = None) -> Path:
        """Write the annotations in ``format`` (JSON, JSON_MIN, CSV, or COCO for detection)
        to ``path`` (default: <your data area>/labeling/<project>-<time>.<ext>)."""
        return exports.export(self, format, path)

    def to_tf_dataset(
        self,
        image_size: tuple[int, int] = (224, 224),
        split: str = "train",
        validation_fraction: float = 0.2,
        seed: int = 0,
    ) -> Any:
        """``(image, label index)`` (images: float32 in [0, 1], resized) or ``(text, label
        index)`` of the labeled items, as a tf.data.Dataset. The train/validation split
        is decided per item from a hash of its path and ``seed``: the same item always
        lands on the same side, however many more you label."""
        return exports.to_tf_dataset(self, image_size, split, validation_fraction, seed)

    def labeled_items(self) -> list[tuple[str, str]]:
        """(file or text, label) of every labeled item, in task order."""
        out = []
        for task in self._tasks("all"):
            done = _done(task)
            labels = _labels_in(done[-1]) if done else []
            if labels:
                data = task["data"]
                out.append((data.get("hubforge_path") or data.get("text"), labels[0]))
        return out
