"""The team's base models (#34): `hubforge base-model add/list/remove` as a user types them,
with TF Serving's own SavedModel (../shared/fixtures) and a .keras file; and two OS
accounts on one store: a private entry is its adder's alone, an entry only its adder removes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from hubforge import accounts
from tests import cli_record

SAVED_MODEL = (
    Path(__file__).resolve().parents[3]
    / "shared/fixtures/tfserving/saved_model_half_plus_two_cpu/00000123"
)
CARD = ["--input-size", "1", "--licence", "Apache-2.0", "--source", "TF Serving's tests"]


def keras_file(path: Path) -> Path:
    """A .keras archive as Keras writes one (its config.json; the store never loads it)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps({"class_name": "Sequential"}))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"0" * 64)
    return path


def test_add_list_and_remove_from_the_cli(tmp_path):
    assert (SAVED_MODEL / "saved_model.pb").is_file(), "../shared/fixtures is missing"
    env = dict(os.environ, HUBFORGE_DATA=str(tmp_path / "data"), JUPYTERHUB_USER="bo")
    for var in ("HUBFORGE_SERVICE_URL", "JUPYTERHUB_API_TOKEN"):
        env.pop(var, None)

    def cli(*args):
        return cli_record.run(
            ["base-model", *args], capture_output=True, text=True, env=env, timeout=120
        )

    r = cli("list")
    assert r.returncode == 0 and r.stdout == ""
    r = cli("add", "half-plus-two", str(SAVED_MODEL), *CARD, "--preprocessing", "none")
    assert r.returncode == 0, r.stderr
    assert "Added half-plus-two (savedmodel); the whole team can use it" in r.stdout
    keras = keras_file(tmp_path / "tiny.keras")
    r = cli("add", "tiny", str(keras), "--input-size", "96", "96", "3", "--licence", "MIT",
            "--source", "trained here", "--private")  # fmt: skip
    assert r.returncode == 0 and "only you can use it" in r.stdout, r.stderr
    r = cli("list")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["half-plus-two", "1", "none", "Apache-2.0", "bo"]
    assert lines[1].split()[:6] == ["tiny", "96x96x3", "scale_0_1", "MIT", "bo", "private"]
    store = tmp_path / "data" / "datasets" / "base-models"
    copied = store / "half-plus-two" / "model"
    assert (copied / "saved_model.pb").read_bytes() == (SAVED_MODEL / "saved_model.pb").read_bytes()
    assert (store / "tiny" / "model.keras").read_bytes() == keras.read_bytes()
    assert oct((store / "tiny").stat().st_mode & 0o777) == "0o700"
    assert oct(store.stat().st_mode & 0o7777) == "0o3775"  # teammates add, only adders remove

    # bad input says what to change and leaves the store as it was
    for args, says in [
        (("add", "half-plus-two", str(SAVED_MODEL), *CARD), "in the store already"),
        (("add", "x", str(tmp_path), *CARD), "without saved_model.pb"),
        (("add", "x", str(tmp_path / "nope.keras"), *CARD), "does not exist"),
        (("add", "Bad Name", str(keras), *CARD), "lowercase letters"),
        (("add", "x", str(keras), "--input-size", "0", *CARD[2:]), "input_size=[0]"),
        (("add", "x", str(keras), *CARD[:4], "--source", " "), "source: say it"),
        (("remove", "nothing"), "No base model 'nothing' you can read; the store has: "),
    ]:
        r = cli(*args)
        assert r.returncode == 2 and says in r.stderr, (args, r.stderr)
    assert sorted(p.name for p in store.iterdir()) == ["half-plus-two", "tiny"]
    r = cli("remove", "tiny")
    assert r.returncode == 0 and "Removed tiny" in r.stdout
    assert [m.split()[0] for m in cli("list").stdout.splitlines()] == ["half-plus-two"]


