"""The labeling widget: one item at a time, label buttons with keys 1-9, skip, back, a
progress bar, the model's pre-label accepted with Enter. Every action has a Python method.

Detection projects draw boxes instead: pick a label (1-9 or its button), drag on the image,
Backspace removes the last box, Enter saves the item's boxes.

Items come from Label Studio's own next-task queue (an item shown to you is locked for you,
so two people never label the same one); annotations go through the journal (nothing is lost
when Label Studio is away). Images are read from the data area and sent to the browser
inline, so the widget needs no Label Studio session.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t
from PIL import Image

from hubforge import labeling
from hubforge.labeling.api import data_root

from .label_training import TrainsModels, trainable

ESM = """
// Everything that comes from Label Studio or the project (labels, pre-labels, box labels,
// names, texts, status) goes into the page as text (textContent), never as HTML.
const h = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "style") Object.assign(e.style, v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat())
    if (c !== null && c !== undefined && c !== false)
      e.append(c instanceof Node ? c : String(c));
  return e;
};
const pct = (v) => `${Math.min(100, Math.max(0, Number(v) || 0))}%`;
const safeLink = (url) => (typeof url === "string" &&
  (url.startsWith("/") || url.startsWith("http://") || url.startsWith("https://")) ? url : null);
const safeImage = (src) => (typeof src === "string" && src.startsWith("data:image/") ? src : null);
function render({ model, el }) {
  el.classList.add("hubforge-label");
  el.tabIndex = 0;
  const draw = () => {
    const item = model.get("item") || {};
    const labels = model.get("labels") || [];
    const progress = model.get("progress") || {};
    const boxes = model.get("boxes") || [];
    const detect = model.get("detection");
    const preboxes = item.preboxes || [];
    const sure = item.score != null ? ` (${Math.round(item.score * 100)}%)` : "";
    let pre = item.prelabel ? h("div", { class: "hf-pre" }, "model: ",
      h("b", {}, String(item.prelabel)), sure, " — Enter accepts") : null;
    if (detect && preboxes.length && !boxes.length)
      pre = h("div", { class: "hf-pre" }, "model: ",
        h("b", {}, `${preboxes.length} box${preboxes.length === 1 ? "" : "es"}`), sure,
        " — Enter accepts, or draw your own");
    let body = h("div", { class: "hf-done" }, "All items are labeled.");
    const zoom = model.get("zoom");
    const image = (extra) => h("img", { class: `hf-item${zoom ? " hf-zoomed" : ""}`,
      src: safeImage(item.src), ...extra });
    if (item.kind === "image" && !detect) body = image({ title: "z or +: zoom" });
    if (item.kind === "image" && detect) {
      const box = (b, cls, text) => h("div", { class: `hf-box ${cls}`.trim(),
        style: { left: pct(b.x), top: pct(b.y), width: pct(b.width), height: pct(b.height) } },
        h("span", {}, text));
      const shown = boxes.map((b, i) => box(b, "", `${i + 1} ${b.label}`));
      const guessed = boxes.length ? [] : preboxes.map((b) => box(b, "hf-guess", String(b.label)));
      body = h("div", { class: "hf-canvas" }, image({ draggable: "false" }), shown, guessed,
        h("div", { class: "hf-box hf-drawing", hidden: true }));
    }
    if (item.kind === "text") body = h("div", { class: "hf-item hf-text" }, String(item.text));
    const total = progress.total || 0, done = progress.labeled || 0;
    const key = (k) => h("kbd", {}, k);
    const help = model.get("help") ? h("div", { class: "hf-help", role: "dialog" },
      h("b", {}, "Shortcuts"), h("ul", {},
        h("li", {}, key("1"), "…", key("9"), detect ? " pick the label of new boxes" : " label"),
        h("li", {}, key("Enter"), detect ? " save the boxes (or the model's)" :
          " accept the model's label"),
        detect ? h("li", {}, key("Backspace"), " remove the last box") : null,
        h("li", {}, key("s"), " skip · ", detect ? null : [key("Backspace"), ", "], key("b"),
          " or ", key("Ctrl+Z"), " back (undo)"),
        h("li", {}, key("z"), " or ", key("+"), ": zoom · ", key("?"), " this card"))) : null;
    const buttons = labels.map((l, i) => h("button", { "data-i": i, disabled: !item.id,
      class: detect && model.get("current") === l ? "hf-current" : null },
      `${i < 9 ? (i + 1) + " " : ""}${l}`));
    if (detect) buttons.push(
      h("button", { "data-a": "submit", disabled: !(boxes.length || preboxes.length) },
        `Save ${boxes.length} box${boxes.length === 1 ? "" : "es"} (Enter)`),
      h("button", { "data-a": "remove_box" }, "Remove last (Backspace)"));
    buttons.push(h("button", { "data-a": "skip" }, "Skip (s)"),
      h("button", { "data-a": "back" }, detect ? "Back (b)" : "Back (Backspace)"));
    const training = model.get("training") || {};
    if (model.get("trainable") && !detect)
      buttons.push(h("button", { "data-a": "train", class: "hf-train",
        disabled: training.state === "running",
        title: "Search for a classifier of the labeled items (every trial a job)" },
        "Train a model"));
    const trained = training.text ? h("div", { class: "hf-training" }, String(training.text),
      safeLink(training.report) ? [" · ", h("a", { href: safeLink(training.report),
        target: "_blank", class: "hf-report" }, "Report")] : null) : null;
    el.replaceChildren(
      h("div", { class: "hf-bar" },
        h("div", { style: { width: pct(total ? 100 * done / total : 0) } })),
      h("div", { class: "hf-tools" },
        h("button", { class: "hf-zoom-button", "data-a": "zoom", title: "Zoom (z)" },
          zoom ? "\u2212" : "+"),
        h("button", { class: "hf-help-button", "data-a": "help", title: "Keyboard shortcuts (?)" },
          "?")),
      h("div", { class: "hf-count" }, `${done} / ${total} labeled `,
        h("span", { class: "hf-name" }, String(item.name || ""))),
      help, body, pre,
      h("div", { class: "hf-buttons" }, buttons),
      h("div", { class: "hf-status" }, String(model.get("status") || "")),
      trained,
      h("a", { class: "hf-link", href: safeLink(model.get("link")), target: "_blank" },
        "Open in Label Studio"));
    el.querySelectorAll("button[data-i]").forEach((b) =>
      b.addEventListener("click", () => model.send({ action: "label", index: +b.dataset.i })));
    el.querySelectorAll("button[data-a]").forEach((b) =>
      b.addEventListener("click", () => local(b.dataset.a) || model.send({ action: b.dataset.a })));
    const img = el.querySelector("img.hf-item");  // a click on it: keys go to the widget
    if (img && !detect) img.addEventListener("click", () => el.focus());
    const canvas = el.querySelector(".hf-canvas");
    if (canvas) drawBoxes(canvas);
  };
  // zoom and the shortcut card live in the browser only
  const local = (action) => {
    if (action !== "zoom" && action !== "help") return false;
    model.set(action, !model.get(action));
    model.save_changes();
    return true;
  };
  // drag on the image: a box of the current label, in percent of the image
  const drawBoxes = (canvas) => {
    const img = canvas.querySelector("img"), ghost = canvas.querySelector(".hf-drawing");
    let start = null;
    const at = (e) => {
      const r = img.getBoundingClientRect();
      const clamp = (v) => Math.min(100, Math.max(0, v));
      return [clamp(100 * (e.clientX - r.left) / r.width),
        clamp(100 * (e.clientY - r.top) / r.height)];
    };
    const rect = (a, b) => ({ x: Math.min(a[0], b[0]), y: Math.min(a[1], b[1]),
      width: Math.abs(a[0] - b[0]), height: Math.abs(a[1] - b[1]) });
    canvas.addEventListener("mousedown", (e) => { start = at(e); e.preventDefault(); });
    canvas.addEventListener("mousemove", (e) => {
      if (!start) return;
      const r = rect(start, at(e));
      Object.assign(ghost.style, { left: r.x + "%", top: r.y + "%", width: r.width + "%",
        height: r.height + "%" });
      ghost.hidden = false;
    });
    window.addEventListener("mouseup", (e) => {
      if (!start || !canvas.isConnected) { start = null; return; }
      const r = rect(start, at(e));
      start = null;
      ghost.hidden = true;
      if (r.width > 0.5 && r.height > 0.5) model.send({ action: "box", box: r });
    });
  };
  el.addEventListener("keydown", (e) => {
    const detect = model.get("detection");
    if (e.key >= "1" && e.key <= "9") model.send({ action: "label", index: +e.key - 1 });
    else if (e.key === "Enter") model.send({ action: detect ? "submit" : "accept" });
    else if (e.key === "Backspace") model.send({ action: detect ? "remove_box" : "back" });
    else if (e.key === "s") model.send({ action: "skip" });
    else if ((e.key === "z" || e.key === "+") && !(e.ctrlKey || e.metaKey)) local("zoom");
    else if (e.key === "?") local("help");
    else if (e.key === "Escape" && model.get("help")) local("help");
    else if (e.key === "b" || (e.key === "z" && (e.ctrlKey || e.metaKey)))
      model.send({ action: "back" });
    else return;
    e.preventDefault();
    e.stopPropagation();
  });
  for (const name of ["item", "labels", "progress", "status", "boxes", "current", "zoom", "help",
    "trainable", "training"])
    model.on(`change:${name}`, draw);
  // the count comes from Label Studio: asked again when the widget gets focus (other cells,
  // other people may have labeled meanwhile), at most every 2 s
  let asked = 0;
  el.addEventListener("focusin", () => {
    if (Date.now() - asked < 2000) return;
    asked = Date.now();
    model.send({ action: "refresh" });
  });
  draw();
  el.focus();
}
export default { render };
"""

CSS = """
.hubforge-label { outline: none; max-width: 640px; color: var(--jp-ui-font-color1, #111);
  font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-ui-font-size1, 13px); }
