"""Copies the hub's output (and that of everything it starts) into its log file, also when
the disk is full.

The hub, its proxy and its services write into a pipe, never into the file itself:
configurable-http-proxy (Node) dies on its next log line when that line cannot be written,
and a proxy that dies on a full disk takes every route with it. What cannot be written is
dropped and counted; the first line that fits again says how much was lost.

Run as ``python -m hubforge.logsink FILE`` with the pipe as standard input (``-`` for FILE:
standard output, a log file opened by whoever starts it, so the sink itself needs no right to
open it: `hubforge up` runs it as the hub's account); it ends when
the last process holding the pipe's other end has closed it (so it outlives `hubforge up`
while the hub stops). It imports nothing of Hubforge's and never exits on a write error.
"""

from __future__ import annotations

import os
import sys

LOST_NOTE = "[hubforge log] {} bytes of this log were lost: the disk was full\n"


def write_all(fd: int, data: bytes) -> int:
    """Write ``data``; the number of bytes that could not be written."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return len(view)
        view = view[written:]
    return 0


def copy(source: int, target: int, chunk_size: int = 1 << 16) -> int:
    """Copy ``source`` to ``target`` until end of file; the bytes still lost at the end."""
    lost = 0
    while True:
        try:
            chunk = os.read(source, chunk_size)
        except InterruptedError:
            continue
        if not chunk:
            return lost
        if lost:
            note = LOST_NOTE.format(lost).encode()
            if write_all(target, note):  # still no room: keep counting
                lost += len(chunk)
                continue
            lost = 0
        lost += write_all(target, chunk)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(
            "usage: python -m hubforge.logsink LOG_FILE  (the output to copy on stdin;"
            " - for standard output)"
        )
        return 2
    if argv[0] == "-":
        target = sys.stdout.fileno()
    else:
        target = os.open(argv[0], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    copy(sys.stdin.fileno(), target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
