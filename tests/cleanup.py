"""Cleanup for ``finally``: whatever a failing test left running (jobs, endpoints, the
server and the GPUs it holds) would make later tests fail for a reason not theirs."""

from __future__ import annotations

import contextlib

API = "services/hubforge/api/"
ENDED = ("succeeded", "failed", "cancelled", "damaged")


def leave_nothing_running(workbench, user: str, token: str | None = None, password: str = ""):
    """Cancel ``user``'s unfinished jobs, undeploy their endpoints, stop their server. With
    no token, one is made by logging in with ``password`` (a browser test's user); a user the
    test never got to create has nothing to clean."""
    if token is None and password:
        with contextlib.suppress(Exception):  # no such user yet: nothing of theirs runs
            token = workbench.login_token(user, password)
    if token is not None:
        jobs = workbench.api("GET", API + "jobs", token)
        if jobs.status_code == 200:
            for job in jobs.json()["jobs"]:
                if job["state"] not in ENDED:
                    workbench.api("DELETE", f"{API}jobs/{job['id']}", token)
        endpoints = workbench.api("GET", API + "endpoints", token)
        if endpoints.status_code == 200:
            for endpoint in endpoints.json()["endpoints"]:
                workbench.api("DELETE", f"{API}endpoints/{endpoint['name']}", token)
    workbench.ensure_stopped(user)
