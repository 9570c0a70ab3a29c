"""Per-user quotas: what the service refuses and how it says so."""

from __future__ import annotations

import pytest
from traitlets import TraitError

from hubforge.service.quotas import QuotaExceeded, Quotas
from hubforge.workbench import Workbench


class Jobs:
    def __init__(self, jobs):
        self.jobs = jobs

    def list(self, owner):
        return [j for j in self.jobs if j["owner"] == owner]


class Endpoints(Jobs):
    pass


def job(owner, job_id, state, workers=1, gpus=0):
    spec = {"workers": workers, "gpus_per_worker": gpus}
    return {"owner": owner, "id": job_id, "state": state, "spec": spec}


JOBS = Jobs(
    [
        job("ann", "a1", "running", workers=2, gpus=1),
        job("ann", "a2", "pending"),
        job("ann", "a0", "succeeded", workers=4, gpus=2),  # finished: not counted
        job("bob", "b1", "running", workers=8, gpus=1),
    ]
)
ENDPOINTS = Endpoints(
    [
        {"owner": "ann", "name": "scorer", "running": True, "gpus": 1},
        {"owner": "ann", "name": "old", "running": False, "gpus": 1},
    ]
)


def test_jobs_limit():
    Quotas(jobs=3).check_job("ann", 0, JOBS, ENDPOINTS)
    with pytest.raises(QuotaExceeded, match=r"You have 2 jobs running \(limit 2\).*a1, a2"):
        Quotas(jobs=2).check_job("ann", 0, JOBS, ENDPOINTS)
    Quotas(jobs=2).check_job("carl", 0, JOBS, ENDPOINTS)  # others' jobs do not count


def test_gpus_count_running_jobs_and_endpoints():
    quotas = Quotas(gpus=4)
    assert quotas.gpus_in_use("ann", JOBS, ENDPOINTS) == 3  # 2 x 1 (a1) + 1 (scorer)
    quotas.check_job("ann", 1, JOBS, ENDPOINTS)
    with pytest.raises(QuotaExceeded, match="needs 2 GPUs; you use 3 of your 4"):
        quotas.check_job("ann", 2, JOBS, ENDPOINTS)
    with pytest.raises(QuotaExceeded, match="needs 2 GPUs"):
        quotas.check_endpoint("ann", "big", 2, JOBS, ENDPOINTS)
    Quotas().check_job("ann", 100, JOBS, ENDPOINTS)  # 0: no limit


def test_endpoints_limit_counts_new_names_only():
    quotas = Quotas(endpoints=2)
    quotas.check_endpoint("ann", "scorer", 0, JOBS, ENDPOINTS)  # a new version: fine
    with pytest.raises(QuotaExceeded, match=r"You have 2 endpoints \(limit 2\)"):
        quotas.check_endpoint("ann", "third", 0, JOBS, ENDPOINTS)


def test_workbench_settings():
    wb = Workbench(max_jobs_per_user=3, max_gpus_per_user=4, max_endpoints_per_user=5)
    q = Quotas.from_workbench(wb)
    assert (q.jobs, q.gpus, q.endpoints) == (3, 4, 5)
    with pytest.raises(TraitError, match="max_gpus_per_user=-1: 0 \\(no limit\\) or more"):
        Workbench(max_gpus_per_user=-1)


def test_each_copy_an_endpoint_may_scale_to_holds_its_gpus():
    endpoints = Endpoints(
        [
            {"owner": "ann", "name": "wide", "running": True, "gpus": 1, "replicas": {"max": 4}},
            {"owner": "ann", "name": "old", "running": True, "gpus": 2},  # before replicas: 1
        ]
    )
    quotas = Quotas(gpus=6)
    assert quotas.gpus_in_use("ann", Jobs([]), endpoints) == 6
    with pytest.raises(QuotaExceeded, match="This needs 1 GPUs; you use 6 of your 6"):
        quotas.check_endpoint("ann", "new", 1, Jobs([]), endpoints)
