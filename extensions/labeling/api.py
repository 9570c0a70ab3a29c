"""The labeling API: Label Studio projects from your data area, with label-studio-sdk 2.x.

    project = labeling.create_project("pets", "datasets/pets", ["cat", "dog"])
    project.progress           # {"labeled": 12, "total": 50, "per_label": {"cat": 7, ...}}
    task = project.next_item()  # Label Studio's own next-task (two users never get the same)
    project.annotate(task["id"], "cat")
    project.export("JSON")     # a file under your data area's labeling/ folder

Inside a hub your Label Studio account is provisioned by the hubforge service; outside one,
set HUBFORGE_LABEL_STUDIO_URL and HUBFORGE_LABEL_STUDIO_TOKEN.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import quoteattr

import httpx
from label_studio_sdk.core.api_error import ApiError

from ..atomic import file_lock, read_json, write_json
from ..client import ServiceClient, ServiceError

TASKS = ("image-classification", "text-classification", "object-detection")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}
TEXT_SUFFIXES = {".txt"}
# one import request holds at most this (Label Studio takes at most 250K tasks / 200 MB)
IMPORT_MAX_TASKS = 200_000
IMPORT_MAX_BYTES = 100 * 1024 * 1024
EXPORTS = ("JSON", "JSON_MIN", "CSV", "COCO")


class LabelingError(Exception):
    """A mistake the user can fix (unknown label, empty folder, unknown task type...)."""


class LabelStudioDown(LabelingError):
    """Label Studio answers that it is starting, or cannot start (what to do is said)."""


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


# -- connection -----------------------------------------------------------------------------
_credentials: dict[str, Any] | None = None
_teammate_credentials: dict[str, dict[str, Any]] = {}


def credentials(owner: str | None = None) -> dict[str, Any]:
    """This user's Label Studio URL and token (asked of the hubforge service once); with
    ``owner``, the ones for labeling a teammate's shared projects."""
    global _credentials
    if owner:
        if owner not in _teammate_credentials:
            _teammate_credentials[owner] = _service(
                "GET", "labeling/credentials?" + urlencode({"owner": owner})
            )
        return _teammate_credentials[owner]
    if _credentials is None:
        if os.environ.get("HUBFORGE_LABEL_STUDIO_TOKEN"):
            _credentials = {
                "api_url": os.environ["HUBFORGE_LABEL_STUDIO_URL"],
                "token": os.environ["HUBFORGE_LABEL_STUDIO_TOKEN"],
                "ui_url": os.environ.get("HUBFORGE_LABEL_STUDIO_UI", ""),
            }
        else:
            _credentials = _service("GET", "labeling/credentials")
    return _credentials


def _service(method: str, path: str, body: Any = None) -> Any:
    if not ServiceClient.available():
        raise LabelingError(
            "Labeling needs Label Studio: use it inside a Hubforge server, or set "
            "HUBFORGE_LABEL_STUDIO_URL and HUBFORGE_LABEL_STUDIO_TOKEN"
        )
    try:
        extra = {} if body is None else {"json": body}
        return _waiting_for_label_studio(lambda: ServiceClient().request(method, path, **extra))
    except ServiceError as e:
        raise LabelingError(f"Labeling: {e}") from None


STARTING_WAIT = 300  # seconds a call waits for a Label Studio that is starting


def _waiting_for_label_studio(call: Any) -> Any:
    """``call()``; while the service answers that Label Studio is finishing its start, say
    so once and try again (a first call right after the workbench starts then succeeds)."""
    from .server import STARTING

    deadline = time.monotonic() + STARTING_WAIT
    said = False
    while True:
        try:
            return call()
        except ServiceError as e:
            if e.status != 503 or STARTING not in str(e) or time.monotonic() > deadline:
                raise
        if not said:
            print("Label Studio is finishing its start…", file=sys.stderr, flush=True)
            said = True
        time.sleep(2)


_clients: dict[tuple[str, str], Any] = {}