.hubforge-label:focus { box-shadow: 0 0 0 2px var(--jp-brand-color1, #1976d2); }
.hubforge-label .hf-bar { background: var(--jp-layout-color3, #ddd); height: 6px;
  border-radius: 3px; overflow: hidden; }
.hubforge-label .hf-bar div { background: var(--jp-brand-color1, #1976d2); height: 6px; }
.hubforge-label .hf-count { margin: 4px 0; }
.hubforge-label .hf-item { max-width: 100%; max-height: 420px; margin: 8px 0;
  image-rendering: pixelated; min-width: 256px; }
.hubforge-label .hf-item.hf-zoomed { max-width: none; max-height: none; width: 200%; }
.hubforge-label .hf-name { margin-left: 12px; font-family: var(--jp-code-font-family, monospace);
  color: var(--jp-ui-font-color2, #555); }
.hubforge-label .hf-tools { float: right; }
.hubforge-label .hf-tools button { min-width: 24px; }
.hubforge-label .hf-help { border: var(--jp-border-width, 1px) solid var(--jp-border-color1, #ccc);
  background: var(--jp-layout-color2, #f5f5f5); padding: 4px 12px; margin: 4px 0; }
.hubforge-label kbd { border: 1px solid var(--jp-border-color1, #bbb); border-radius: 3px;
  padding: 0 4px; background: var(--jp-layout-color1, white);
  font-family: var(--jp-code-font-family, monospace); font-size: 90%; }
.hubforge-label .hf-text { white-space: pre-wrap; padding: 8px;
  border: var(--jp-border-width, 1px) solid var(--jp-border-color2, #ddd);
  background: var(--jp-layout-color1, white); }
.hubforge-label button { margin: 2px; padding: 2px 10px; cursor: pointer;
  color: var(--jp-ui-font-color1, #111); background: var(--jp-layout-color2, #eee);
  border: var(--jp-border-width, 1px) solid var(--jp-border-color1, #bbb);
  border-radius: var(--jp-border-radius, 2px); font: inherit; }
.hubforge-label button:hover:not(:disabled) { background: var(--jp-layout-color3, #ddd); }
.hubforge-label button:disabled { color: var(--jp-ui-font-color3, #999); cursor: default; }
.hubforge-label .hf-pre { color: var(--jp-ui-font-color2, #555); }
.hubforge-label .hf-status { color: var(--jp-ui-font-color2, #777); font-size: 90%; }
.hubforge-label .hf-link, .hubforge-label .hf-report {
  color: var(--jp-content-link-color, #1976d2); }
.hubforge-label .hf-training { margin: 4px 0; }
.hubforge-label .hf-canvas { position: relative; display: inline-block; cursor: crosshair;
  user-select: none; }
.hubforge-label .hf-canvas img { display: block; min-width: 320px; }
.hubforge-label .hf-box { position: absolute; border: 2px solid var(--jp-error-color1, #d32f2f);
  box-sizing: border-box; pointer-events: none; }
.hubforge-label .hf-box span { background: var(--jp-error-color1, #d32f2f); color: white;
  font-size: 11px; }
.hubforge-label .hf-drawing { border-style: dashed; }
.hubforge-label .hf-guess { border: 2px dashed var(--jp-success-color1, #388e3c); }
.hubforge-label .hf-guess span { background: var(--jp-success-color1, #388e3c); }
.hubforge-label .hf-current { font-weight: bold;
  outline: 2px solid var(--jp-brand-color1, #1976d2); }
"""


REFRESH = object()  # a job of the widget's thread: ask Label Studio for the count


class LabelWidget(TrainsModels, anywidget.AnyWidget):
    _esm = ESM
    _css = CSS
    labels = t.List(t.Unicode()).tag(sync=True)
    item = t.Dict().tag(sync=True)
    progress = t.Dict().tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    link = t.Unicode("").tag(sync=True)
    detection = t.Bool(False).tag(sync=True)
    boxes = t.List(t.Dict()).tag(sync=True)  # the current item's boxes, percent of the image
    current = t.Unicode("").tag(sync=True)  # the label new boxes get
    zoom = t.Bool(False).tag(sync=True)  # the image at twice its fitted size
    help = t.Bool(False).tag(sync=True)  # the shortcut card (the ? key) is open
    trainable = t.Bool(False).tag(sync=True)  # "Train a model" offered (classification)
    training = t.Dict().tag(sync=True)  # the search it started: name, state, text, report

    def __init__(
        self,
        project: labeling.Project,
        order: str = "queue",
        train_trials: int = 6,
        **kwargs: Any,
    ):
        """``order``: "queue" (Label Studio's next task) or "uncertain" (least confident
        pre-label first); ``train_trials``: the trials "Train a model" starts."""
        detection = project.task == "object-detection"
        super().__init__(
            labels=list(project.labels),
            link=project.url,
            detection=detection,
            current=project.labels[0] if detection else "",
            **kwargs,
        )
        if order not in ("queue", "uncertain"):
            raise labeling.LabelingError(f"order={order!r}: 'queue' or 'uncertain'")
        self.project = project
        self.order = order
        self.train_trials = train_trials
        self.task: dict[str, Any] | None = None
        self._folders: list[list[str]] | None = None  # the project's storage folders
        self.confirmed = False  # Label Studio has locked the shown item for this user
        self.history: list[tuple[dict[str, Any], str]] = []  # (task, journal uid)
        self.skipped: set[int] = set()
        self.latencies: list[float] = []  # seconds from an action to the next item shown
        self._candidates: list[dict[str, Any]] = []
        self._seen: set[int] = set()
        self._jobs: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, name="hubforge-label", daemon=True).start()
        self.on_msg(self._on_msg)
        counts = project.progress
        self.progress = {"labeled": counts["labeled"], "total": counts["total"]}
        self._show(self._next_task(), confirmed=True)
        self.observe(self._offer_training, names="progress")
        self._offer_training()

    # -- what the browser sends ---------------------------------------------------------
    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        try:
            action = content.get("action")
            if action == "label":
                index = int(content["index"])
                if 0 <= index < len(self.labels):
                    if self.detection:
                        self.current = self.labels[index]
                    else:
                        self.label(self.labels[index])
            elif action == "box":
                box = {k: float(content["box"][k]) for k in ("x", "y", "width", "height")}
                self.add_box(self.current, **box)
            elif action == "train":
                self.train_model()
            elif action in ("accept", "skip", "back", "submit", "remove_box"):
                getattr(self, action)()
            elif action == "refresh":
                self._jobs.put(REFRESH)  # asked of Label Studio off the kernel's comm thread
        except labeling.LabelingError as e:
            self.status = str(e)  # shown as text

    def _offer_training(self, _change: Any = None) -> None:
        self.trainable = trainable(self.project, self.progress.get("labeled", 0))

    # -- actions (the same methods scripts and tests call) --------------------------------
    def label(self, label: str) -> dict[str, Any] | None:
        """Label the current item and show the next at once; the label is sent, and the
        next item locked for you, in the background (``wait()`` waits for both)."""
        if self.detection:
            raise labeling.LabelingError(
                "This is a detection project: draw boxes (add_box), then submit()"
            )
        return self._record(label, f"Saved {label}")

    def add_box(self, label: str, x: float, y: float, width: float, height: float) -> None:
        """Add a box (percent of the image: left, top, width, height) to the current item."""
        box = {"label": label, "x": x, "y": y, "width": width, "height": height}
        self.project.result([box])  # checks the label and the numbers, naming the problem
        self.boxes = [*self.boxes, {k: round(v, 2) if k != "label" else v for k, v in box.items()}]
        self.status = f"{len(self.boxes)} box(es): Enter saves them"

    def remove_box(self) -> None:
        """Take the last box off the current item."""
        if self.boxes:
            self.boxes = self.boxes[:-1]

    def submit(self) -> dict[str, Any] | None:
        """Save the current item's boxes (none drawn: the model's, if it proposed some) and
        show the next item."""
        if not self.boxes and self.item.get("preboxes"):
            self.boxes = [dict(b) for b in self.item["preboxes"]]
        if not self.boxes:
            self.status = "Draw at least one box first (or press s to skip the item)"
            return None
        size = {"original_width": self.item["width"], "original_height": self.item["height"]}
        boxes = [{**box, **size} for box in self.boxes]
        return self._record(boxes, f"Saved {len(boxes)} box(es)")

    def _record(self, value: Any, saved: str) -> dict[str, Any] | None:
        started = time.perf_counter()
        self.wait()  # the shown item is locked for us (or was replaced) before we label it
        if self.task is None:
            return None
        task = self.task
        entry = self.project.queue_annotation(task["id"], value)
        self.history.append((task, entry["uid"]))
        following = self._candidate()
        with self.hold_sync():  # the browser gets the new item, count and status together
            self.progress = {**self.progress, "labeled": self.progress["labeled"] + 1}
            self.status = saved
            self._show(following, confirmed=False)
        self.latencies.append(time.perf_counter() - started)
        self._jobs.put(following["id"] if following else None)
        return {"uid": entry["uid"], "task": task["id"]}

    def wait(self, timeout: float = 60) -> None:
        """Until the labels so far are sent (or journaled) and the shown item is confirmed."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def refresh_count(self) -> None:
        """The labeled count as Label Studio has it (labels made in other cells, by others);
        kept as it is while labels of this widget are still on their way."""
        counts = self.project.progress
        if self._jobs.unfinished_tasks <= 1:  # only the job doing this
            self.progress = {"labeled": counts["labeled"], "total": counts["total"]}

    def _work(self) -> None:
        while True:
            shown = self._jobs.get()
            try:
                if shown is REFRESH:
                    self.refresh_count()
                    continue
                queued = self.project.flush()
                if queued:
                    self.status = (
                        "Label Studio is away: labels kept in the journal, sent when it is back"
                    )
                    self.confirmed = True  # nothing to confirm against; keep going
                    continue
                if self.order == "queue" and shown is not None:
                    task = self.project.next_item()  # locks it for us
                    if task is not None and task["id"] != shown:
                        with self.hold_sync():
                            self.status = "Someone else has that item: here is the next one"
                            self._show(task, confirmed=True)
                        continue
                self.confirmed = True
                self.refresh_count()
            except Exception as e:  # keep the widget alive; say what went wrong
                self.status = f"Could not reach Label Studio: {e}"
            finally:
                self._jobs.task_done()

    def accept(self) -> dict[str, Any] | None:
        """Take the model's pre-label (or its boxes) for the current item."""
        if self.detection and self.item.get("preboxes"):
            self.boxes = []
            return self.submit()
        if not self.item.get("prelabel"):
            self.status = "No pre-label for this item"
            return None
        return self.label(self.item["prelabel"])

    def skip(self) -> None:
        """Leave the current item for later (another one is shown)."""
        self.wait()
        if self.task is not None:
            self.skipped.add(self.task["id"])
            self._show(self._next_task(), confirmed=True)

    def back(self) -> None:
        """Show the previous item again and take back its label."""
        self.wait()
        if not self.history:
            self.status = "Nothing to go back to"
            return
        task, uid = self.history.pop()
        self.project.retract(task["id"], uid)
        with self.hold_sync():
            self.progress = {**self.progress, "labeled": max(0, self.progress["labeled"] - 1)}
            self.status = "Label taken back"
            self._show(task, confirmed=True)

    # -- items -----------------------------------------------------------------------------
    def _next_task(self) -> dict[str, Any] | None:
        if self.order == "uncertain":
            # labels of this session may still be on their way: leave those items out too
            done = self.skipped | {task["id"] for task, _ in self.history}
            candidates = [t for t in self.project.tasks(labeled=False) if t["id"] not in done]
            candidates.sort(key=_confidence)
            return candidates[0] if candidates else None
        task = self.project.next_item()
        if task is not None and task["id"] in self.skipped:
            others = [t for t in self.project.tasks(labeled=False) if t["id"] not in self.skipped]
            return others[0] if others else None
        return task

    def _candidate(self) -> dict[str, Any] | None:
        """The item Label Studio will most likely hand out next, known ahead (prefetched)."""
        if self.order == "uncertain":
            return self._next_task()
        while True:
            if not self._candidates:
                self._candidates = self.project.unlabeled(limit=20)
                self._candidates = [
                    t for t in self._candidates if t["id"] not in self._seen | self.skipped
                ]
                if not self._candidates:
                    return None
            task = self._candidates.pop(0)
            if task["id"] not in self._seen and task["id"] not in self.skipped:
                return task

    def _show(self, task: dict[str, Any] | None, confirmed: bool) -> None:
        self.task = task
        self.confirmed = confirmed
        self.boxes = []
        if task is not None:
            self._seen.add(task["id"])
        if task is None:
            self.item = {}
            return
        prelabel, score = _best_prediction(task) or (None, None)
        preboxes, box_score = _best_boxes(task) or (None, None)
        self.item = {
            **self._payload(task),
            "id": task["id"],
            "prelabel": prelabel,
            "preboxes": preboxes,
            "score": score if score is not None else box_score,
        }

    def _payload(self, task: dict[str, Any]) -> dict[str, Any]:
        data = task["data"]
        if "text" in data:
            return {"kind": "text", "text": data["text"], "name": f"item {task['id']}"}
        parts = self._checked_path(data.get("hubforge_path"))
        raw = _read_beneath(data_root(), parts)
        mime = mimetypes.guess_type(parts[-1])[0] or "image/png"
        if not mime.startswith("image/"):
            raise labeling.LabelingError(f"{parts[-1]} is not an image")
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
        encoded = base64.b64encode(raw).decode()
        src = f"data:{mime};base64,{encoded}"
        return {
            "kind": "image",
            "src": src,
            "width": width,
            "height": height,
            "name": parts[-1],  # the file, shown above the image
        }

    def _checked_path(self, relative: Any) -> list[str]:
        """A task's ``hubforge_path`` (the project owner writes it) as components below the
        data area: relative, no '..', inside one of the project's storage folders."""
        if not isinstance(relative, str) or not relative or relative.startswith("/"):
            raise labeling.LabelingError(f"{relative!r}: not a path inside the project's folders")
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        if ".." in parts or "\x00" in relative or not parts:
            raise labeling.LabelingError(f"{relative!r}: not a path inside the project's folders")
        for attempt in range(2):
            if self._folders is None or attempt:
                self._folders = [
                    [p for p in f.split("/") if p not in ("", ".")]
                    for f in self.project.storage_folders()
                ]
            if any(f and len(parts) > len(f) and parts[: len(f)] == f for f in self._folders):
                return parts
        raise labeling.LabelingError(f"{relative!r} is not in one of this project's folders")


def _read_beneath(root: Path, parts: list[str]) -> bytes:
    """The bytes of the regular file root/parts, no component a link (each opened
    relative to the one above with O_NOFOLLOW)."""
    import stat

    nofollow = getattr(os, "O_NOFOLLOW", 0)
    # O_PATH: a folder the account may pass but not list (users/, 0711) can be walked through
    folder = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
    fds = [os.open(root, folder)]
    try:
        for part in parts[:-1]:
            fds.append(os.open(part, folder | nofollow, dir_fd=fds[-1]))
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | nofollow, dir_fd=fds[-1])
        fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise labeling.LabelingError(f"{parts[-1]} is not a file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    except OSError as e:
        raise labeling.LabelingError(f"{'/'.join(parts)}: cannot read it ({e.strerror})") from e
    finally:
        for fd in fds:
            os.close(fd)


def _best(task: dict[str, Any], pick: Any) -> tuple[Any, float] | None:
    """The most confident prediction's ``pick(result)`` (skipped when empty) and its score."""
    best = None
    for prediction in task.get("predictions") or []:
        found = pick(prediction.get("result") or [])
        score = prediction.get("score")
        score = 0.0 if score is None else float(score)
        if found and (best is None or score > best[1]):
            best = (found, score)
    return best


def _best_prediction(task: dict[str, Any]) -> tuple[str, float] | None:
    """The model's class for a classification task, and its score."""

    def first_choice(result: list[dict[str, Any]]) -> str | None:
        choices = [c for r in result for c in r.get("value", {}).get("choices", [])]
        return choices[0] if choices else None

    return _best(task, first_choice)


def _best_boxes(task: dict[str, Any]) -> tuple[list[dict[str, Any]], float] | None:
    """The model's boxes for a detection task (percent of the image), and its score."""

    def boxes(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "label": r["value"]["rectanglelabels"][0],
                **{k: round(float(r["value"][k]), 2) for k in ("x", "y", "width", "height")},
            }
            for r in result
            if r.get("type") == "rectanglelabels" and r.get("value", {}).get("rectanglelabels")
        ]

    return _best(task, boxes)


def _confidence(task: dict[str, Any]) -> float:
    """How sure the model is of a task (1 without a prediction): the least sure go first."""
    found = _best_prediction(task) or _best_boxes(task)
    return found[1] if found else 1.0


def label(
    project: labeling.Project | str, order: str = "queue", train_trials: int = 6
) -> LabelWidget:
    """The labeling widget for a project (or its name)."""
    if isinstance(project, str):
        project = labeling.open_project(project)
    return LabelWidget(project, order=order, train_trials=train_trials)
