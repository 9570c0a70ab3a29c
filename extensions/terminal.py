"""What `hubforge up` shows of the hub's log: only what someone at the terminal should act on.

The hub, its proxy, services and every user server write to ``state/jupyterhub.log``
(thousands of lines an hour: access logs, Label Studio's requests, start-up chatter).
:class:`LogEcho` follows that file and prints the lines that matter: errors of the hub and of
servers (with the traceback under them), the hub's own warnings except a few that ask
nothing, Hubforge service warnings, and the keeper's "exited ... starting it again".
``hubforge up --verbose`` shows everything instead, ``--quiet`` nothing.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import TextIO

# "[W 2026-12-03 00:03:42.766 JupyterHub proxy:783] ..." (JupyterHub, Jupyter Server, tornado)
JUPYTER_LINE = re.compile(r"^\[([DIWEC]) \d{4}-\d\d-\d\d [\d:.]+ (\S+)(?: (\S+))?\]")
# the hub's warnings that ask nothing of anyone
NOT_ACTIONABLE = re.compile(
    r"Running JupyterHub without SSL"  # loopback; a TLS front is the admin's choice
    r"|Adding missing route for"  # every start: the proxy is new
    r"|Received unhandled user_options"  # the profile choice, which the spawner reads
    r"|Deleting stale route"
)
# logged at CRITICAL by JupyterHub on every stop
NORMAL_STOP = re.compile(r"Received signal SIG(?:TERM|INT), initiating shutdown")
HUB_ACCESS_4XX = re.compile(r"^\[W [^\]]* log:\d+\] 4\d\d ")


def printable(line: str) -> str:
    """``line`` without control characters (escape sequences a user's process wrote into
    the log would otherwise move the cursor, recolour or retitle the admin's terminal)."""
    return "".join(c if c.isprintable() or c == "\t" else "?" for c in line)


def worth_showing(line: str) -> bool:
    """Whether a line of the hub's log goes to the terminal."""
    found = JUPYTER_LINE.match(line)
    if found:
        level, source = found.group(1), found.group(2)
        if level in "EC":
            return not NORMAL_STOP.search(line)
        if level == "W" and source == "JupyterHub":
            return not NOT_ACTIONABLE.search(line) and not HUB_ACCESS_4XX.match(line)
        return False
    if line.startswith(("[hubforge keeper]", "[hubforge log]")):
        return True
    return bool(re.match(r"^\[HubforgeService\] (WARNING|ERROR|CRITICAL)", line))


class LogEcho:
    """Follows a log file from its current end and prints the lines worth showing (and the
    indented lines under one, such as its traceback) until :meth:`stop`."""

    def __init__(self, path: Path, out: TextIO | None = None, interval: float = 0.2):
        self.path = path
        self.out = out or sys.stderr
        self.interval = interval
        self.offset = path.stat().st_size if path.exists() else 0
        self._stop = threading.Event()
        self._showing = False
        self._partial = ""
        self.thread = threading.Thread(target=self._run, name="hubforge-log-echo", daemon=True)

    def start(self) -> LogEcho:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.poll()  # what was written last

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                if f.seek(0, 2) < self.offset:  # truncated or replaced: from its start
                    self.offset = 0
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        text = self._partial + data.decode("utf-8", "replace")
        lines = text.split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for its end
        shown = []
        for line in lines:
            if line[:1] in (" ", "\t") and line.strip():
                if self._showing:
                    shown.append(line)
                continue
            self._showing = worth_showing(line)
            if self._showing:
                shown.append(line)
        if shown:
            try:
                self.out.write("\n".join(map(printable, shown)) + "\n")
                self.out.flush()
            except OSError:  # `up`'s output redirected to a full disk: the log has them
                pass