def client(owner: str | None = None) -> Any:
    """The SDK client for this user, or for a teammate's shared projects (one per process:
    it keeps its connections open)."""
    from label_studio_sdk import LabelStudio

    creds = credentials(owner)
    key = (creds["api_url"], creds["token"])
    if key not in _clients:
        connection = httpx.Client(timeout=120, event_hooks={"response": [_unavailable]})
        _connections.append(connection)
        _clients[key] = LabelStudio(base_url=key[0], api_key=key[1], httpx_client=connection)
    return _clients[key]


_connections: list[httpx.Client] = []


def close_clients() -> None:
    """Close every SDK client's connections (a long-lived process switching users)."""
    _clients.clear()
    while _connections:
        _connections.pop().close()


def _unavailable(response: httpx.Response) -> None:
    """Label Studio answering that it is starting or cannot start (its database damaged):
    its own words, not the SDK's raw error with every header."""
    if response.status_code != 503:
        return
    response.read()
    try:
        body = response.json()
    except ValueError:
        return
    if isinstance(body, dict) and body.get("status") in ("starting", "damaged"):
        raise LabelStudioDown(str(body.get("error") or "Label Studio is not available"))


def _account(ls: Any) -> str:
    """Which account a client acts as (a journal entry is replayed only through it)."""
    for (_, token), known in _clients.items():
        if known is ls:
            return hashlib.sha256(token.encode()).hexdigest()[:12]
    return ""


def share(member: str) -> list[str]:
    """Let hub user ``member`` label your projects (all of them: Label Studio's community
    edition has no per-project members). Returns everyone you share with. They open one with
    ``open_project(name, owner=<you>)``; Label Studio never hands two people the same item."""
    return _service("POST", "labeling/shares", {"member": member})["shared_with"]


def unshare(member: str) -> list[str]:
    """Stop sharing with ``member``: their token for your projects stops working at once."""
    return _service("DELETE", f"labeling/shares/{quote(member, safe='')}")["shared_with"]


def shares() -> dict[str, list[str]]:
    """{"shared_with": [teammates], "shared_with_me": [owners]}."""
    return _service("GET", "labeling/shares")


def data_root() -> Path:
    return Path(os.environ.get("HUBFORGE_DATA", "")).expanduser()


# -- label configs --------------------------------------------------------------------------
def label_config(task: str, labels: list[str]) -> str:
    """Label Studio's XML for a task type; ``from_name`` is always "label"."""
    if task not in TASKS:
        raise LabelingError(f"task={task!r}: choose one of {', '.join(TASKS)}")
    if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise LabelingError("labels: a non-empty list of names, e.g. ['cat', 'dog']")
    if len(set(labels)) != len(labels):
        raise LabelingError(f"labels: each name once ({labels})")
    if task == "object-detection":
        items = "".join(f"<Label value={quoteattr(x)}/>" for x in labels)
        return (
            '<View><Image name="image" value="$image"/>'
            f'<RectangleLabels name="label" toName="image">{items}</RectangleLabels></View>'
        )
    items = "".join(f"<Choice value={quoteattr(x)}/>" for x in labels)
    kind = "Image" if task == "image-classification" else "Text"
    field_name = "image" if kind == "Image" else "text"
    return (
        f'<View><{kind} name="{field_name}" value="${field_name}"/>'
        f'<Choices name="label" toName="{field_name}" choice="single">{items}</Choices></View>'
    )


def _task_of(config: str) -> str:
    if "RectangleLabels" in config:
        return "object-detection"
    return "image-classification" if "<Image" in config else "text-classification"


def _labels_of(config: str) -> list[str]:
    return re.findall(r'<(?:Choice|Label) value="([^"]*)"', config)