@pytest.fixture
def two_accounts():
    if os.geteuid() != 0 or not accounts.available():
        pytest.skip("makes OS accounts: run as root (as `make test` does)")
    base = Path(tempfile.mkdtemp(prefix="hubforge-bm-", dir="/tmp"))
    base.chmod(0o755)
    state, data = base / "state", base / "hdfs"
    state.mkdir(mode=0o700)
    accounts.ensure_group(state)
    made = {u: accounts.ensure_account(u, base / "homes" / u, state) for u in ("ana", "ben")}
    for account in made.values():
        account.home.mkdir(parents=True, exist_ok=True)
        os.chown(account.home, account.uid, account.gid)
    datasets = data / "datasets"
    datasets.mkdir(parents=True)
    os.chown(datasets, 0, made["ana"].shared_gid)
    datasets.chmod(0o3775)  # as accounts.prepare_shared makes it
    shutil.copy(keras_file(base / "tiny.keras"), base / "homes" / "ana" / "tiny.keras")
    os.chown(base / "homes" / "ana" / "tiny.keras", made["ana"].uid, made["ana"].gid)
    try:
        yield data, made
    finally:
        for account in made.values():
            subprocess.run(["userdel", account.name], capture_output=True)
        subprocess.run(["groupdel", accounts.group_name(state)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_a_private_model_is_its_adders_alone_and_only_the_adder_removes(two_accounts):
    data, made = two_accounts

    def as_user(user, *args):
        account = made[user]
        env = {"PATH": os.environ["PATH"], "HOME": str(account.home),
               "HUBFORGE_DATA": str(data), "JUPYTERHUB_USER": user}  # fmt: skip
        return cli_record.run(
            ["base-model", *args], capture_output=True, text=True, env=env, timeout=120,
            cwd=account.home, **account.popen_kwargs(),
        )  # fmt: skip

    keras = str(made["ana"].home / "tiny.keras")
    r = as_user("ana", "add", "ana-secret", keras, "--input-size", "8", *CARD[2:], "--private")
    assert r.returncode == 0, r.stderr
    r = as_user("ana", "add", "ana-shared", keras, "--input-size", "8", *CARD[2:])
    assert r.returncode == 0, r.stderr
    assert [x.split()[0] for x in as_user("ana", "list").stdout.splitlines()] == [
        "ana-secret", "ana-shared",
    ]  # fmt: skip
    # ben: the private one is not listed, not readable by its path, not removable
    assert [x.split()[0] for x in as_user("ben", "list").stdout.splitlines()] == ["ana-shared"]
    store = data / "datasets" / "base-models"
    peek = subprocess.run(
        ["cat", str(store / "ana-secret" / "card.json")], capture_output=True,
        **made["ben"].popen_kwargs(),
    )  # fmt: skip
    assert peek.returncode != 0 and b"Permission denied" in peek.stderr
    r = as_user("ben", "remove", "ana-shared")
    assert r.returncode == 2 and "added by ana: only they or an admin can remove it" in r.stderr
    r = as_user("ben", "remove", "ana-secret")
    assert r.returncode == 2 and "No base model 'ana-secret' you can read" in r.stderr
    # ben adds his own beside hers (the store is the team's), and removes it
    ben_file = made["ben"].home / "b.keras"
    subprocess.run(["cp", keras, str(ben_file)], check=True)  # as root: a copy ben owns next
    os.chown(ben_file, made["ben"].uid, made["ben"].gid)
    r = as_user("ben", "add", "ben-model", str(ben_file), "--input-size", "8", *CARD[2:])
    assert r.returncode == 0, r.stderr
    assert as_user("ben", "remove", "ben-model").returncode == 0
    assert sorted(p.name for p in store.iterdir()) == ["ana-secret", "ana-shared"]
    # root (an admin's add) never builds inside a store a user owns (ana made this one)
    assert store.stat().st_uid == made["ana"].uid
    from hubforge import automl

    with pytest.raises(automl.BaseModelError, match="not root: as root, add models only"):
        automl.add_base_model("by-root", keras, [8], "MIT", "admin", root=store)
    assert sorted(p.name for p in store.iterdir()) == ["ana-secret", "ana-shared"]
