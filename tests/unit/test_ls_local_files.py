"""Label Studio's local files as Hubforge opens them (ls_main.open_beneath): no link at any
level, regular files only, and, run as root, with the file-system identity of the account
owning the storage's area (in the serving thread only)."""

from __future__ import annotations

import os
import threading

import pytest

from hubforge.labeling import ls_main

NOBODY = 65534


@pytest.fixture
def area(tmp_path):
    root = tmp_path / "root"
    pics = root / "users" / "nob" / "pics"
    pics.mkdir(parents=True)
    (pics / "ok.png").write_bytes(b"\x89PNG ok")
    (pics / "rootonly.png").write_bytes(b"ROOT ONLY")
    (pics / "rootonly.png").chmod(0o600)
    (tmp_path / "outside.txt").write_text("OUTSIDE")
    os.symlink(tmp_path / "outside.txt", pics / "file-link.png")
    os.symlink(tmp_path, pics / "dir-link")
    os.mkfifo(pics / "fifo.png")
    for folder in (tmp_path, root, root / "users"):
        folder.chmod(0o755)
    return root


def read(root, *parts: str) -> bytes:
    fd = ls_main.open_beneath(str(root), list(parts), 2)
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def test_links_and_odd_files_are_never_opened(area):
    assert read(area, "users", "nob", "pics", "ok.png") == b"\x89PNG ok"
    for parts in (("file-link.png",), ("dir-link", "outside.txt"), ("fifo.png",)):
        with pytest.raises(OSError):
            read(area, "users", "nob", "pics", *parts)
    os.symlink(area / "users" / "nob", area / "users" / "linked")
    with pytest.raises(OSError):  # the area itself a link
        read(area, "users", "linked", "pics", "ok.png")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the local workbench's case)")
def test_as_root_the_file_is_opened_with_the_area_owners_rights(area):
    os.chown(area / "users" / "nob", NOBODY, NOBODY)
    os.chown(area / "users" / "nob" / "pics", NOBODY, NOBODY)
    os.chown(area / "users" / "nob" / "pics" / "ok.png", NOBODY, NOBODY)
    seen = {}

    def serve():  # a request thread of Label Studio's server
        seen["ok"] = read(area, "users", "nob", "pics", "ok.png")
        try:
            seen["root"] = read(area, "users", "nob", "pics", "rootonly.png")
        except PermissionError:
            seen["root"] = "refused"

    thread = threading.Thread(target=serve)
    thread.start()
    thread.join()
    assert seen == {"ok": b"\x89PNG ok", "root": "refused"}
    # root's own rights are back (and never left the other threads)
    assert (area / "users" / "nob" / "pics" / "rootonly.png").read_bytes() == b"ROOT ONLY"
