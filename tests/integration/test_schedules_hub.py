"""Scheduled notebook runs on a real workbench (#35): the service keeps the schedule and
starts each run as its owner's job with no server of theirs running; every run keeps the
notebook with its outputs; nobody else sees, pauses or deletes a schedule.

The shared workbench's schedules read their clock from a file (Workbench.
schedule_clock_file): the tests move it a minute on instead of waiting a minute."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest

from hubforge.atomic import write_text
from tests import cli_record
from tests.callers import wait_for
from tests.conftest import HOOK_PORT, SMTP_PORT
from tests.mailbox import Hooks, Mailbox

pytestmark = pytest.mark.hub
SCHEDULES = "services/hubforge/api/schedules"

# the run's kernel: how its channels are reached, and the TCP ports it listens on (none: its
# channels are Unix sockets in the job's private folder, not loopback every account shares)
CHANNELS = """\
import json, psutil
from ipykernel import get_connection_info
info = get_connection_info(unpack=True)
tcp = [c.laddr.port for c in psutil.Process().net_connections("inet") if c.status == "LISTEN"]
print("CHANNELS" + json.dumps({"transport": info["transport"], "listening": tcp}))
"""
GREETING = nbformat.v4.new_notebook(
    cells=[
        nbformat.v4.new_markdown_cell("# A report"),
        nbformat.v4.new_code_cell('greeting = "hi"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            'import os\nprint(greeting, os.path.basename(os.environ["HUBFORGE_JOB_DIR"]))'
        ),
        nbformat.v4.new_code_cell('from IPython.display import HTML\nHTML("<b>drawn</b>")'),
        nbformat.v4.new_code_cell(CHANNELS),
    ]
)
FAILING = nbformat.v4.new_notebook(
    cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("print('before')\n1 / (x - 1)"),
        nbformat.v4.new_code_cell("print('never')"),
    ]
)


class Clock:
    """The time the shared workbench's schedules see."""

    def __init__(self, workbench):
        self.path = workbench.service_dir / "schedule-clock"
        # half a minute past a whole minute: each step of 60 s passes exactly one cron time
        self.now = (time.time() // 60 + 600) * 60 + 30
        self.set(self.now)

    def set(self, when: float) -> None:
        write_text(self.path, f"{when}\n", mode=0o644)

    def minute_on(self) -> None:
        self.now += 60
        self.set(self.now)


def as_json(nb) -> dict:
    return json.loads(nbformat.writes(nb))


def runs_of(workbench, token: str, sid: str) -> list[dict]:
    r = workbench.api("GET", f"{SCHEDULES}/{sid}", token)
    assert r.status_code == 200, r.text
    return r.json()["runs"]


def ended_run(workbench, token: str, sid: str, number: int) -> dict:
    def ended():
        runs = runs_of(workbench, token, sid)
        done = [r for r in runs if r["number"] == number and r.get("ended")]
        return done[0] if done else None

    return wait_for(ended, 120, f"run {number} of {sid} to end")


def outputs(path: str) -> str:
    nb = nbformat.read(path, as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def printed(path: str) -> str:
    """What the cells of an executed notebook printed."""
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_a_schedule_runs_with_no_server_keeps_each_runs_outputs_and_is_its_owners(workbench):
    sam, eve = workbench.create_user("sched-sam"), workbench.create_user("sched-eve")
    clock = Clock(workbench)
    body = {"notebook": as_json(GREETING), "path": "report.ipynb", "cron": "* * * * *"}
    r = workbench.api("POST", SCHEDULES, sam, json={**body, "params": {"greeting": "hello"}})
    assert r.status_code == 201, r.text
    made = r.json()
    sid, path = made["id"], f"{SCHEDULES}/{made['id']}"
    assert made["description"] == "every minute" and len(made["next"]) == 5
    try:
        for method, extra in (("GET", {}), ("PATCH", {"json": {"paused": True}}), ("DELETE", {})):
            r = workbench.api(method, path, eve, **extra)  # another user: as if it did not exist
            assert r.status_code == 404, (method, r.text)
        assert workbench.api("GET", SCHEDULES, eve).json()["schedules"] == []
        assert workbench.api("GET", SCHEDULES + "?all=1", eve).status_code == 403
        assert (
            workbench.api(
                "PATCH", path + "?owner=sched-sam", eve, json={"paused": True}
            ).status_code
            == 403
        )
        assert workbench.api("GET", SCHEDULES).status_code == 403  # no token
        everyone = workbench.api("GET", SCHEDULES + "?all=1", workbench.admin_token()).json()
        assert sid in [s["id"] for s in everyone["schedules"]]

        # three minutes pass: three runs, none of sam's servers running
        executed = []
        for number in (1, 2, 3):
            clock.minute_on()
            run = ended_run(workbench, sam, sid, number)
            assert run["state"] == "succeeded", run
            assert run["job"] == f"{sid}-r{number}"
            executed.append(run["executed_notebook"])
        model = workbench.api("GET", "hub/api/users/sched-sam", workbench.admin_token()).json()
        assert not model["servers"]
        assert len(set(executed)) == 3
        for number, notebook in enumerate(executed, start=1):
            seen = outputs(notebook)  # each run's own outputs, parameters applied
            assert f"hello {sid}-r{number}" in seen and "<b>drawn</b>" in seen
            channels = json.loads(printed(notebook).split("CHANNELS")[1].splitlines()[0])
            assert channels == {"transport": "ipc", "listening": []}, channels
            info = os.stat(notebook)  # sam's file: nobody else may read it
            assert info.st_mode & 0o077 == 0
            assert info.st_uid == os.stat(Path(notebook).parent).st_uid
        job = workbench.api("GET", f"services/hubforge/api/jobs/{sid}-r1", sam).json()
        assert job["owner"] == "sched-sam" and job["artifacts"]["executed_notebook"] == executed[0]
        assert workbench.api("GET", f"services/hubforge/api/jobs/{sid}-r1", eve).status_code == 404

        # paused: the clock passes a minute and nothing runs; resumed: the next minute runs
        r = workbench.api("PATCH", path, sam, json={"paused": True})
        assert r.status_code == 200 and r.json()["paused"] and r.json()["next"] == []
        clock.minute_on()
        time.sleep(3)  # three passes of the service
        assert len(runs_of(workbench, sam, sid)) == 3
        assert workbench.api("PATCH", path, sam, json={"paused": False}).json()["paused"] is False
        clock.minute_on()
        assert ended_run(workbench, sam, sid, 4)["state"] == "succeeded"

        assert workbench.api("DELETE", path, sam).status_code == 204
        assert workbench.api("GET", path, sam).status_code == 404
        assert all(Path(p).exists() for p in executed)  # the runs' notebooks stay
    finally:
        workbench.api("DELETE", path, sam)


def test_a_failed_run_names_the_cell_by_e_mail_and_webhook_and_bad_requests_say_what_to_change(
    workbench,
):
    fin = workbench.create_user("sched-fin")
    clock = Clock(workbench)
    hook = f"http://127.0.0.1:{HOOK_PORT}/hooks/chat"
    notify = {"on": "failure", "email": True, "webhook": hook}
    body = {"notebook": as_json(FAILING), "cron": "*/1 * * * *", "notify": notify}
    r = workbench.api("POST", SCHEDULES, fin, json=body)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    try:
        with Mailbox(SMTP_PORT) as mailbox, Hooks(HOOK_PORT) as hooks:
            clock.minute_on()
            run = ended_run(workbench, fin, sid, 1)
            (mail,), ((path, posted),) = mailbox.wait(1), hooks.wait(1)
        assert run["state"] == "failed", run
        assert "notebook cell 2" in run["reason"], run
        assert "ZeroDivisionError: division by zero" in run["reason"], run
        seen = outputs(run["executed_notebook"])  # the error in place, later cells not run
        assert "before" in seen and "ZeroDivisionError" in seen and "never" not in seen
        # the e-mail goes to the address the workbench knows, with the error's cell and line
        assert mail["X-Envelope-To"] == "sched-fin@hubforge.test"
        assert "run 1 failed" in mail["Subject"]
        text = mail.get_payload(decode=True).decode()
        assert "notebook cell 2: ZeroDivisionError: division by zero" in text, text
        link = f"http://hub.hubforge.test/hub/user-redirect/lab/tree/hdfs/users/sched-fin/jobs/{sid}-r1/executed.ipynb"
        assert link in text, text
        assert path == "/hooks/chat" and posted["state"] == "failed" and posted["link"] == link
        assert "notebook cell 2" in posted["reason"] and posted["owner"] == "sched-fin"
        told = runs_of(workbench, fin, sid)[0]["notified"]
        assert any(t.startswith("e-mail: sent") for t in told), told
    finally:
        workbench.api("DELETE", f"{SCHEDULES}/{sid}", fin)

    good = {"notebook": as_json(GREETING), "cron": "0 2 * * *"}
    for change, says in (
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 2 * *"}, "five"),
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"params": {"colour": "red"}}, "greeting"),
        ({"params": {"greeting": True}}, "expected str"),
        ({"workers": 0}, "workers"),
        ({"missed": "twice"}, "once"),
        ({"name": "Not A Name!"}, "lowercase"),
        ({"notebook": "report.ipynb"}, "notebook"),
        ({"colour": "red"}, "Unknown field"),
        ({"notify": {"webhook": "http://127.0.0.1:1/elsewhere"}}, "not allowed"),
        ({"notify": {"on": "sometimes"}}, "failure"),
        ({"notify": "yes"}, "notify"),
    ):
        r = workbench.api("POST", SCHEDULES, fin, json={**good, **change})
        assert r.status_code == 400 and says in r.json()["message"], (change, r.text)
    for bad in ({"paused": "yes"}, {"paused": True, "notebook": {}}, {}):
        r = workbench.api("PATCH", f"{SCHEDULES}/s-00000000", fin, json=bad)
        assert r.status_code in (400, 404), r.text
    for odd in ("not-an-id", "s-..%2F..%2Fx", "S-ABCDEF12"):
        r = workbench.api("GET", f"{SCHEDULES}/{odd}", fin)
        assert r.status_code == 404 and "ids look like s-" in r.json()["message"], r.text
    r = workbench.api("GET", "services/hubforge/api/cron?cron=30+6+*+*+1", fin).json()
    assert r["description"] == "every Monday at 06:30" and len(r["next"]) == 5
    assert workbench.api("GET", "services/hubforge/api/cron?cron=banana", fin).status_code == 400
    assert workbench.api("GET", SCHEDULES, fin).json()["schedules"] == []


