"""Files of a user's area opened by a process with more rights than the user (the service,
root with per-user accounts): a link anywhere below the area is refused, never followed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubforge.confined import (
    UnsafeEntry,
    open_log,
    read_beneath,
    write_beneath,
)


@pytest.fixture
def area(tmp_path: Path) -> Path:
    (tmp_path / "area" / "jobs" / "j1").mkdir(parents=True)
    (tmp_path / "area" / "jobs" / "j1" / "job.json").write_text('{"mine": 1}')
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "job.json").write_text('{"token": "s3cret"}')
    return tmp_path / "area"


def test_reads_what_is_inside_and_says_missing(area: Path):
    assert read_beneath(area, "jobs/j1/job.json") == b'{"mine": 1}'
    assert read_beneath(area, "jobs/j1/job.json", offset=2) == b'mine": 1}'
    assert read_beneath(area, "jobs/j1/nothing.log") is None


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_link_to_elsewhere_is_refused_at_any_depth(area: Path, where: str):
    secret = area.parent / "secret"
    if where == "file":
        (area / "jobs" / "j1" / "job.json").unlink()
        (area / "jobs" / "j1" / "job.json").symlink_to(secret / "job.json")
    else:
        (area / "jobs" / "steal").symlink_to(secret)
    relative = "jobs/j1/job.json" if where == "file" else "jobs/steal/job.json"
    with pytest.raises(UnsafeEntry, match="link"):
        read_beneath(area, relative)
    if where == "folder":
        with pytest.raises(UnsafeEntry, match="link"):
            write_beneath(area, relative, b"{}")
    else:  # the new file replaces the link itself
        write_beneath(area, relative, b"{}")
        assert not (area / relative).is_symlink() and (area / relative).read_bytes() == b"{}"
    assert (secret / "job.json").read_text() == '{"token": "s3cret"}'  # untouched


def test_paths_that_climb_out_are_refused(area: Path):
    for relative in ("../secret/job.json", "/etc/passwd", "jobs/../../secret/job.json", ""):
        with pytest.raises(UnsafeEntry):
            read_beneath(area, relative)


def test_a_write_replaces_atomically_and_leaves_nothing_beside(area: Path):
    write_beneath(area, "jobs/j1/job.json", b'{"mine": 2}', mode=0o640)
    path = area / "jobs" / "j1" / "job.json"
    assert path.read_bytes() == b'{"mine": 2}'
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in path.parent.iterdir()) == ["job.json"]


def test_a_log_that_is_a_link_is_not_created_or_appended(tmp_path: Path):
    target = tmp_path / "elsewhere" / "nologin"
    target.parent.mkdir()
    log = tmp_path / "server.log"
    log.symlink_to(target)  # dangling: following it would create the file
    with pytest.raises(UnsafeEntry, match="remove the link"):
        open_log(log)
    assert not target.exists()
    (tmp_path / "fifo").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafeEntry, match="not a regular file"):
        os.close(open_log(tmp_path / "fifo"))


def test_a_log_is_appended_to(tmp_path: Path):
    log = tmp_path / "logs" / "server.log"
    for text in (b"one\n", b"two\n"):
        fd = open_log(log)
        os.write(fd, text)
        os.close(fd)
    assert log.read_bytes() == b"one\ntwo\n"


def test_the_copy_helper_copies_and_refuses_a_link_out(tmp_path: Path):
    model = tmp_path / "area" / "export"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "v.index").write_bytes(b"ix")
    run = [sys.executable, "-m", "hubforge.confined", "copy"]
    done = subprocess.run([*run, model, tmp_path / "area" / "models" / "m" / "1"])
    assert done.returncode == 0
    copied = tmp_path / "area" / "models" / "m" / "1"
    assert (copied / "variables" / "v.index").read_bytes() == b"ix"
    (model / "leak").symlink_to("/proc/self/environ")
    done = subprocess.run(
        [*run, model, tmp_path / "area" / "models" / "m" / "2"], capture_output=True, text=True
    )
    assert done.returncode == 3 and "links outside the folder" in done.stderr
    assert sorted(p.name for p in copied.parent.iterdir()) == ["1"]  # nothing half-copied
