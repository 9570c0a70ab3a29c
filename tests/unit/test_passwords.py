from __future__ import annotations

import pytest

from hubforge.hub.passwords import PasswordStore, UserError


def test_add_verify_reset(tmp_path):
    store = PasswordStore(tmp_path / "passwords.json")
    password = store.add("alice")
    assert len(password) >= 12
    assert store.verify("alice", password) == {"name": "alice", "admin": False}
    assert store.verify("alice", "wrong-password") is None
    assert store.verify("nobody", password) is None
    new = store.reset("alice")
    assert store.verify("alice", password) is None
    assert store.verify("alice", new)


def test_file_holds_hashes_only_and_is_private(tmp_path):
    store = PasswordStore(tmp_path / "passwords.json")
    store.add("alice", "correct horse battery", admin=True)
    text = (tmp_path / "passwords.json").read_text()
    assert "correct horse" not in text
    assert "scrypt$" in text
    assert (tmp_path / "passwords.json").stat().st_mode & 0o777 == 0o600
    assert store.users() == {"alice": {"admin": True}}


@pytest.mark.parametrize("name", ["", "Alice", "a b", "-x", "x" * 65, "../etc"])
def test_bad_names(tmp_path, name):
    with pytest.raises(UserError, match="Invalid user name"):
        PasswordStore(tmp_path / "p.json").add(name)


def test_mistakes_say_what_to_do(tmp_path):
    store = PasswordStore(tmp_path / "p.json")
    store.add("alice")
    with pytest.raises(UserError, match="exists already; use reset-password"):
        store.add("alice")
    with pytest.raises(UserError, match="hubforge users add bob"):
        store.reset("bob")
    with pytest.raises(UserError, match="at least 8 characters"):
        store.add("carol", "short")
    assert set(store.users()) == {"alice"}


def test_unknown_names_cost_the_same_work_as_known_ones(tmp_path):
    """Timing must not tell which user names exist: both run the whole scrypt check."""
    import statistics
    import time

    store = PasswordStore(tmp_path / "p.json")
    store.add("alice", "the right password")

    def seconds(name: str) -> float:
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            assert store.verify(name, "a wrong password") is None
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    known, unknown = seconds("alice"), seconds("nobody-at-all")
    assert unknown > 0.5 * known, (known, unknown)  # was 5 ms vs 90 ms: 0.06


def test_reset_removes_the_saved_first_password(tmp_path):
    store = PasswordStore(tmp_path / "passwords.json")
    first = store.add("admin", admin=True)
    store.initial_file.write_text(f"user: admin\npassword: {first}\n")
    store.add("alice")
    store.reset("alice")  # another user's reset leaves it alone
    assert store.initial_file.exists()
    store.reset("admin")
    assert not store.initial_file.exists()
    assert store.verify("admin", first) is None
