"""Every command and flag of the README's CLI table runs through the real `hubforge` entry
point somewhere in the suite; the ones no other test runs run here, inside a user's server
on the shared test workbench (or on a workbench of their own for `up`)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from hubforge.processes import free_port
from hubforge.workbench import SOURCE_TREE
from tests.kernel import execute
from tests.notebooks import training_notebook
from tests.workbench import HUBFORGE, hubforge, service_dir

TESTS = Path(__file__).resolve().parents[1]


def readme_cli_rows() -> list[str]:
    """The first cell of each row of the README's CLI table."""
    text = (SOURCE_TREE / "README.md").read_text()
    table = text.split("### CLI", 1)[1].split("\n\n", 2)[1]
    return [row.split("|")[1].strip() for row in table.splitlines()[2:] if row.startswith("|")]


def test_every_documented_flag_and_action_is_run_by_some_test():
    rows = readme_cli_rows()
    assert len(rows) >= 11 and rows[0].startswith("`hubforge up")
    suite = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py"))
    missing = []
    for row in rows:
        for flag in set(re.findall(r"--[a-z][a-z-]*", row)):
            if f'"{flag}"' not in suite and f" {flag} " not in suite and f" {flag}\n" not in suite:
                missing.append(f"{flag} ({row[:40]}...)")
    assert missing == [], "documented in the README but never run: " + ", ".join(missing)


RUN = r"""
import json, os, shlex, subprocess
def run(cmd):
    r = subprocess.run(["hubforge", *shlex.split(cmd)], capture_output=True, text=True)
    return {"cmd": cmd, "rc": r.returncode, "out": r.stdout, "err": r.stderr}
results = []
def step(cmd):
    results.append(run(cmd))
    return results[-1]
"""

SCRIPT = r"""
try:
    steps()
finally:
    print("RESULTS" + json.dumps(results))
"""

STEPS = r"""
def steps():
  sub = step("job submit train.ipynb --workers 1 --gpus 1 --param epochs=1 --param steps=3 "
             "--name clijob --follow")
  if sub["rc"]:
      return
  job = sub["out"].split()[1].rstrip(";")
  step(f"job show {job}")
  step(f"job logs {job} --replica worker-0 --follow")
  step(f"tensorboard open {job} --name clitb")
  step("tensorboard list")
  step("tensorboard stop --all")
  step(f"serve deploy --job {job} --name clijob-ep --max-batch-size 4 --version 7")
  step("serve list")
  step("serve predict clijob-ep '[[0.1, 0.2, 0.3, 0.4]]' --version 7")
  step("serve undeploy clijob-ep")
  step("label create cli-proj datasets/cli-texts --labels yes,no --task text-classification")
  step("label progress cli-proj")
  step("label share dora2")
  step("label shares")
  step("label unshare dora2")
  step("label list")
"""


@pytest.mark.hub
@pytest.mark.timeout(900)  # a long story on a busy 2-core machine
def test_cli_in_a_users_server(workbench):
    workbench.wait_gpus_free()  # nothing an earlier test left holds a GPU
    token = workbench.create_user("cali")
    workbench.create_user("dora2")
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
        outputs = execute(workbench, "cali", token, RUN + STEPS + SCRIPT, timeout=600)
    finally:
        workbench.ensure_stopped("cali")
    text = "".join(o.get("text", "") for o in outputs)
    assert "RESULTS" in text, outputs
    results = json.loads(text.split("RESULTS", 1)[1].strip().splitlines()[0])
    for r in results:
        assert r["rc"] == 0, json.dumps(r, indent=1)  # whole: a job's reason is in "out"
    out = [r["out"] for r in results]
    assert results[0]["err"].strip().endswith("(succeeded)")
    assert "gpus/worker=1" in out[1]
    assert "3/3 - " in out[2], out[2]  # 1 epoch, 3 steps
    assert "Assets written to" not in out[2], out[2]  # TensorFlow's routine line: kept out
    assert out[3].startswith("TensorBoard clitb: ") and "/user/cali/proxy/" in out[3]
    assert out[4].startswith("clitb")
    assert out[5].strip() == "Stopped clitb"
    assert "clijob-ep: versions [7]" in out[6] and "curl -H" in out[6]
    assert re.search(r"clijob-ep\s+running\s+versions=\[7\]", out[7])
    predicted = json.loads(out[8])  # the predictions, as the Python API returns them
    assert len(predicted) == 1 and 0 <= predicted[0][0] <= 1
    assert "Undeployed clijob-ep" in results[9]["out"]
    assert "cli-proj: 3 added" in results[10]["out"], results[10]
    assert results[11]["out"].startswith("0/3 labeled")
    assert results[12]["out"].strip() == "Shared with: dora2"
    assert results[13]["out"].splitlines()[0] == "Shared with: dora2"
    assert results[14]["out"].strip() == "Shared with: nobody"
    assert re.search(r"cli-proj\s+text-classification\s+0/3 labeled", results[15]["out"])


@pytest.mark.hub
def test_up_quiet_on_an_address(tmp_path):
    data, port = tmp_path / "quiet", free_port()
    config = tmp_path / "cfg.py"
    config.write_text('c.Workbench.label_studio_python = ""\n')
    up = subprocess.Popen(
        [*HUBFORGE, "up", "--quiet", "--ip", "127.0.0.1", "--port", str(port)]
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
