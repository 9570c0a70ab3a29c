"""`hubforge down` on a workbench with per-user accounts (security review 2026-12-04, N5):
it signals only the owner's processes (a job.json bob rewrote names a root process), and it
stops every process of the workbench's accounts, marked or not."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from hubforge import accounts
from tests.accounts_workbench import why_no_accounts
from tests.integration.test_isolation import _wait_job, run
from tests.workbench import start_workbench

pytestmark = [
    pytest.mark.hub,
    pytest.mark.timeout(600),
    pytest.mark.skipif(why_no_accounts() is not None, reason=str(why_no_accounts())),
]
USER = "dn-bo"


def test_down_signals_no_pid_bob_wrote_and_stops_all_of_bobs_processes():
    data = Path(tempfile.mkdtemp(prefix="hubforge-down-", dir="/tmp"))
    data.chmod(0o755)
    wb = start_workbench(
        data / "wb",
        config='c.Workbench.isolation = "accounts"\nc.Workbench.label_studio_python = ""\n',
        label_studio=False,
    )
    root_sleep = subprocess.Popen(["sleep", "600"], start_new_session=True)
    left = []
    try:
        tokens = {USER: wb.create_user(USER)}
        assert wb.spawn(USER, tokens[USER]).status_code in (201, 202)
        api = "services/hubforge/api/jobs"
        body = {"script": "import time\ntime.sleep(600)", "spec": {"name": "sleeper"}}
        r = wb.api("POST", api, tokens[USER], json=body)
        assert r.status_code == 201, r.text
        job = r.json()["id"]
        real = _wait_job(wb, tokens[USER], job, ("running",))["supervisor"]
        root_identity = {
            "pid": root_sleep.pid,
            "create_time": psutil.Process(root_sleep.pid).create_time(),
        }
        code = (
            "import json, os, pathlib, subprocess\n"
            # a process without the workbench's marker in its environment
            "p = subprocess.Popen(['env', '-i', 'sleep', '900'], start_new_session=True)\n"
            "area = pathlib.Path(os.environ['HUBFORGE_USER_AREA'])\n"
            f"path = area / 'jobs' / {job!r} / 'job.json'\n"
            "record = json.loads(path.read_text())\n"
            f"record['supervisor'] = {root_identity!r}\n"
            "tmp = path.with_name('new.json')\n"
            "tmp.write_text(json.dumps(record))\n"
            "tmp.replace(path)\n"
            "print(json.dumps(p.pid))\n"
        )
        unmarked = run(wb, tokens, USER, code)
        uid = psutil.Process(unmarked).uids().real
        assert uid == psutil.Process(real["pid"]).uids().real != 0
        done = wb.down()
        assert done.returncode == 0, done.stderr
        time.sleep(1)
        assert root_sleep.poll() is None, "down signalled the root process bob named"
        left = [
            f"{p.pid} {p.info['cmdline']}"
            for p in psutil.process_iter(["uids", "cmdline"])
            if p.info["uids"] and p.info["uids"].real == uid
        ]
        assert left == [], f"processes of {USER}'s account survived down: {left}"
        record = json.loads(
            (wb.data_dir / "hdfs" / "users" / USER / "jobs" / job / "job.json").read_text()
        )
        assert record["state"] != "running", record
    finally:
        root_sleep.kill()
        root_sleep.wait()
        if wb.proc.poll() is None:
            wb.down()
        name = accounts.account_name(USER, wb.state_dir)
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", accounts.group_name(wb.state_dir)], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
