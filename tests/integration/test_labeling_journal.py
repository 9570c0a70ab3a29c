"""The labeling journal is exactly-once: three processes of one user label 90 items at once
while Label Studio is killed twice (at a third and at two thirds); no label is lost, none
arrives twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hubforge import labeling
from hubforge.labeling import api, connection
from tests.integration.test_labeling import label_studio_process

pytestmark = pytest.mark.hub
ITEMS = 90  # enough for labels to queue through both kills (30 after the second)
PROCESSES = 3

WORKER = """
import json, os, sys, time
from pathlib import Path
from hubforge import labeling
project = labeling.open_project(sys.argv[1])
tasks = json.loads(sys.argv[2])
progress = Path(sys.argv[3])
class done:  # the progress file, replaced whole: the test never reads half of it
    def write_text(text):
        progress.with_suffix(".tmp").write_text(text)
        os.replace(progress.with_suffix(".tmp"), progress)
answers = []
for i, (task, label) in enumerate(tasks):
    answers.append(project.annotate(task, label, timeout=3)["queued"])
    if i % 20 == 0:
        done.write_text(str(i + 1))
done.write_text(str(len(tasks)))
deadline = time.monotonic() + 400
while (left := project.flush(timeout=5)) and time.monotonic() < deadline:
    time.sleep(1)
print(json.dumps({"queued_on_the_way": sum(answers), "left": left}))
"""


def done_count(path) -> int:
    """A worker's progress file (0 before it exists or while it is being rewritten)."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


@pytest.mark.timeout(900)  # a long story on a busy 2-core machine
def test_three_processes_90_labels_label_studio_killed_twice(workbench, tmp_path, monkeypatch):
    token = workbench.create_user("jojo")
    creds = workbench.api("GET", "services/hubforge/api/labeling/credentials", token).json()
    area = workbench.data_dir / "hdfs" / "users" / "jojo"
    env = dict(
        os.environ,
        HUBFORGE_LABEL_STUDIO_URL=creds["api_url"],
        HUBFORGE_LABEL_STUDIO_TOKEN=creds["token"],
        HUBFORGE_USER_AREA=str(area),
        HUBFORGE_DATA=str(workbench.data_dir / "hdfs"),
    )
    for var in ("HUBFORGE_SERVICE_URL", "JUPYTERHUB_API_TOKEN"):
        env.pop(var, None)
        monkeypatch.delenv(var, raising=False)
    for var in ("HUBFORGE_LABEL_STUDIO_URL", "HUBFORGE_LABEL_STUDIO_TOKEN", "HUBFORGE_USER_AREA"):
        monkeypatch.setenv(var, env[var])
    monkeypatch.setattr(connection, "_credentials", None)
    project = labeling.create_project(
        "journal",
        [f"sentence number {i}" for i in range(ITEMS)],
        ["even", "odd"],
        task="text-classification",
    )
    tasks = sorted(t["id"] for t in project.tasks())
    assert len(tasks) == ITEMS
    expected = {t: ("even" if i % 2 == 0 else "odd") for i, t in enumerate(tasks)}
    shares = [list(expected.items())[i::PROCESSES] for i in range(PROCESSES)]
    progress = [tmp_path / f"done-{i}" for i in range(PROCESSES)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, "journal", json.dumps(share), str(done)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for share, done in zip(shares, progress, strict=True)
    ]
    try:
        kills = []
        for fraction in (1 / 3, 2 / 3):  # kill -9 Label Studio twice while labels flow
            deadline = time.monotonic() + 600
            while sum(done_count(p) for p in progress) < ITEMS * fraction:
                assert time.monotonic() < deadline, "the workers stopped making progress"
                # a worker that ended early failed (one that finished wrote ITEMS/3 first)
                assert all(w.poll() in (None, 0) for w in workers), [
                    w.stderr.read() for w in workers if w.poll()
                ]
                time.sleep(0.2)
            # the hub restarts a managed service that died: wait for it before killing again
            workbench.wait_label_studio(time.monotonic() + 300)
            ls = label_studio_process(workbench)
            os.kill(ls.pid, signal.SIGKILL)
            kills.append(ls.pid)
        results = []
        for w in workers:
            out, err = w.communicate(timeout=900)
            assert w.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
            w.wait()
            w.stdout.close()  # every pipe, also of a worker that failed early
            w.stderr.close()
    assert len(set(kills)) == 2, "the hub restarted Label Studio after the first kill"
    assert sum(r["queued_on_the_way"] for r in results) > 0, "the kills were felt"
    assert [r["left"] for r in results] == [0] * PROCESSES
    workbench.wait_label_studio(time.monotonic() + 300)

    annotations: dict[int, list[str]] = {t: [] for t in tasks}
    for task in project.tasks():
        for a in task.get("annotations") or []:
            annotations[task["id"]] += api._labels_in(a)
    lost = [t for t, labels in annotations.items() if not labels]
    doubled = [t for t, labels in annotations.items() if len(labels) > 1]
    wrong = [t for t, labels in annotations.items() if labels and labels[0] != expected[t]]
    assert (len(lost), len(doubled), len(wrong)) == (0, 0, 0), (lost[:5], doubled[:5])
    assert json.loads((area / "labeling" / ".journal.json").read_text()) == []
