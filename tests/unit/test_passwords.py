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
