"""Two hubforge services on Kubernetes (#35): only the holder of the Lease starts scheduled
runs; when it stops renewing, the other takes over; two taking it at once cannot both win
(the API server's resourceVersion check, played by tests/fake_k8s.py)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from kubernetes_asyncio import client

from hubforge.kube import KubeAPI
from hubforge.schedules import Schedules
from hubforge.schedules.leader import LeaseElection
from hubforge.schedules.runs import ScheduledRuns
from tests.fake_k8s import FakeKubernetes
from tests.integration.test_schedules_local import NOTEBOOK, Clock


class Time:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cluster():
    fake = FakeKubernetes()
    config = client.Configuration(host=fake.url)
    config.api_key = {"BearerToken": fake.token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    kube = KubeAPI(config)
    yield fake, kube
    kube.close()
    fake.stop()


def test_one_holder_at_a_time_and_the_other_takes_over_when_it_stops(cluster):
    fake, kube = cluster
    time = Time()
    a = LeaseElection(kube, "hub", identity="service-a", duration=15, clock=time)
    b = LeaseElection(kube, "hub", identity="service-b", duration=15, clock=time)
    assert a.is_leader() and not b.is_leader()
    time.now += 10
    assert a.is_leader() and not b.is_leader()  # renewed: b still waits
    (lease,) = fake.of_kind("leases")
    assert lease["spec"]["holderIdentity"] == "service-a"
    assert lease["spec"]["renewTime"].startswith("2027-01-15T08:00:10")  # MicroTime, UTC
    time.now += 16  # a stopped renewing (its pod died)
    assert b.is_leader() and not a.is_leader()
    (lease,) = fake.of_kind("leases")
    assert lease["spec"]["holderIdentity"] == "service-b"
    assert lease["spec"]["leaseTransitions"] == 1


def race(electors: list[LeaseElection]) -> list[bool]:
    """Both ask at the same moment; who holds the Lease, by each."""
    start, won = threading.Barrier(len(electors)), [False] * len(electors)

    def take(i: int) -> None:
        start.wait()
        won[i] = electors[i].is_leader()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(electors))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_two_replicas_taking_a_lease_at_once_never_both_hold_it(cluster):
    _, kube = cluster
    time = Time()
    rounds = []
    for attempt in range(20):
        electors = [
            LeaseElection(kube, "hub", name=f"race-{attempt}", identity=f"s{i}", clock=time)
            for i in range(2)
        ]
        fresh = race(electors)  # a Lease nobody made yet: both try to make it
        time.now += 100  # its holder stopped renewing: both try to take it
        expired = race(electors)
        rounds.append((fresh, expired))
        assert fresh.count(True) == 1 and expired.count(True) == 1, rounds


def test_only_the_holders_pass_plans_and_submits(cluster, tmp_path):
    _, kube = cluster
    time, clock = Time(), Clock()
    schedules = Schedules(tmp_path / "schedules", clock)
    sid = schedules.create("sam", NOTEBOOK, "* * * * *")["id"]
    submitted = []

    class Jobs:  # what the pass submits (the job backends are tested elsewhere)
        def get(self, owner, job_id):
            from hubforge.jobs.errors import JobNotFound

            if job_id not in submitted:
                raise JobNotFound(job_id)
            return {"state": "running", "artifacts": {}}

        def submit(self, owner, spec, script, job_id):
            submitted.append(job_id)
            return {"state": "pending"}

    def service(identity: str) -> ScheduledRuns:
        leader = LeaseElection(kube, "hub", identity=identity, clock=time).is_leader
        return ScheduledRuns(schedules, Jobs(), leader=leader)

    a, b = service("a"), service("b")
    clock.on(60)
    b.run_pass()  # b takes the Lease first
    a.run_pass()
    clock.on(60)
    time.now += 5
    a.run_pass()
    b.run_pass()
    assert submitted == [f"{sid}-r1", f"{sid}-r2"]  # each time once, by b
    assert dt.datetime.fromisoformat(schedules.get("sam", sid)["covered"]) == clock.now.replace(
        second=0
    )
