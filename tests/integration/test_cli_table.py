"""The README's CLI table, run through the real `hubforge` entry point: what no other test runs
runs here, inside a user's server on the shared test workbench (or on a workbench of its own
for `up` and `down`). Whether the suite ran every row's commands and flags is judged from what
it really ran (tests/cli_record.py), after the last test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from hubforge.processes import free_port
from tests import cli_record
from tests.kernel import execute
from tests.notebooks import training_notebook
from tests.workbench import STARTED, hubforge, passable, service_dir

RUN = r"""
import json, os, shlex, subprocess
def run(cmd):
    r = subprocess.run(["hubforge", *shlex.split(cmd)], capture_output=True, text=True)
    return {"cmd": cmd, "rc": r.returncode, "out": r.stdout, "err": r.stderr}
results, facts = [], {}
def step(cmd):
    results.append(run(cmd))
    return results[-1]
"""

SCRIPT = r"""
try:
    steps()
finally:
    print("RESULTS" + json.dumps(results))
    print("FACTS" + json.dumps(facts))
"""

STEPS = r"""
def steps():
  sub = step("job submit train.ipynb --workers 1 --gpus 1 --param epochs=1 --param steps=3 "
             "--name clijob --follow")
  if sub["rc"]:
      return
  job = sub["out"].split()[1].rstrip(";")
  show = step(f"job show {job}")
  step(f"job logs {job} --replica worker-0 --follow")
  slow = step("job submit train.ipynb --param epochs=50 --param delay=1 --name clicancel "
              "--priority batch")
  if slow["rc"]:
      return
  facts["cancelled"] = slow["out"].split()[1].rstrip(";")
  step(f"job cancel {facts['cancelled']}")
  step("job list")
  step(f"tensorboard open {job} --name clitb")
  step("tensorboard list")
  step("tensorboard stop --all")
  step(f"serve deploy --job {job} --name clijob-ep --max-batch-size 4 --batch-timeout-ms 5 "
       "--version 7")
  from hubforge import serving
  facts["batching"] = serving.get("clijob-ep").batching
  step("serve list")
  step("serve predict clijob-ep '[[0.1, 0.2, 0.3, 0.4]]' --version 7")
  step("serve undeploy clijob-ep")
  import numpy as np
  np.save("cli-x.npy", np.random.default_rng(0).random((5, 4), dtype=np.float32))
  model = [line.split(": ", 1)[1] for line in show["out"].splitlines()
           if line.strip().startswith("model_dir: ")][0]
  step(f"serve export-tflite {model} --quantize dynamic --samples cli-x.npy --output cli.tflite")
  facts["tflite_bytes"] = os.path.getsize("cli.tflite") if os.path.exists("cli.tflite") else 0
  rng = np.random.default_rng(1)
  np.savez("cli-opt.npz", x=rng.random((40, 4), dtype=np.float32), y=rng.integers(0, 2, 40))
  opt = step(f"serve optimize --job {job} --data cli-opt.npz --variants float,dynamic --gpus 1")
  said = "report, plot and held-out data in "
  mobile = [line[len(said):] for line in opt["out"].splitlines() if line.startswith(said)]
  facts["mobile_dir"] = mobile[0] if mobile else ""
  facts["mobile"] = sorted(os.listdir(mobile[0])) if mobile else []
  step("label create cli-proj datasets/cli-texts --labels yes,no --task text-classification")
  step("label progress cli-proj")
  step("label export cli-proj --format CSV --output exports/cli-proj.csv")
  facts["exported"] = os.path.isfile("exports/cli-proj.csv")
  step("label share dora2")
  step("label shares")
"""

# after dora2 used the share (from outside the server)
STEPS_AFTER = r"""
def steps():
  step("label unshare dora2")
  step("label list")
"""


def in_kernel(workbench, user: str, token: str, steps: str) -> tuple[list[dict], dict]:
    """Run ``steps`` in a kernel of ``user``'s server: each `hubforge` command's result (and
    what the steps noted beside), recorded for the README table's check."""
    outputs = execute(workbench, user, token, RUN + steps + SCRIPT, timeout=600)
    text = "".join(o.get("text", "") for o in outputs)
    assert "RESULTS" in text and "FACTS" in text, outputs
    results = json.loads(text.split("RESULTS", 1)[1].strip().splitlines()[0])
    facts = json.loads(text.split("FACTS", 1)[1].strip().splitlines()[0])
    cli_record.record_kernel_results(results)
    for r in results:
        assert r["rc"] == 0, json.dumps(r, indent=1)  # whole: a job's reason is in "out"
    return results, facts