def test_the_cli_creates_lists_runs_pauses_resumes_and_deletes(workbench, tmp_path):
    cleo = workbench.create_user("sched-cleo")
    clock = Clock(workbench)
    home = tmp_path / "home"
    home.mkdir()
    nbformat.write(GREETING, home / "report.ipynb")
    hello = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
    nbformat.write(hello, home / "hello.ipynb")
    env = {
        **os.environ,
        "HOME": str(home),
        "HUBFORGE_SERVICE_URL": workbench.url + "services/hubforge/api",
        "JUPYTERHUB_API_TOKEN": cleo,
    }

    def cli(*args: str, env: dict = env) -> str:
        done = cli_record.run(
            ["schedule", *args], env=env, cwd=home, capture_output=True, text=True
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    made = cli(
        "create",
        "report.ipynb",
        "*/2 * * * *",
        "--param",
        "greeting=hey",
        "--name",
        "rep",
        "--workers",
        "1",
        "--gpus-per-worker",
        "0",
        "--timezone",
        "UTC",
        "--missed",
        "skip",
        "--notify",
        "always",
        "--email",
        "--webhook",
        f"http://127.0.0.1:{HOOK_PORT}/hooks/cli",
    )
    sid = made.split()[1]
    assert made.startswith(f"Scheduled {sid} (rep): every 2 minutes") and "(in " in made
    try:
        listed = cli("list")
        assert sid in listed and "'*/2 * * * *'" in listed and "active" in listed
        clock.minute_on()
        clock.minute_on()
        assert ended_run(workbench, cleo, sid, 1)["state"] == "succeeded"
        runs = cli("runs", sid)
        assert f"{sid}-r1" in runs and "succeeded" in runs and "executed.ipynb" in runs
        assert "Paused" in cli("pause", sid) and "paused" in cli("list")
        assert "Resumed" in cli("resume", sid)
        # an admin sees everyone's, pauses and resumes another user's (and the team view)
        admin = {**env, "JUPYTERHUB_API_TOKEN": workbench.admin_token()}
        assert "sched-cleo" in cli("list", "--all", env=admin)
        assert "Paused" in cli("pause", sid, "--owner", "sched-cleo", env=admin)
        team = workbench.api("GET", "services/hubforge/api/team", workbench.admin_token()).json()
        (row,) = [s for s in team["schedules"] if s["id"] == sid]
        assert (
            row["owner"] == "sched-cleo" and row["paused"] and row["last"]["state"] == "succeeded"
        )
        assert "paused" in cli("list")  # cleo sees the admin's pause
        assert "Resumed" in cli("resume", sid, "--owner", "sched-cleo", env=admin)
        assert "succeeded" in cli("runs", sid, "--owner", "sched-cleo", env=admin)
        other = {**env, "JUPYTERHUB_API_TOKEN": workbench.create_user("sched-odo")}
        for args in (("list", "--all"), ("pause", sid, "--owner", "sched-cleo")):
            done = cli_record.run(
                ["schedule", *args], env=other, cwd=home, capture_output=True, text=True
            )
            assert done.returncode == 2 and "Only admins" in done.stderr, done.stderr
        assert "every weekday" in cli("explain", "0 9 * * 1-5", "--timezone", "Europe/Paris")
        bad = cli_record.run(
            ["schedule", "create", "report.ipynb", "0 25 * * *"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
        )
        assert bad.returncode == 2 and "hour" in bad.stderr, bad.stderr
        assert "Deleted" in cli("delete", sid)
        assert sid not in cli("list")

        # a one-off job its owner asked to be told about: the same e-mail and webhook
        with Mailbox(SMTP_PORT) as mailbox, Hooks(HOOK_PORT) as hooks:
            done = cli_record.run(
                ["job", "submit", "hello.ipynb", "--name", "once", "--notify", "always",
                 "--email", "--webhook", f"http://127.0.0.1:{HOOK_PORT}/hooks/jobs"],
                env=env, cwd=home, capture_output=True, text=True,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            (mail,), ((path, posted),) = mailbox.wait(1), hooks.wait(1)
        job = done.stdout.split()[1].rstrip(";")
        assert mail["X-Envelope-To"] == "sched-cleo@hubforge.test"
        assert mail["Subject"] == "[Hubforge] job once succeeded", mail["Subject"]
        assert path == "/hooks/jobs" and posted["job"] == job and posted["state"] == "succeeded"
        refused = cli_record.run(
            ["job", "submit", "hello.ipynb", "--webhook", "http://127.0.0.1:1/"],
            env=env, cwd=home, capture_output=True, text=True,
        )  # fmt: skip
        assert refused.returncode != 0 and "not allowed" in refused.stderr, refused.stderr
        jobs = workbench.api("GET", "services/hubforge/api/jobs", cleo).json()["jobs"]
        assert [j["spec"]["name"] for j in jobs].count("hello") == 0  # nothing submitted
    finally:
        workbench.api("DELETE", f"{SCHEDULES}/{sid}", cleo)
