"""Root works on users' folders without ever following what a user put there (security
review 2026-12-04, N2, N9, N11): an account swaps folders for links while root hands folders
over, makes job folders, opens logs, copies a model or makes ~/hdfs; nothing outside the
user's folder changes owner, mode or content."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubforge import accounts, confined, examples
from hubforge.accounts import Account
from hubforge.confined import UnsafeEntry
from hubforge.jobs.store import JobStore
from hubforge.owner_files import Local

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="root's own handling of users' folders is what is tested: run as root"
)
NOBODY = 65534  # an account that is not root (Debian's nobody/nogroup)


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder every account may pass (pytest's own are 0700), with users/ (root's, 0711),
    bob's area (his account's, 0700) and a victim folder of root's (0700, a 0600 secret)."""
    base = Path(tempfile.mkdtemp(prefix="hubforge-rootfollow-", dir="/tmp"))
    base.chmod(0o755)
    (base / "users" / "bob").mkdir(parents=True)
    (base / "users").chmod(0o711)
    os.chown(base / "users" / "bob", NOBODY, NOBODY)
    (base / "users" / "bob").chmod(0o700)
    victim = base / "victim"
    victim.mkdir(mode=0o700)
    (victim / "secret").write_text("ROOT-ONLY")
    (victim / "secret").chmod(0o600)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def bob() -> Account:
    return Account("nobody", NOBODY, NOBODY, Path("/nonexistent"), NOBODY)


def untouched(victim: Path) -> None:
    for path, mode in ((victim, 0o700), (victim / "secret", 0o600)):
        info = os.lstat(path)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, mode), path
    assert (victim / "secret").read_text() == "ROOT-ONLY"
    assert sorted(os.listdir(victim)) == ["secret"]


RACER = r"""
import os, sys, time
area, victim, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
names = [f"d{i}" for i in range(8)]
for name in names:
    os.makedirs(os.path.join(area, name, "inner"), exist_ok=True)
    for j in range(200):  # fillers, then the victim's own file name: the walk spends its
        open(os.path.join(area, name, f"f{j:03}"), "w").close()  # time here, then hits it
    open(os.path.join(area, name, "secret"), "w").close()
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    os.chmod(area, 0o755)  # the old code walked the area whenever its mode was not 0700
    for name in names:
        path = os.path.join(area, name)
        try:
            os.rename(path, path + ".away")
            os.symlink(victim, path)
            os.unlink(path)
            os.rename(path + ".away", path)
        except OSError:
            pass
"""


def test_handing_over_the_area_never_follows_links_swapped_in_mid_way(place: Path):
    """N2: bob swaps his folders for links to root's folder in a tight loop while root hands
    his area over (every spawn, job submit and deploy did): root's folder stays root's."""
    area, victim = place / "users" / "bob", place / "victim"
    racer = subprocess.Popen(
        [sys.executable, "-c", RACER, str(area), str(victim), "8"],
        user=NOBODY,
        group=NOBODY,
        cwd="/",
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert racer.stdout.readline().strip() == "ready"
        calls = 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            accounts.own_folder(area, bob())
            calls += 1
            untouched(victim)
        assert calls > 50
    finally:
        racer.kill()
        racer.wait()
        racer.stdout.close()
    untouched(victim)
    accounts.own_folder(area, bob())  # the racer is gone: the area gets its mode back
    assert stat.S_IMODE(os.lstat(area).st_mode) == 0o700


def test_a_root_made_tree_is_handed_over_without_following_links(place: Path):
    """Files made by root before accounts existed become the user's; a link in there (to
    root's folder) and a second name of a root file (a hard link) are not followed."""
    area, victim = place / "users" / "carl", place / "victim"
    (area / "models" / "m").mkdir(parents=True)
    (area / "models" / "m" / "saved_model.pb").write_bytes(b"pb")
    (area / "models" / "victim").symlink_to(victim)
    (area / "models" / "secret-again").hardlink_to(victim / "secret")
    accounts.own_folder(area, bob())
    for path in (
        area,
        area / "models",
        area / "models" / "m",
        area / "models" / "m" / "saved_model.pb",
    ):
        assert os.lstat(path).st_uid == NOBODY, path
    assert os.lstat(area / "models" / "victim").st_uid == NOBODY  # the link itself
    untouched(victim)  # neither through the link nor through the second name


def test_another_accounts_folder_or_a_link_is_never_handed_over(place: Path):
    (place / "users" / "link").symlink_to(place / "victim")
    with pytest.raises(accounts.AccountError, match="link"):
        accounts.own_folder(place / "users" / "link", bob())
    (place / "users" / "dora").mkdir()
    os.chown(place / "users" / "dora", 1234, 1234)
    with pytest.raises(accounts.AccountError, match="uid 1234"):
        accounts.own_folder(place / "users" / "dora", bob())
    assert os.lstat(place / "users" / "dora").st_uid == 1234
    untouched(place / "victim")


def test_a_job_folder_is_never_made_through_a_link(place: Path):
    """N9: bob's jobs/ is a link to root's folder: submitting makes nothing there."""
    area, victim = place / "users" / "bob", place / "victim"
    (area / "jobs").symlink_to(victim)
    store = JobStore(area / "jobs" / "planted-1", Local(area, bob()))
    with pytest.raises(UnsafeEntry, match="link"):
        store.create({"id": "planted-1"}, "print('planted')", private=True)
    untouched(victim)
    (area / "jobs").unlink()
    store.create({"id": "planted-1"}, "print('mine')", private=True)
    for name in ("jobs", "jobs/planted-1", "jobs/planted-1/logs", "jobs/planted-1/script.py"):
        assert os.lstat(area / name).st_uid == NOBODY, name
    assert stat.S_IMODE(os.lstat(area / "jobs" / "planted-1").st_mode) == 0o700


def test_a_log_is_never_opened_through_a_folder_that_became_a_link(place: Path):
    """N9: an endpoint's models/<name>/ swapped for a link after the copy: root opens no
    server.log there (nor creates the folder on the way), and never hands one over."""
    area, victim = place / "users" / "bob", place / "victim"
    (area / "models").mkdir()
    (area / "models" / "slr").symlink_to(victim)
    (victim / "server.log").write_text("root's log\n")
    (victim / "server.log").chmod(0o600)
    with pytest.raises(UnsafeEntry, match="link"):
        confined.open_log(area / "models" / "slr" / "server.log", (NOBODY, NOBODY), area)
    assert os.lstat(victim / "server.log").st_uid == 0
    (victim / "server.log").unlink()
    untouched(victim)
    (area / "models" / "slr").unlink()
    fd = confined.open_log(area / "models" / "slr" / "server.log", (NOBODY, NOBODY), area)
    os.close(fd)
    assert os.lstat(area / "models" / "slr").st_uid == NOBODY
    assert os.lstat(area / "models" / "slr" / "server.log").st_uid == NOBODY


def test_a_folder_swapped_for_a_link_during_a_copy_is_refused(place: Path, monkeypatch):
    """N11: the copy lists a folder, then bob swaps it for a link to root's folder before
    the copy enters it (the race the review won with inotify): refused, nothing copied."""
    model = place / "users" / "bob" / "model"
    (model / "a").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "a" / "decoy").write_text("decoy")
    listdir = os.listdir

    def racing_listdir(fd):
        names = listdir(fd)
        if "a" in names and not (model / "a").is_symlink():
            (model / "a").rename(model / "a.away")
            (model / "a").symlink_to(place / "victim")
        return names

    monkeypatch.setattr(confined.os, "listdir", racing_listdir)
    out = place / "copy"
    with pytest.raises(UnsafeEntry, match="link"):
        confined.copy_tree(model, out)
    monkeypatch.undo()
    assert not (out / "a" / "secret").exists()
    untouched(place / "victim")


