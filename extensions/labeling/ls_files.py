"""Label Studio's local files, served by Hubforge (runs in Label Studio's environment, see
ls_main.py): only files of the caller's projects' storages, never through a link, opened as
the owner of the storage's area (``local_file``, called by the policy)."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ls_policy import Caller

# Label Studio's own view compares the path's text with a storage and then follows links as
# the (root) server. Hubforge serves them itself: only a file inside a local-files storage of
# a project every caller may reach, opened one component at a time relative to the one above
# with O_NOFOLLOW (no link at any level, below the configured document root), a regular file
# only, and, when Label Studio runs as root on Linux, with the file-system identity of the
# account owning the storage's area (users/<name>), in this serving thread only.

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_FILE = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
NO_FILE = "no such file in your projects"


def _parts(relative: str) -> list[str] | None:
    """The components of a relative path; None for one that climbs ('..') or holds NUL."""
    if "\x00" in relative:
        return None
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    return None if ".." in parts else parts


def _storage_parts(caller_orgs: list[int | None], root: str) -> list[list[str]]:
    """The storage roots (components below ``root``) of the projects every caller reaches."""
    from io_storages.localfiles.models import LocalFilesImportStorage

    storages = LocalFilesImportStorage.objects.all()
    for org in caller_orgs:
        storages = storages.filter(project__organization_id=org)
    out = []
    for path in storages.values_list("path", flat=True):
        path = os.path.normpath(path)
        if path.startswith(root + os.sep):
            parts = _parts(path[len(root) + 1 :])
            if parts:
                out.append(parts)
    return out


class _FsIdentity:
    """setfsuid/setfsgid (and no supplementary groups) for the calling thread only, as long
    as the ``with`` lasts; a no-op unless this process runs as root on Linux. The kernel
    clears the file-access capabilities while the fsuid is not 0."""

    SETGROUPS = {"x86_64": 116, "aarch64": 159, "ppc64le": 81, "s390x": 206}

    def __init__(self, uid: int, gid: int):
        self.uid, self.gid = uid, gid
        self.active = sys.platform.startswith("linux") and os.geteuid() == 0 and uid != 0

    def _libc(self):
        import ctypes
        import ctypes.util
        import platform

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.setfsuid.argtypes = [ctypes.c_uint32]
        libc.setfsgid.argtypes = [ctypes.c_uint32]
        number = self.SETGROUPS.get(platform.machine())
        if number is None:
            raise OSError(f"setgroups: unknown syscall number on {platform.machine()}")
        return ctypes, libc, number

    def _setgroups(self, groups: list[int]) -> None:
        ctypes, libc, number = self._libc()
        array = (ctypes.c_uint32 * max(len(groups), 1))(*groups)
        # the raw syscall changes this thread only (glibc's setgroups() changes every thread)
        if libc.syscall(ctypes.c_long(number), ctypes.c_long(len(groups)), array) != 0:
            raise OSError(ctypes.get_errno(), "setgroups")

    def __enter__(self):
        if not self.active:
            return self
        _, libc, _ = self._libc()
        self.groups = os.getgroups()
        self._setgroups([])
        libc.setfsgid(self.gid)
        libc.setfsuid(self.uid)
        # both return the previous value; asking with an invalid id reads the current one
        if libc.setfsuid(0xFFFFFFFF) != self.uid or libc.setfsgid(0xFFFFFFFF) != self.gid:
            self.__exit__()
            raise OSError("could not take the storage owner's file-system identity")
        return self

    def __exit__(self, *exc):
        if not self.active:
            return
        _, libc, _ = self._libc()
        libc.setfsuid(0)
        libc.setfsgid(os.getegid())
        self._setgroups(self.groups)
        if libc.setfsuid(0xFFFFFFFF) != 0:  # never serve the next request as someone else
            os._exit(70)


def open_beneath(root: str, parts: list[str], area: int) -> int:
    """A descriptor of the regular file ``root``/``parts``, every component opened relative
    to the one above without following a link; the first ``area`` components (users/<name>,
    or datasets) as this process, the rest as the owner of that area folder."""
    import stat

    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for part in parts[:area]:
            fds.append(os.open(part, _DIRECTORY, dir_fd=fds[-1]))
        owner = os.fstat(fds[-1])
        with _FsIdentity(owner.st_uid, owner.st_gid):
            for part in parts[area:-1]:
                fds.append(os.open(part, _DIRECTORY, dir_fd=fds[-1]))
            fd = os.open(parts[-1], _FILE, dir_fd=fds[-1])
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IsADirectoryError(parts[-1])
        return fd
    finally:
        for fd in fds:
            os.close(fd)


def open_storage_file(root: str, parts: list[str], area: int) -> int:
    """A descriptor of the storage file ``root``/``parts``. With per-user accounts Label
    Studio runs as its own unprivileged account: a file of a user's area comes from the
    workbench's privileged helper (HUBFORGE_HELPER_SOCKET), opened by a process running as
    that user, without following links; everything else is opened here (open_beneath)."""
    helper = os.environ.get("HUBFORGE_HELPER_SOCKET")
    if helper and parts[0] == "users":
        return _open_through_helper(helper, "/".join(parts))
    return open_beneath(root, parts, area)


def _open_through_helper(path: str, relative: str) -> int:
    import socket
    import time

    for attempt in range(20):  # a busy helper (its backlog full) is asked again shortly
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(30)
                conn.connect(path)
                conn.sendall((json.dumps({"open": relative}) + "\n").encode())
                message, fds, _, _ = socket.recv_fds(conn, 65536, 1)
            break
        except (BlockingIOError, ConnectionRefusedError):
            if attempt == 19:
                raise
            time.sleep(0.05 * (attempt + 1))
    try:
        reply = json.loads(message or b"{}")
    except ValueError:
        reply = {}
    if not reply.get("ok") or not fds:
        for fd in fds:
            os.close(fd)
        raise PermissionError(reply.get("error") or "the helper did not answer")
    return fds[0]


def local_file(request, callers: list[Caller]):
    """Label Studio's /data/local-files/?d=<path below the document root>, served safely."""
    import mimetypes

    from django.conf import settings
    from django.http import HttpResponseNotModified, JsonResponse
    from ranged_fileresponse import RangedFileResponse

    def refuse(why: str = NO_FILE):
        return JsonResponse({"detail": why}, status=403)

    if not settings.LOCAL_FILES_SERVING_ENABLED:
        return refuse("local files are not served here")
    if not callers:
        return refuse("sign in first")
    parts = _parts(request.GET.get("d", ""))
    if not parts:
        return refuse()
    root = os.path.realpath(settings.LOCAL_FILES_DOCUMENT_ROOT)
    orgs = [c.org for c in callers if not c.staff]  # staff: every storage
    inside = [s for s in _storage_parts(orgs, root) if len(parts) > len(s) and parts[: len(s)] == s]
    if not inside:
        return refuse()
    area = 2 if parts[0] == "users" else 1  # users/<name>, datasets, ...
    try:
        fd = open_storage_file(root, parts, min(area, len(parts) - 1))
    except OSError:
        return refuse()
    handle = os.fdopen(fd, "rb")
    info = os.fstat(fd)
    etag = f'W/"{info.st_mtime_ns:x}-{info.st_size:x}"'
    wanted = [e.strip() for e in request.META.get("HTTP_IF_NONE_MATCH", "").split(",")]
    if etag in wanted or "*" in wanted:
        handle.close()
        response = HttpResponseNotModified()
        response["ETag"] = etag
        return response
    kind = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    response = RangedFileResponse(request, handle, content_type=kind)
    response["ETag"] = etag
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"  # a stored page runs nothing in our origin
    return response
