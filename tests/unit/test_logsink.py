"""The hub's log goes through a pipe into its file; a full disk drops lines, never a writer."""

from __future__ import annotations

import errno
import os
import pwd
import subprocess
import sys
import threading

import psutil
import pytest

from hubforge import lifecycle, logsink


def feed(chunks: list[bytes]) -> int:
    """A pipe's reading end that yields ``chunks`` one read each, then end of file."""
    read, write = os.pipe()

    def writer() -> None:
        for chunk in chunks:
            os.write(write, chunk)
        os.close(write)

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join()  # the pipe holds them all (small), so each read returns what is there
    return read


def test_everything_is_copied_in_order(tmp_path):
    log = tmp_path / "hub.log"
    lines = [f"line {i}\n".encode() for i in range(500)]
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    assert logsink.copy(feed(lines), target) == 0
    assert log.read_bytes() == b"".join(lines)


def test_a_full_disk_drops_the_output_and_does_not_fail():
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    data = b"x" * 5000 + b"\n"
    assert logsink.copy(feed([data]), full) == len(data)


def test_the_first_line_after_a_full_disk_says_how_much_was_lost(tmp_path, monkeypatch):
    log = tmp_path / "hub.log"
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    source = feed([b"aaaaaaaaa\n", b"bbbbbbbbb\n", b"ccccccccc\n", b"ddddddddd\n"])
    real_write, calls = os.write, []

    def write(fd, data):
        if fd != target:
            return real_write(fd, data)
        calls.append(bytes(data))
        if len(calls) in (2, 3, 6):  # b, then the note before c: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        if len(calls) == 5:  # d: half of it fits
            data = bytes(data)[:5]
        return real_write(fd, data)

    monkeypatch.setattr(logsink.os, "write", write)
    assert logsink.copy(source, target, chunk_size=10) == 5, "d's last 5 bytes"
    note = logsink.LOST_NOTE.format(20).encode()  # b and c
    assert log.read_bytes() == b"aaaaaaaaa\n" + note + b"ddddd"
    assert note.startswith(b"[hubforge log] 20 bytes of this log were lost")


def test_the_sink_ends_when_the_last_writer_is_gone(tmp_path):
    log = tmp_path / "hub.log"
    sink = subprocess.Popen(
        [sys.executable, "-m", "hubforge.logsink", str(log)], stdin=subprocess.PIPE
    )
    writer = subprocess.run(
        [sys.executable, "-c", "print('from a child of the hub')"], stdout=sink.stdin
    )
    assert writer.returncode == 0
    assert sink.poll() is None, "the sink's own end of the pipe is still open"
    sink.stdin.close()
    assert sink.wait(timeout=30) == 0
    assert log.read_text() == "from a child of the hub\n"
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_the_sink_says_how_it_is_used():
    r = subprocess.run(
        [sys.executable, "-m", "hubforge.logsink"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 2 and "usage: python -m hubforge.logsink LOG_FILE" in r.stdout


def test_up_opens_the_log_and_the_sink_runs_without_root(tmp_path):
    """`up` opens the hub's log in its own folder and hands it to the sink, which runs as
    the account it is given (the hub's): it copies into a root-only 0600 file it could not
    open itself, and never follows a link put where the log goes."""
    if os.geteuid() != 0:
        pytest.skip("the sink runs as another account only when root starts it")
    nobody = pwd.getpwnam("nobody")
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    log = folder / "jupyterhub.log"
    as_nobody = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    sink = lifecycle._start_log_sink(log, dict(os.environ), as_nobody)
    try:
        assert psutil.Process(sink.pid).uids().real == nobody.pw_uid
        sink.stdin.write(b"the hub says hello\n")
    finally:
        sink.stdin.close()
    assert sink.wait(timeout=30) == 0
    assert log.read_text() == "the hub says hello\n"
    assert (log.stat().st_uid, oct(log.stat().st_mode & 0o777)) == (0, "0o600")

    secret = tmp_path / "secret"
    secret.write_text("root's\n")
    log.unlink()
    log.symlink_to(secret)
    with pytest.raises(OSError):
        lifecycle._start_log_sink(log, dict(os.environ), as_nobody)
    assert secret.read_text() == "root's\n"