def test_links_inside_the_model_are_copied_links_out_refused(place: Path):
    model = place / "users" / "bob" / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "v.index").write_bytes(b"ix")
    (model / "alias.pb").symlink_to("saved_model.pb")
    confined.copy_tree(model, place / "copy1")
    assert (place / "copy1" / "alias.pb").read_bytes() == b"pb"
    assert (place / "copy1" / "variables" / "v.index").read_bytes() == b"ix"
    (model / "leak").symlink_to("../../../victim/secret")
    with pytest.raises(UnsafeEntry, match="links outside the folder"):
        confined.copy_tree(model, place / "copy2")


def test_the_data_view_and_examples_are_never_made_through_links(place: Path):
    """N9: ~/hdfs/users and ~/examples as links to root's folder: nothing is made there."""
    home = place / "users" / "bob"
    (home / "hdfs").mkdir()
    (home / "hdfs" / "users").symlink_to(place / "victim")
    with pytest.raises(UnsafeEntry, match="link"):
        confined.make_folders_beneath(home, "hdfs/users", (NOBODY, NOBODY))
    with pytest.raises(UnsafeEntry, match="link"):
        confined.make_link_beneath(home, "hdfs/users/bob", place, (NOBODY, NOBODY))
    (home / "examples").symlink_to(place / "victim")
    assert examples.install(home, place / "marker", (NOBODY, NOBODY)) == []
    untouched(place / "victim")
    (home / "examples").unlink()
    copied = examples.install(home, place / "marker2", (NOBODY, NOBODY))
    assert copied and all(os.lstat(p).st_uid == NOBODY for p in copied)
    assert os.lstat(home / "examples").st_uid == NOBODY


def test_a_log_that_is_a_second_name_of_another_file_is_never_written_or_handed_over(place: Path):
    """A later review (R4): bob replaced his server.log with a hard link to a file of root's
    (possible for any file where fs.protected_hardlinks=0); root appended to it and handed
    it to bob. A log with a second name is refused now."""
    area, victim = place / "users" / "bob", place / "victim"
    (victim / "ww").write_text("ROOT-WW")
    (victim / "ww").chmod(0o666)
    (area / "server.log").hardlink_to(victim / "ww")
    with pytest.raises(UnsafeEntry, match="hard link"):
        confined.open_log(area / "server.log", (NOBODY, NOBODY), area)
    info = os.lstat(victim / "ww")
    assert (info.st_uid, info.st_gid) == (0, 0) and (victim / "ww").read_text() == "ROOT-WW"
