"""Listing a user's jobs while that user swaps their jobs folder and job folders for links
and back in a tight loop (CI25: the service's GET jobs answered 500 once, a job.json gone
between the listing and the read): only job errors (404, 409), never anything else."""

from __future__ import annotations

import collections
import os
import threading
import time

from hubforge.jobs.errors import JobError, JobNotFound
from hubforge.jobs.local import LocalJobBackend
from hubforge.jobs.spec import JobSpec


def test_listing_while_the_owner_swaps_folders_for_links_raises_only_job_errors(tmp_path):
    backend = LocalJobBackend(tmp_path / "data")
    for i in range(3):
        backend.submit("bo", JobSpec(name=f"r{i}"), "print(1)")
    deadline = time.monotonic() + 60
    while any(j["state"] not in ("succeeded", "failed") for j in backend.list("bo")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    area = tmp_path / "data" / "users" / "bo"
    elsewhere = tmp_path / "elsewhere" / "x"
    elsewhere.mkdir(parents=True)
    (elsewhere / "job.json").write_text("{}")
    stop, swaps = threading.Event(), collections.Counter()

    def swap() -> None:
        jobs = area / "jobs"
        while not stop.is_set():
            try:
                os.rename(jobs, area / "jobs.real")
                os.symlink(elsewhere.parent, jobs)
                os.unlink(jobs)
                os.rename(area / "jobs.real", jobs)
                one = jobs / sorted(os.listdir(jobs))[0]
                os.rename(one, area / "one.real")
                os.symlink(elsewhere, one)
                os.unlink(one)
                os.rename(area / "one.real", one)
                swaps["done"] += 1
            except OSError:
                swaps["missed"] += 1

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen: collections.Counter = collections.Counter()
    try:
        end = time.monotonic() + 4
        while time.monotonic() < end:
            try:
                seen[len(backend.list("bo"))] += 1
            except (JobError, JobNotFound) as e:
                seen[e.status] += 1
    finally:
        stop.set()
        swapper.join()
    assert swaps["done"] > 100, swaps
    assert set(seen) <= {0, 1, 2, 3, 409}, seen  # lists (some jobs hidden), or 409