# -- projects -------------------------------------------------------------------------------
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
        import numpy as np

        if self.task == "object-detection":
            return self._preannotate_boxes(model, image_size, model_version, batch_size)
        tasks = self.tasks(labeled=False)
        done = 0
        for start in range(0, len(tasks), batch_size):
            batch = tasks[start : start + batch_size]
            inputs = [self._model_input(t, image_size) for t in batch]
            probabilities = np.asarray(_call_model(model, inputs), dtype=np.float64)
            if probabilities.ndim != 2 or probabilities.shape != (len(batch), len(self.labels)):
                raise LabelingError(
                    f"The model answered shape {list(probabilities.shape)}; expected "
                    f"[{len(batch)}, {len(self.labels)}] (one probability per label)"
                )
            for task, row in zip(batch, probabilities, strict=True):
                best = int(row.argmax())
                self._ls.predictions.create(
                    task=task["id"],
                    result=self.result(self.labels[best]),
                    score=float(row[best]),
                    model_version=model_version,
                )
                done += 1
        return done

    def _preannotate_boxes(
        self,
        model: Any,
        image_size: tuple[int, int] | None,
        model_version: str,
        batch_size: int,
    ) -> int:
        """Detection pre-labels: the boxes a function proposes, scored by their least sure box
        (the widget shows the least sure items first)."""
        tasks = self.tasks(labeled=False)
        done = 0
        for start in range(0, len(tasks), batch_size):
            batch = tasks[start : start + batch_size]
            answers = _call_model(model, [self._model_input(t, image_size) for t in batch])
            if not isinstance(answers, list | tuple) or len(answers) != len(batch):
                raise LabelingError(
                    f"The model answered {type(answers).__name__}; expected a list with one "
                    f"list of boxes per image ({len(batch)} here)"
                )
            for task, boxes in zip(batch, answers, strict=True):
                if not boxes:
                    continue  # nothing found: nothing to accept
                scores = [float(b.get("score", 1.0)) for b in boxes]
                result = self.result(list(boxes), _image_size(task["data"]))
                for item, score in zip(result, scores, strict=True):
                    item["score"] = score
                self._ls.predictions.create(
                    task=task["id"], result=result, score=min(scores), model_version=model_version
                )
                done += 1
        return done

    def _model_input(self, task: dict[str, Any], image_size: tuple[int, int] | None) -> Any:
        data = task["data"]
        if self.task == "text-classification":
            return data["text"]
        import numpy as np
        from PIL import Image

        with Image.open(data_root() / data["hubforge_path"]) as img:
            img = img.convert("RGB")
            if image_size:
                img = img.resize((image_size[1], image_size[0]))
            return np.asarray(img, dtype=np.float32) / 255.0

    def result(
        self, label: str | list[dict[str, Any]], size: tuple[int, int] | None = None
    ) -> list[dict[str, Any]]:
        """Label Studio's result list for a class name (or detection boxes, with the image's
        ``size`` in pixels when known)."""
        to_name = "text" if self.task == "text-classification" else "image"
        if self.task == "object-detection":
            if not isinstance(label, list):
                raise LabelingError(
                    "object-detection: pass boxes, e.g. [{'label': 'car', 'x': 10, 'y': 20, "
                    "'width': 30, 'height': 15}] (percent of the image)"
                )
            result = []
            for box in label:
                self._check(box.get("label"))
                value = _box(box)
                item = {
                    "from_name": "label",
                    "to_name": to_name,
                    "type": "rectanglelabels",
                    "value": {**value, "rotation": 0, "rectanglelabels": [box["label"]]},
                }
                if size:
                    item["original_width"], item["original_height"] = size
                result.append(item)
            return result
        self._check(label)
        return [
            {
                "from_name": "label",
                "to_name": to_name,
                "type": "choices",
                "value": {"choices": [label]},
            }
        ]

    def _check(self, label: Any) -> None:
        if label not in self.labels:
            raise LabelingError(f"Unknown label {label!r}: this project has {self.labels}")

    # -- export ---------------------------------------------------------------------------
    def export(self, format: str = "JSON", path: str | os.PathLike | None = None) -> Path:
        """Write the annotations in ``format`` (JSON, JSON_MIN, CSV, or COCO for detection)
        to ``path`` (default: <your data area>/labeling/<project>-<time>.<ext>)."""
        format = format.upper()
        if format not in EXPORTS:
            raise LabelingError(f"format={format!r}: choose one of {', '.join(EXPORTS)}")
        if format == "COCO" and self.task != "object-detection":
            raise LabelingError("COCO is for object-detection projects; use JSON or CSV")
        chunks = self._ls.projects.exports.download_sync(
            self.id, export_type=format, download_all_tasks=False
        )
        data = b"".join(chunks)
        if path is None:
            area = Path(os.environ.get("HUBFORGE_USER_AREA") or data_root())
            ext = {"JSON_MIN": "json", "COCO": "zip"}.get(format, format.lower())
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = area / "labeling" / f"{self.name}-{stamp}.{ext}"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

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
        import numpy as np
        import tensorflow as tf

        if self.task == "object-detection":
            raise LabelingError(
                "to_tf_dataset gives (item, class) pairs; for boxes use export('COCO')"
            )
        if split not in ("train", "validation", "all"):
            raise LabelingError(f"split={split!r}: 'train', 'validation' or 'all'")
        if not 0 <= validation_fraction < 1:
            raise LabelingError("validation_fraction: from 0 to below 1")
        chosen = []
        for key, label in self.labeled_items():
            digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
            in_validation = int.from_bytes(digest[:4], "big") / 2**32 < validation_fraction
            if split == "all" or in_validation == (split == "validation"):
                chosen.append((key, self.labels.index(label)))
        if not chosen:
            raise LabelingError(
                f"No labeled items in the {split!r} split yet: label some first "
                f"({self.progress['labeled']} labeled)"
            )
        keys = [k for k, _ in chosen]
        labels = np.array([i for _, i in chosen], dtype=np.int64)
        if self.task == "text-classification":
            return tf.data.Dataset.from_tensor_slices((keys, labels))
        paths = [str(data_root() / k) for k in keys]

        def load(path: Any, label: Any) -> tuple[Any, Any]:
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, image_size)
            return image, label

        dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
        return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)

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
            raise LabelingError(
                f"Your label was not saved: {e.strerror} ({self.path.parent}). Free some space "
                "(or ask an admin to), then label this item again; nothing else was lost"
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


def _call_model(model: Any, inputs: list[Any]) -> Any:
    import numpy as np

    if hasattr(model, "predict") and hasattr(model, "versions"):  # a deployed endpoint
        rows = [x.tolist() if hasattr(x, "tolist") else x for x in inputs]
        return model.predict(rows)
    batch = np.stack(inputs) if not isinstance(inputs[0], str) else np.array(inputs)
    if hasattr(model, "predict"):  # Keras
        return model.predict(batch, verbose=0)
    return model(batch)


def _done(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]


def _image_size(data: dict[str, Any]) -> tuple[int, int]:
    """Width and height in pixels of a task's image in the data area."""
    from PIL import Image

    with Image.open(data_root() / data["hubforge_path"]) as image:
        return image.size


def _box(box: dict[str, Any]) -> dict[str, float]:
    """A box's x, y, width, height checked: numbers, percent of the image, inside it."""
    try:
        value = {k: float(box[k]) for k in ("x", "y", "width", "height")}
    except (KeyError, TypeError, ValueError):
        raise LabelingError(
            f"box {box!r}: give x, y, width, height as numbers (percent of the image)"
        ) from None
    inside = (
        value["x"] >= 0
        and value["y"] >= 0
        and value["width"] > 0
        and value["height"] > 0
        and value["x"] + value["width"] <= 100.001
        and value["y"] + value["height"] <= 100.001
    )
    if not inside:
        raise LabelingError(
            f"box {value}: must lie inside the image (percent: x, y >= 0, width, height > 0, "
            "x + width <= 100, y + height <= 100)"
        )
    return value


def _plain(obj: Any) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


def _labels_in(annotation: dict[str, Any]) -> list[str]:
    labels = []
    for r in annotation.get("result") or []:
        value = r.get("value", {})
        labels += value.get("choices") or value.get("rectanglelabels") or []
    return labels


def _batches(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """As few import requests as Label Studio's per-request limits allow."""
    batches: list[list[dict[str, Any]]] = []
    size = 0
    for item in items:
        item_size = len(json.dumps(item)) + 2
        if (
            not batches
            or len(batches[-1]) >= IMPORT_MAX_TASKS
            or size + item_size > IMPORT_MAX_BYTES
        ):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item_size
    return batches


def _collect(source: Any, task: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Task data for ``source``: a folder (relative to $HUBFORGE_DATA or absolute, inside it),
    a list of files, or (text tasks) a list of strings."""
    texts = isinstance(source, list | tuple) and all(
        isinstance(x, str) and Path(x).suffix.lower() not in TEXT_SUFFIXES for x in source
    )
    if task == "text-classification" and texts:
        return [
            {"text": t, "hubforge_key": hashlib.sha1(t.encode()).hexdigest()} for t in source
        ], []
    files = _files(source)
    suffixes = IMAGE_SUFFIXES if task != "text-classification" else TEXT_SUFFIXES
    root = data_root().resolve()
    items, unsupported = [], []
    for f in files:
        if f.suffix.lower() not in suffixes:
            unsupported.append(f.name)
            continue
        real = f.resolve()
        if root not in real.parents:  # a link out of the data area: Label Studio serves none
            unsupported.append(f"{f.name} (a link out of {root})")
            continue
        relative = str(real.relative_to(root))
        if task == "text-classification":
            text = f.read_text(errors="replace")
            items.append({"text": text, "hubforge_path": relative, "hubforge_key": relative})
        else:
            items.append({"hubforge_path": relative, "hubforge_key": relative})
    return items, unsupported


def _files(source: Any) -> list[Path]:
    root = data_root().resolve()
    if isinstance(source, str | os.PathLike):
        folder = Path(source)
        folder = (folder if folder.is_absolute() else root / folder).resolve()
        if root not in (folder, *folder.parents):
            raise LabelingError(
                f"{source} is outside the data area {root}: Label Studio serves files from there"
            )
        if not folder.is_dir():
            raise LabelingError(f"{source}: no such folder in the data area ({folder})")
        return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    files = []
    for item in source:
        path = Path(item)
        path = (path if path.is_absolute() else root / path).resolve()
        if root not in path.parents:
            raise LabelingError(f"{item} is outside the data area {root}")
        if not path.is_file():
            raise LabelingError(f"{item}: no such file")
        files.append(path)
    return files


def _find(ls: Any, name: str) -> Any | None:
    for raw in ls.projects.list(title=name):
        if raw.title == name:
            return raw
    return None


def create_project(
    name: str,
    source: Any,
    labels: list[str],
    task: str = "image-classification",
    shuffle: bool = True,
    seed: int = 0,
) -> Project:
    """Create project ``name`` (or reuse it) and import every item of ``source``; re-running
    adds only new items. ``project.last_import`` says what was added and skipped. Items are
    queued in an order shuffled with ``seed`` (``shuffle=False``: the source's order)."""
    if not isinstance(name, str) or not 3 <= len(name.strip()) <= 50:
        raise LabelingError(f"name={name!r}: a project name of 3 to 50 characters")
    config = label_config(task, list(labels))
    ls = client()
    raw = _find(ls, name)
    if raw is None:
        raw = ls.projects.create(title=name, label_config=config)
    elif _task_of(raw.label_config) != task or _labels_of(raw.label_config) != list(labels):
        raise LabelingError(
            f"Project {name!r} exists with task {_task_of(raw.label_config)} and labels "
            f"{_labels_of(raw.label_config)}: open_project({name!r}) or choose another name"
        )
    project = Project(raw, ls)
    project.last_import = project.import_items(source, shuffle=shuffle, seed=seed)
    return project


def open_project(name: str, owner: str | None = None) -> Project:
    """Your project ``name``, or ``owner``'s when they shared their projects with you."""
    ls = client(owner)
    raw = _find(ls, name)
    if raw is None:
        names = [p.name for p in list_projects(owner)]
        whose = f"{owner}'s" if owner else "yours"
        raise LabelingError(f"No project {name!r}; {whose}: {names or 'none yet'}")
    project = Project(raw, ls)
    project.owner = owner
    return project


def list_projects(owner: str | None = None) -> list[Project]:
    """Your projects, or ``owner``'s shared ones."""
    ls = client(owner)
    projects = [Project(raw, ls) for raw in ls.projects.list()]
    for project in projects:
        project.owner = owner
    return projects
