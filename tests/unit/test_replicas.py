"""Replica settings and the scaling of local endpoints on requests in flight (#36), on a
clock the test moves."""

from __future__ import annotations

import pytest

from hubforge.serving.base import check_replicas
from hubforge.serving.errors import BadRequest
from hubforge.serving.handlers import _IN_FLIGHT, least_busy
from hubforge.serving.replicas import Concurrency


def test_settings_are_normalised_and_bad_ones_say_what_to_do():
    fixed = {"min": 3, "max": 3, "target_concurrency": None, "target_cpu": None}
    assert check_replicas(3, 4) == fixed
    assert check_replicas({"min": 3}, 4) == fixed
    assert check_replicas(None, 4)["min"] == 1
    assert check_replicas({"min": 1, "max": 4}, 4)["target_concurrency"] == 8.0
    assert check_replicas({"min": 2, "max": 5, "target_cpu": 70}, 8) == {
        "min": 2,
        "max": 5,
        "target_concurrency": None,
        "target_cpu": 70,
    }
    # a fixed number has nothing to scale on
    assert check_replicas({"min": 2, "max": 2, "target_concurrency": 3}, 4)["min"] == 2
    for bad, says in (
        (0, "replicas=0: a whole number of copies from 1 to 4"),
        (5, "from 1 to 4 here"),
        (True, "a number of copies"),
        ("2", "a number of copies, or an object"),
        ({"min": 3, "max": 2}, "min (3) is more than max (2)"),
        ({"max": 9}, "replicas.max=9"),
        ({"min": 1, "max": 2, "target_concurrency": 0}, "requests in flight per copy"),
        ({"min": 1, "max": 2, "target_cpu": 101}, "percent"),
        ({"min": 1, "max": 2, "target_cpu": 50, "target_concurrency": 2}, "not both"),
        ({"replicas": 2}, "unknown ['replicas']"),
    ):
        with pytest.raises(BadRequest, match=None) as e:
            check_replicas(bad, 4)
        assert says in str(e.value), (bad, str(e.value))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_copies_follow_the_load_up_at_once_and_down_after_the_delay():
    clock = Clock()
    load = Concurrency(up_window=10, down_window=60, clock=clock)
    settings = {"min": 1, "max": 4, "target_concurrency": 2.0}
    assert load.wanted("ann", "ep", settings, 1) == 1  # never seen: as few as allowed

    # 5 calls in flight for 10 s: 5 / 2 -> 3 copies
    for _ in range(5):
        load.started("ann", "ep")
    for _ in range(10):
        clock.now += 1
        load.sample()
    assert load.status("ann", "ep") == {"in_flight": 5, "mean_in_flight": 5.0}
    assert load.wanted("ann", "ep", settings, 1) == 3
    # another user's endpoint of the same name is its own
    assert load.wanted("bob", "ep", settings, 1) == 1

    # the load ends: the copies stay through the delay (the busy samples are recent)...
    for _ in range(5):
        load.finished("ann", "ep")
    for _ in range(30):
        clock.now += 1
        load.sample()
    assert load.wanted("ann", "ep", settings, 3) == 3
    # ... and go once a whole delay has needed fewer
    for _ in range(31):
        clock.now += 1
        load.sample()
    assert load.wanted("ann", "ep", settings, 3) == 1
    assert load.status("ann", "ep") == {"in_flight": 0, "mean_in_flight": 0.0}  # forgotten


def test_a_burst_between_two_samples_counts_for_its_time():
    clock = Clock()
    load = Concurrency(clock=clock)
    load.started("ann", "ep")
    clock.now += 0.5  # one call for half of the second
    load.finished("ann", "ep")
    clock.now += 0.5
    load.sample()
    assert load.status("ann", "ep")["mean_in_flight"] == 0.5
    # within 10 % of the target stays one copy
    settings = {"target_concurrency": 0.46}
    assert load.wanted("ann", "ep", settings, 1) == 1
    assert load.wanted("ann", "ep", {"target_concurrency": 0.2}, 1) == 3


def test_the_gateway_sends_each_call_to_the_least_busy_copy_and_takes_turns():
    copies = [(f"http://127.0.0.1:{port}", {}) for port in (1, 2, 3)]
    firsts = {least_busy(copies)[0][0] for _ in range(3)}
    assert len(firsts) == 3  # equally busy: in turn
    _IN_FLIGHT.update({copies[0][0]: 2, copies[1][0]: 1})
    try:
        order = [c[0] for c in least_busy(copies)]
        assert order == [copies[2][0], copies[1][0], copies[0][0]]
    finally:
        _IN_FLIGHT.clear()
    assert least_busy(copies[:1]) == copies[:1]


def test_the_key_goes_only_to_a_port_its_owners_account_listens_on(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    from hubforge.processes import free_port, listening_uids
    from hubforge.serving.errors import ServingError
    from hubforge.serving.local import LocalEndpointBackend

    backend = LocalEndpointBackend(tmp_path, tmp_path / "endpoints.json")
    record = {"owner": "ann", "name": "ep", "port": free_port()}
    assert listening_uids(record["port"]) == set()
    assert backend._listener_checked(record) is False  # nothing listens yet: no key sent
    with socket.socket() as mine:
        mine.bind(("127.0.0.1", record["port"]))
        mine.listen()
        assert listening_uids(record["port"]) == {os.geteuid()}
        assert backend._listener_checked(record) is True
    if os.geteuid() != 0:
        return  # (another account's listener needs root to make)
    # another account took the port first: refused, and the key never sent to it
    squat = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, socket, time; os.setuid(65534); s = socket.socket(); "
            f"s.bind(('127.0.0.1', {record['port']})); s.listen(); time.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while not listening_uids(record["port"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(ServingError, match="is held by another account"):
            backend._listener_checked(record)
    finally:
        squat.kill()
        squat.wait()
