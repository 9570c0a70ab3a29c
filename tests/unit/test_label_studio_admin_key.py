"""Label Studio's admin credentials and the service key are made once per workbench, even
when several processes ask at the same moment as a fresh workbench starts (`up`, the
privileged helper, the hub): they must all get the same key, or Label Studio and the
hubforge service disagree and every account provisioning is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time

ASK = """
import json, sys, time
from pathlib import Path
from hubforge.labeling.server import admin_credentials
start = float(sys.argv[2])
while time.time() < start:
    pass
print(json.dumps(admin_credentials(Path(sys.argv[1]))))
"""


def test_processes_asking_at_once_all_get_the_one_key(tmp_path):
    for attempt in range(3):
        state = tmp_path / f"state{attempt}"
        state.mkdir()
        start = time.time() + 2.0  # every process imports first, then all ask at once
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", ASK, str(state), str(start)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        answers = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
        kept = json.loads((state / "label-studio-admin.json").read_text())
        assert all(a == kept for a in answers), (answers, kept)
        assert (state / "label-studio-admin.json").stat().st_mode & 0o777 == 0o600