def teammate_cli(workbench, user: str, token: str, cwd):
    """`hubforge ARGS` as ``user`` with the environment a kernel of their server has."""
    env = {k: v for k, v in os.environ.items() if k != "HUBFORGE_LABEL_STUDIO_TOKEN"}
    env.update(
        HUBFORGE_SERVICE_URL=workbench.url + "services/hubforge/api",
        JUPYTERHUB_API_TOKEN=token,
        HUBFORGE_DATA=str(workbench.data_dir / "hdfs"),
        HUBFORGE_USER_AREA=str(workbench.data_dir / "hdfs" / "users" / user),
    )

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = cli_record.run(args, env=env, capture_output=True, text=True, timeout=180, cwd=cwd)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    return cli


@pytest.mark.hub
@pytest.mark.timeout(900)  # a long story on a busy 2-core machine
def test_cli_in_a_users_server(workbench, tmp_path):
    workbench.wait_gpus_free()  # nothing an earlier test left holds a GPU
    token = workbench.create_user("cali")
    dora = teammate_cli(workbench, "dora2", workbench.create_user("dora2"), tmp_path)
    texts = workbench.data_dir / "hdfs" / "datasets" / "cli-texts"
    texts.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(["fine", "broken", "works"]):
        (texts / f"{i}.txt").write_text(text)
    notebook = json.loads(training_notebook(workbench.data_dir / "cli-train.ipynb").read_text())
    try:
        # a GPU profile: jobs from this server may ask for GPUs (1 of the 2 fake ones each)
        assert workbench.spawn("cali", token, profile="gpu-1").status_code in (201, 202)
        r = workbench.api(
            "PUT",
            "user/cali/api/contents/train.ipynb",
            token,
            json={"type": "notebook", "content": notebook},
        )
        assert r.status_code in (200, 201), r.text
        results, facts = in_kernel(workbench, "cali", token, STEPS)
        # cali shared her projects: dora2 looks at them, as in a terminal of her own server
        listed = dora("label", "list", "--owner", "cali")
        progress = dora("label", "progress", "cli-proj", "--owner", "cali")
        team = tmp_path / "team.json"
        exported = dora(
            "label", "export", "cli-proj", "--owner", "cali", "--format", "JSON", "--output", team
        )
        after, _ = in_kernel(workbench, "cali", token, STEPS_AFTER)
    finally:
        workbench.ensure_stopped("cali")
    out = [r["out"] for r in results]
    assert results[0]["err"].strip().endswith("(succeeded)")
    job = out[0].split()[1].rstrip(";")
    assert "gpus/worker=1" in out[1]
    assert "3/3 - " in out[2], out[2]  # 1 epoch, 3 steps
    assert "Assets written to" not in out[2], out[2]  # TensorFlow's routine line: kept out
    cancelled = facts["cancelled"]
    assert out[4].strip() == f"{cancelled}: cancelled", results[4]
    assert re.search(rf"^{cancelled}\s+cancelled\s.* priority=batch$", out[5], re.M), out[5]
    assert re.search(rf"^{job}\s+succeeded\s", out[5], re.M), out[5]
    assert out[6].startswith("TensorBoard clitb: ") and "/user/cali/proxy/" in out[6]
    assert out[7].startswith("clitb")
    assert out[8].strip() == "Stopped clitb"
    assert "clijob-ep: versions [7]" in out[9] and "curl -H" in out[9]
    assert facts["batching"] == {"max_batch_size": 4, "batch_timeout_ms": 5}
    assert re.search(r"clijob-ep\s+running\s+versions=\[7\]", out[10])
    predicted = json.loads(out[11])  # the predictions, as the Python API returns them
    assert len(predicted) == 1 and 0 <= predicted[0][0] <= 1
    assert "Undeployed clijob-ep" in out[12]
    assert re.search(r"^file\s+cli\.tflite$", out[13], re.M), out[13]
    assert re.search(r"^quantization\s+dynamic$", out[13], re.M), out[13]
    assert "5 given samples" in out[13], out[13]  # compared on --samples, not random inputs
    assert facts["tflite_bytes"] > 0
    # the job's model made ready for phones, from the user's server: by a job of its own
    assert {"float.tflite", "dynamic.tflite", "report.json"} <= set(facts["mobile"]), facts
    # (a job named after the job whose model it optimizes)
    assert re.search(rf"/users/cali/jobs/optimize-{job}-[^/]+/mobile$", facts["mobile_dir"])
    assert f"Optimizing for phones as job optimize-{job}-" in out[14], out[14]
    assert re.search(r"^float\s.*\s(ok|chosen)\s*$", out[14], re.M), out[14]
    assert "cli-proj: 3 added" in out[15], results[15]
    assert out[16].startswith("0/3 labeled")
    assert out[17].strip() == "exports/cli-proj.csv" and facts["exported"]
    assert out[18].strip() == "Shared with: dora2"
    assert out[19].splitlines()[0] == "Shared with: dora2"
    assert re.search(r"cli-proj\s+text-classification\s+0/3 labeled", listed.stdout)
    assert progress.stdout.startswith("0/3 labeled"), progress.stdout
    assert exported.stdout.strip() == str(team)
    assert isinstance(json.loads(team.read_text()), list)  # Label Studio's JSON export
    assert after[0]["out"].strip() == "Shared with: nobody"
    assert re.search(r"cli-proj\s+text-classification\s+0/3 labeled", after[1]["out"])


