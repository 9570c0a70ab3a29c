"""Which servers the per-profile idle check stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hubforge.profiles import ProfileError, validate_profiles
from hubforge.service.culler import IdleCuller, idle_note

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PROFILES = [
    {"slug": "cpu", "default": True},
    {"slug": "gpu-1", "gpus": 1},
    {"slug": "gpu-long", "gpus": 1, "idle_timeout": 7200},
    {"slug": "forever", "idle_timeout": 0},
]


def user(name, profile, idle_s, **server):
    seen = (NOW - timedelta(seconds=idle_s)).isoformat().replace("+00:00", "Z")
    model = {"ready": True, "pending": None, "last_activity": seen, "started": seen}
    model["user_options"] = {"profile": profile} if profile else {}
    model.update(server)
    return {"name": name, "servers": {"": model}}


def due(*users):
    culler = IdleCuller(PROFILES, cpu_timeout=3600, gpu_timeout=1800)
    return [(s.user, s.profile, s.timeout_s) for s in culler.idle_servers(list(users), NOW)]


def test_gpu_servers_stop_sooner_than_cpu_servers():
    assert due(user("a", "gpu-1", 1900), user("b", "cpu", 1900)) == [("a", "gpu-1", 1800)]
    assert due(user("b", "cpu", 3700)) == [("b", "cpu", 3600)]


def test_a_profile_sets_its_own_timeout_and_zero_means_never():
    assert due(user("a", "gpu-long", 3000)) == []
    assert due(user("a", "gpu-long", 7300)) == [("a", "gpu-long", 7200)]
    assert due(user("f", "forever", 10**7)) == []


def test_while_jobs_wait_for_gpus_idle_gpu_servers_stop_sooner():
    culler = IdleCuller(PROFILES, cpu_timeout=3600, gpu_timeout=1800, queued_timeout=600)
    servers = [
        user("g", "gpu-1", 700),
        user("l", "gpu-long", 700),  # its own 2 h, but GPUs are wanted: 10 min
        user("c", "cpu", 700),  # holds no GPU: not sooner
        user("r", "gpu-1", 300),  # active recently: kept
    ]
    assert culler.idle_servers(servers, NOW) == []  # no job waits
    due = culler.idle_servers(servers, NOW, wanted=1)
    assert [(s.user, s.timeout_s) for s in due] == [("g", 600), ("l", 600)]
    off = IdleCuller(PROFILES, cpu_timeout=3600, gpu_timeout=1800, queued_timeout=0)
    assert off.idle_servers(servers, NOW, wanted=1) == []


def test_recent_activity_pending_and_unknown_profiles():
    assert due(user("a", "gpu-1", 10)) == []
    assert due(user("a", "gpu-1", 9999, pending="stop")) == []
    assert due(user("a", "gpu-1", 9999, ready=False)) == []
    # no profile recorded (or one removed since): the default profile's timeout
    assert due(user("a", None, 3700), user("b", "gone", 3700)) == [
        ("a", "cpu", 3600),
        ("b", "cpu", 3600),
    ]
    # never active: idle since it started
    started = (NOW - timedelta(seconds=2000)).isoformat()
    assert due(user("a", "gpu-1", 0, last_activity=None, started=started)) == [("a", "gpu-1", 1800)]


def test_named_servers_are_checked_too():
    alice = user("alice", "gpu-1", 1900)
    alice["servers"]["train"] = alice["servers"].pop("")
    culler = IdleCuller(PROFILES, cpu_timeout=3600, gpu_timeout=1800)
    assert [s.server for s in culler.idle_servers([alice], NOW)] == ["train"]


def test_bad_idle_timeout_is_refused_with_the_fix():
    with pytest.raises(ProfileError, match=r"profiles\[0\].idle_timeout=-5: seconds"):
        validate_profiles([{"slug": "cpu", "idle_timeout": -5}])


def test_the_spawn_page_wording():
    assert idle_note(3600) == "stops after 1 h idle"
    assert idle_note(1800) == "stops after 30 min idle"
    assert idle_note(90) == "stops after 2 min idle"
    assert idle_note(45) == "stops after 45 s idle"
    assert idle_note(0) == "never stopped when idle"
