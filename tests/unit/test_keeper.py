"""The keeper (hubforge.keeper) restarts a crashed service, and gives up on one that cannot
start, saying so, instead of a crash loop that never ends (#30: Label Studio with a damaged
database crash-looped forever behind a "starting" page)."""

from __future__ import annotations

import subprocess
import sys

# the keeper with its back-off shortened (the real one: 0.5 s doubling up to 10 s)
FAST = (
    "import sys, hubforge.keeper as k\n"
    "k.FIRST_DELAY, k.MAX_DELAY = 0.05, 0.1\n"
    "sys.argv = ['keeper', *sys.argv[1:]]\n"
    "sys.exit(k.main())\n"
)


def test_a_service_that_cannot_start_is_given_up_with_why():
    broken = "import sys; print('settings.py: no such table', flush=True); sys.exit(3)"
    done = subprocess.run(
        [sys.executable, "-c", FAST, sys.executable, "-c", broken],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout.count("settings.py: no such table") == 8  # 8 starts, then no more
    assert "failed 8 times in a row" in done.stderr and "last exit status 3" in done.stderr