def wait_for_line(terminal, proc: subprocess.Popen, text: str, timeout: float = 300) -> str:
    """What ``proc`` wrote to the file ``terminal`` once ``text`` is in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        seen = terminal.read_text(errors="replace")
        if text in seen:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} (exit {proc.poll()}):\n{terminal.read_text()[-5000:]}")


@pytest.mark.hub
def test_up_quiet_on_an_address(tmp_path):
    data, port = tmp_path / "quiet", free_port()
    config = tmp_path / "cfg.py"
    config.write_text('c.Workbench.label_studio_python = ""\n')
    up = cli_record.popen(
        ["up", "--quiet", "--ip", "127.0.0.1", "--port", str(port)]
        + ["--data-dir", str(data), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and up.poll() is None:
            lines.append(up.stdout.readline())
            if "Hubforge is running at" in lines[-1]:
                break
        assert f"Hubforge is running at http://127.0.0.1:{port}/" in "".join(lines), lines
        hub_log = (data / "state" / "jupyterhub.log").read_text()
        assert "JupyterHub app:" in hub_log, "the hub's log goes to state/jupyterhub.log"
        assert not any("JupyterHub app:" in line for line in lines), "and not to the terminal"
    finally:
        down = hubforge("down", data_dir=data)
        up.wait(timeout=90)
        up.stdout.close()
    assert down.returncode == 0 and f"Hubforge stopped ({data})." in down.stdout


@pytest.mark.hub
def test_up_verbose_then_a_plain_down_finds_it(tmp_path):
    """`up --verbose`: the hub's own log on the terminal, not in state/jupyterhub.log. A plain
    `down` (no --data-dir, no $HUBFORGE_DIR) stops the one workbench running, found through
    the lock of its `up`."""
    data, port, xdg = tmp_path / "verbose", free_port(), tmp_path / "xdg"
    data.mkdir()
    passable(data)
    STARTED.append(data)  # its accounts go at the session's end
    config = tmp_path / "cfg.py"
    config.write_text('c.Workbench.label_studio_python = ""\n')
    env = {k: v for k, v in os.environ.items() if k != "HUBFORGE_DIR"}
    env.update(XDG_STATE_HOME=str(xdg), PYTHONUNBUFFERED="1")  # only this one runs there
    terminal = tmp_path / "terminal.txt"
    with terminal.open("wb") as out:  # a file, not a pipe: a loud hub never waits on a reader
        up = cli_record.popen(
            ["up", "--verbose", "--port", str(port), "--data-dir", str(data)]
            + ["--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    down = None
    try:
        shown = wait_for_line(terminal, up, f"Hubforge is running at http://127.0.0.1:{port}/")
        assert "JupyterHub app:" in shown, "the hub's own log lines show on the terminal"
        assert "The hub's log:" not in shown, shown  # what up says without --verbose
        hub_log = data / "state" / "jupyterhub.log"
        assert not hub_log.exists() or "JupyterHub app:" not in hub_log.read_text()
        down = cli_record.run(
            ["down"], env=env, capture_output=True, text=True, timeout=150, cwd="/"
        )
        assert up.wait(timeout=90) == 0, terminal.read_text()[-3000:]
    finally:
        if up.poll() is None:
            hubforge("down", data_dir=data)
            up.wait(timeout=90)
    assert down.returncode == 0, (down.stdout, down.stderr)
    assert f"Hubforge stopped ({data})." in down.stdout, down.stdout


def test_reset_password_then_log_in_with_it(tmp_path):
    from hubforge.hub.passwords import PasswordStore

    data = tmp_path / "wb"
    assert hubforge("users", "add", "ola", data_dir=data).returncode == 0
    r = hubforge(
        "users", "reset-password", "ola", "--password-stdin", data_dir=data, input="new-pass-42\n"
    )
    assert r.returncode == 0 and "New password for ola: new-pass-42" in r.stdout
    store = PasswordStore(service_dir(data) / "passwords.json")
    assert store.verify("ola", "new-pass-42") == {"name": "ola", "admin": False}
    r = hubforge("users", "list", data_dir=data)
    assert r.stdout.splitlines() == ["ola"]
