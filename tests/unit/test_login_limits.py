"""Failed logins are limited per name and per address, without locking everyone out."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from tornado import web

from hubforge.hub.auth import PasswordAuthenticator
from hubforge.hub.login_limits import FailedLogins, TooManyFailures
from hubforge.hub.passwords import PasswordStore


def _login(auth: PasswordAuthenticator, name: str, password: str, address: str):
    handler = SimpleNamespace(request=SimpleNamespace(remote_ip=address))
    coroutine = auth.authenticate(handler, {"username": name, "password": password})
    # a thread of its own: an earlier test may leave an event loop running in this one
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def waits(monkeypatch):
    """Every wait a login makes, as ("start", seconds) and ("end", seconds) in the order they
    happen: what the limiter decided, read from the limiter, not from a clock (a busy machine
    makes any try slower, never faster)."""
    events: list[tuple[str, float]] = []
    real = asyncio.sleep

    async def sleep(delay, *args, **kw):
        events.append(("start", delay))
        try:
            return await real(delay, *args, **kw)
        finally:
            events.append(("end", delay))

    monkeypatch.setattr("hubforge.hub.auth.asyncio.sleep", sleep)
    return events


@pytest.fixture
def auth(tmp_path):
    store = PasswordStore(tmp_path / "passwords.json")
    store.add("alice", "alice's password")
    store.add("bob", "bob's password")
    return PasswordAuthenticator(
        password_file=str(store.path),
        failures_per_name=3,
        failures_per_address=5,
        failure_window=60,
    )


def test_a_guessed_name_slows_down_but_its_owner_still_signs_in(auth, waits):
    """N14 of the 2026-12-04 review: failing on purpose must not lock a user out. Past the
    name's limit every try waits (doubling), a wrong one is refused, the right one passes."""
    auth.failure_delay, auth.failure_delay_max = 0.2, 0.4
    for _ in range(3):
        assert _login(auth, "alice", "guess", "10.0.0.9") is None
    assert waits == []  # within the limit: no wait
    with pytest.raises(web.HTTPError) as refused:
        _login(auth, "alice", "guess", "10.0.0.8")
    assert waits == [("start", 0.2), ("end", 0.2)]  # the try waited
    assert refused.value.status_code == 429
    message = refused.value.log_message % refused.value.args
    assert "Too many failed logins for the user name alice: each try now waits" in message
    assert "right password still signs in" in message and "reset-password" in message
    waits.clear()
    assert _login(auth, "alice", "alice's password", "10.0.0.7") == {
        "name": "alice",
        "admin": False,
    }
    assert waits == [("start", 0.4), ("end", 0.4)]  # the wait doubled with the 4th failure
    # signed in: her count is cleared, her next try waits no more
    waits.clear()
    assert _login(auth, "alice", "alice's password", "10.0.0.7")
    assert waits == []
    # bob, from the same address, was never slowed down
    assert _login(auth, "bob", "bob's password", "10.0.0.9") == {"name": "bob", "admin": False}


def test_tries_past_the_limit_go_one_at_a_time(auth, waits):
    """Parallel guesses for one name do not share a wait: each waits its own turn."""
    auth.failure_delay, auth.failure_delay_max = 0.3, 0.3
    for _ in range(3):
        _login(auth, "alice", "guess", "10.0.0.9")

    async def guesses() -> list:
        async def one():
            handler = SimpleNamespace(request=SimpleNamespace(remote_ip="10.0.0.5"))
            try:
                await auth.authenticate(handler, {"username": "alice", "password": "g"})
            except web.HTTPError as e:
                return e.status_code

        return await asyncio.gather(*(one() for _ in range(3)))

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, guesses()).result() == [429, 429, 429]
    # each waits its own turn: a wait starts only once the one before it has ended
    assert waits == [("start", 0.3), ("end", 0.3)] * 3, waits


def test_unknown_names_are_limited_like_known_ones(auth):
    """The answer does not tell whether the name exists."""
    for _ in range(3):
        assert _login(auth, "nobody", "guess", "10.0.0.9") is None
    with pytest.raises(web.HTTPError) as refused:
        _login(auth, "nobody", "guess", "10.0.0.9")
    assert refused.value.status_code == 429


def test_one_address_guessing_many_names_waits(auth):
    for name in ("u1", "u2", "u3", "u4", "u5"):
        assert _login(auth, name, "guess", "10.0.0.66") is None
    with pytest.raises(web.HTTPError, match="429") as refused:
        _login(auth, "bob", "bob's password", "10.0.0.66")
    assert "from your address" in refused.value.args[0]
    # another address is unaffected
    assert _login(auth, "bob", "bob's password", "10.0.0.7")


def test_waits_end_with_the_window():
    limits = FailedLogins(per_name=2, per_address=0, window=60)
    limits.failed("alice", "a", now=0)
    limits.failed("alice", "b", now=10)
    with pytest.raises(TooManyFailures) as e:
        limits.check("alice", "c", now=30)
    assert e.value.wait == pytest.approx(30)  # the first failure leaves the window at 60
    limits.check("alice", "c", now=61)  # one failure left in the window: allowed


def test_the_right_password_clears_the_names_count(auth):
    for _ in range(2):
        _login(auth, "alice", "guess", "10.0.0.9")
    assert _login(auth, "alice", "alice's password", "10.0.0.9")
    for _ in range(2):
        assert _login(auth, "alice", "guess", "10.0.0.9") is None  # not refused yet
