"""The local queue's decisions (hubforge.jobs.fairshare): fair order, what starts, why the rest
waits, and what a higher class may preempt."""

from __future__ import annotations

import re

import pytest

from hubforge.jobs.fairshare import (
    DEFAULT_CLASSES,
    Capacity,
    Request,
    Running,
    UnknownPriority,
    Usage,
    ordered,
    preemptions,
    to_start,
    waiting_reasons,
)

NOW = 10_000.0


def gpu_job(id: str, owner: str, submitted: float, priority: str = "normal", gpus: int = 1):
    return Request(id, owner, gpus=gpus, cpus=1, priority=priority, submitted=submitted)


def test_one_users_ten_jobs_do_not_starve_a_teammates_one():
    queued = [gpu_job(f"heavy{i}", "hana", i) for i in range(10)] + [gpu_job("one", "tom", 50)]
    started = to_start(queued, Capacity(gpus=2, cpus=16), Usage(), DEFAULT_CLASSES, NOW)
    assert [r.id for r in started] == ["heavy0", "one"]


def test_a_user_whose_jobs_run_now_waits_behind_one_whose_do_not():
    """GPUs free one at a time, each pass picks one job: jobs running now count as use to
    come, or one user would get two GPUs in a row before their use was charged."""
    queued = [gpu_job("hana2", "hana", 1), gpu_job("tom2", "tom", 2)]
    running = [gpu_job("hana1", "hana", 0)]
    free = Capacity(gpus=1, cpus=16)
    assert [r.id for r in ordered(queued, Usage(), DEFAULT_CLASSES, NOW)] == ["hana2", "tom2"]
    started = to_start(queued, free, Usage(), DEFAULT_CLASSES, NOW, running)
    assert [r.id for r in started] == ["tom2"]
    reasons = waiting_reasons(queued, free, Usage(), DEFAULT_CLASSES, NOW, running=running)
    assert list(reasons) == ["hana2"]


def test_the_least_served_user_goes_first_and_use_decays():
    usage = Usage(half_life=100)
    usage.add("hana", 1000.0, NOW)
    queued = [gpu_job("h", "hana", 1), gpu_job("t", "tom", 2)]
    assert [r.id for r in ordered(queued, usage, DEFAULT_CLASSES, NOW)] == ["t", "h"]
    assert usage.of("hana", NOW + 100) == pytest.approx(500.0)
    # long after, hana's use no longer counts: the older submission goes first
    assert [r.id for r in ordered(queued, usage, DEFAULT_CLASSES, NOW + 10_000)] == ["h", "t"]


def test_running_jobs_are_charged_for_the_time_they_ran():
    usage = Usage()
    running = [Running(gpu_job("a", "ana", 0, gpus=2), started=NOW - 50)]
    usage.charge(running, since=NOW - 100, now=NOW)
    assert usage.of("ana", NOW) == pytest.approx(100.0)  # 50 s on 2 GPUs
    assert Usage.from_dict(usage.to_dict()).of("ana", NOW) == pytest.approx(100.0)


def test_priority_before_fairness():
    usage = Usage()
    usage.add("hana", 1e6, NOW)
    queued = [gpu_job("t", "tom", 1, "batch"), gpu_job("h", "hana", 2, "interactive")]
    assert [r.id for r in ordered(queued, usage, DEFAULT_CLASSES, NOW)] == ["h", "t"]
    with pytest.raises(UnknownPriority, match="use one of batch, interactive, normal"):
        ordered([gpu_job("x", "tom", 1, "urgent")], usage, DEFAULT_CLASSES, NOW)


def test_a_big_job_is_not_overtaken_by_small_gpu_jobs_but_cpu_work_runs_beside_it():
    queued = [
        gpu_job("big", "ana", 1, gpus=4),
        gpu_job("small", "bob", 2, gpus=1),
        Request("cpu", "cid", gpus=0, cpus=1, submitted=3),
    ]
    started = to_start(queued, Capacity(gpus=2, cpus=8), Usage(), DEFAULT_CLASSES, NOW)
    assert [r.id for r in started] == ["cpu"]
    reasons = waiting_reasons(queued, Capacity(gpus=2, cpus=8), Usage(), DEFAULT_CLASSES, NOW)
    assert reasons["big"] == {
        "position": 1,
        "reason": "waiting for 4 GPUs and 1 CPU slot (2 GPUs, 8 slots free); yours is next",
    }
    assert reasons["small"]["position"] == 2
    assert reasons["small"]["reason"].endswith("; 1 job ahead, of ana")
    assert "cpu" not in reasons


def test_cpu_slots_let_only_a_few_cpu_jobs_run_at_once():
    queued = [Request(f"c{i}", "ana", cpus=2, submitted=i) for i in range(10)]
    started = to_start(queued, Capacity(gpus=0, cpus=4), Usage(), DEFAULT_CLASSES, NOW)
    assert [r.id for r in started] == ["c0", "c1"]


def test_preemption_takes_only_lower_preemptible_work_the_newest_first():
    running = [
        Running(gpu_job("old-batch", "ana", 0, "batch"), started=NOW - 500),
        Running(gpu_job("new-batch", "ana", 1, "batch"), started=NOW - 10),
        Running(gpu_job("normal", "bob", 2, "normal"), started=NOW - 5),
    ]
    urgent = gpu_job("urgent", "cid", 3, "interactive")
    victims = preemptions(urgent, running, Capacity(gpus=0, cpus=8), DEFAULT_CLASSES)
    assert [v.request.id for v in victims] == ["new-batch"]
    two = gpu_job("two", "cid", 3, "interactive", gpus=2)
    assert [v.request.id for v in preemptions(two, running, Capacity(0, 8), DEFAULT_CLASSES)] == [
        "new-batch",
        "old-batch",
    ]
    # never for more than the preemptible work could free, and never for the same class
    three = gpu_job("three", "cid", 3, "interactive", gpus=3)
    assert preemptions(three, running, Capacity(0, 8), DEFAULT_CLASSES) == []
    batch = gpu_job("b", "cid", 3, "batch")
    assert preemptions(batch, running, Capacity(0, 8), DEFAULT_CLASSES) == []


def test_admins_configure_the_classes_and_who_may_use_them():
    from hubforge.jobs.fairshare import classes_from_config, may_use
    from hubforge.workbench import Workbench

    classes = classes_from_config(
        [
            {"name": "oncall", "value": 400, "users": ["olga"]},
            {"name": "normal", "value": 200},
            {"name": "batch", "value": 100, "preemptible": True},
        ]
    )
    oncall = classes[0]
    assert may_use(oncall, "olga") and not may_use(oncall, "bob")
    assert may_use(classes[1], "bob") and classes[2].preemptible
    for bad, message in [
        ([{"name": "batch", "value": 1}], "must include 'normal'"),
        ([{"name": "normal", "value": "high"}], "'value' must be a whole number"),
        ([{"name": "normal", "value": 1, "users": "olga"}], "'users' must be a list"),
        ([{"name": "normal", "value": 1, "prio": 2}], "unknown key(s) ['prio']"),
        ([{"name": "normal", "value": 1}, {"name": "normal", "value": 2}], "each name once"),
        (["normal"], "give each class as"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            classes_from_config(bad)
    with pytest.raises(Exception, match=r"Workbench.priority_classes: .*must include 'normal'"):
        Workbench(priority_classes=[{"name": "batch", "value": 1}])
    assert [c.name for c in classes_from_config(Workbench().priority_classes)] == [
        c.name for c in DEFAULT_CLASSES
    ]
