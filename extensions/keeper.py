"""Keeps a hub-managed service running (``python -m hubforge.keeper COMMAND...``).

The hub starts this small process as the managed service (the hubforge service, Label
Studio); it runs COMMAND as its child and starts it again within a second when it dies, so the
endpoint gateway, the REST API and Label Studio are back in seconds (the hub itself notices a
dead service only at its next poll, up to 30 s later). Crashes within 10 s of a start back
off up to 10 s; after GIVE_UP_AFTER such starts in a row the keeper stops trying and says so
(a crash loop helps nobody: what it printed says why).
SIGTERM/SIGINT stop the child and then the keeper; if the keeper dies, the kernel stops the
child (PR_SET_PDEATHSIG) and the hub restarts the keeper.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from pathlib import Path

HEALTHY_AFTER = 10  # seconds of running that reset the back-off to 0.5 s
FIRST_DELAY, MAX_DELAY = 0.5, 10.0  # seconds before a start again: doubling, at most MAX
GIVE_UP_AFTER = 8  # failed starts in a row (each within HEALTHY_AFTER): it will not get better


def _die_with_keeper() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main() -> int:
    command = sys.argv[1:]
    if not command:
        print("usage: python -m hubforge.keeper COMMAND [ARG...]", file=sys.stderr)
        return 2
    name = Path(command[-1]).name if len(command) == 1 else " ".join(command[1:3])
    if command[1:3] == ["-m", "hubforge.fast_start"] and len(command) > 3:
        name = f"-m {command[3]}"  # the program it runs, not the launcher
    stopping: list[int] = []
    child: list[subprocess.Popen] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)
        if child and child[-1].poll() is None:
            child[-1].terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay, failed = FIRST_DELAY, 0
    while not stopping:
        started = time.monotonic()
        child.append(subprocess.Popen(command, preexec_fn=_die_with_keeper))
        code = child[-1].wait()
        if stopping:
            break
        healthy = time.monotonic() - started > HEALTHY_AFTER
        failed = 0 if healthy else failed + 1
        if failed >= GIVE_UP_AFTER:
            print(
                f"[hubforge keeper] {name} failed {failed} times in a row, each within "
                f"{HEALTHY_AFTER} s of its start (last exit status {code}): not starting it "
                "again. Its own lines above say why; fix that and restart the workbench.",
                file=sys.stderr,
                flush=True,
            )
            return 1
        delay = FIRST_DELAY if healthy else min(delay * 2, MAX_DELAY)
        print(
            f"[hubforge keeper] {name} exited with {code}; starting it again in {delay:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(delay)
    if child and child[-1].poll() is None:
        try:
            child[-1].wait(timeout=30)
        except subprocess.TimeoutExpired:
            child[-1].kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
