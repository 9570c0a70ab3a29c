"""Listing a user's jobs while that user swaps their jobs folder and job folders for links
and back in a tight loop (CI25: the service's GET jobs answered 500 once, a job.json gone
between the listing and the read): only job errors (404, 409), never anything else."""

from __future__ import annotations

import collections
import contextlib
import itertools
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


def test_submitting_while_the_owner_swaps_the_jobs_folder_answers_a_job_or_409(tmp_path):
    """CI52: the job was made and started, its owner moved the folder away that instant, and
    the submit's own re-read raised JobNotFound (a 500 through the service). A submit answers
    with the job it made, or refuses with 409; nothing else escapes."""
    backend = LocalJobBackend(tmp_path / "data")
    backend.submit("bo", JobSpec(name="first"), "print(1)")
    area = tmp_path / "data" / "users" / "bo"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stop, swaps = threading.Event(), collections.Counter()

    def swap() -> None:
        jobs, real = area / "jobs", area / "jobs.real"
        while not stop.is_set():
            try:
                os.rename(jobs, real)
            except OSError:
                swaps["missed"] += 1
                continue
            with contextlib.suppress(OSError):  # the submit may make a new jobs folder first
                os.symlink(elsewhere, jobs)
                time.sleep(0.001)
                os.unlink(jobs)
            for attempt in itertools.count():  # put the real one back, whatever is there now
                try:
                    os.rename(real, jobs)  # (over an empty folder the submit made: fine)
                    break
                except OSError:
                    if jobs.is_symlink():
                        os.unlink(jobs)
                    else:  # a jobs folder with a job in it: the owner moves it aside
                        os.rename(jobs, area / f"jobs.aside{swaps['done']}-{attempt}")
            swaps["done"] += 1
            time.sleep(0.003)  # the real one stays a moment: some submits get through

    swapper = threading.Thread(target=swap)
    swapper.start()
    made, seen = [], collections.Counter()
    try:
        # until the race has run a while and some submits got through (each made job runs)
        end = time.monotonic() + 8
        while time.monotonic() < end and (swaps["done"] < 100 or len(made) < 5) and len(made) < 30:
            try:
                record = backend.submit("bo", JobSpec(name="race"), "print(2)")
            except JobError as e:
                seen[e.status] += 1
            else:
                assert record["owner"] == "bo" and record["id"].startswith("race-"), record
                made.append(record["id"])
                seen["made"] += 1
    finally:
        stop.set()
        swapper.join()
    assert swaps["done"] >= 20, swaps  # the race ran
    assert set(seen) <= {"made", 409}, seen
    assert seen["made"], seen  # some got through between the swaps
    assert not os.listdir(elsewhere), "a job was written through the link"
    for job_id in made:  # every job it answered with is in its owner's area (maybe moved)
        assert list(area.glob(f"jobs*/{job_id}/job.json")), job_id
