"""A request to Hubforge's privileged helper, sent by a process of another account."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ASK = (
    "import json, sys\n"
    "from hubforge.helper_client import HelperError, ask\n"
    "try:\n"
    "    print(json.dumps(ask(sys.argv[1], json.loads(sys.argv[2]), timeout=60)))\n"
    "except HelperError as e:\n"
    "    print(json.dumps({'error': str(e)}))\n"
)


def ask_as(sock: Path, request: dict, uid: int, gid: int) -> dict:
    """``request`` sent to the helper's socket ``sock`` by a process of ``uid``:``gid``; the
    reply, or {'error': ...}."""
    done = subprocess.run(
        [sys.executable, "-c", ASK, str(sock), json.dumps(request)],
        capture_output=True,
        text=True,
        user=uid,
        group=gid,
        cwd="/",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
