"""Tuning runs with real jobs and keras-tuner's real search algorithms, without a hub (#34):
every trial is a job of the local backend, the search process is the service's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from hubforge.jobs import JobError
from hubforge.jobs.local import LocalJobBackend
from hubforge.jobs.oracle import OracleClient
from hubforge.jobs.tuning import DirectJobs, Tunings

# the best x is 3: the score a trial reports is -(x - 3)^2; a trial with x < 0.5 fails
NOTEBOOK = new_notebook(
    cells=[
        new_code_cell("x = 0.0\nkind = 'a'", metadata={"tags": ["parameters"]}),
        new_code_cell(
            "from hubforge import distribute\n"
            "assert x >= 0.5, 'too small'\n"
            "distribute.report(score=-(x - 3) ** 2, other=1.0)\n"
            "print('trial', x, kind)"
        ),
    ]
)
SPACE = {"x": {"min": 0.0, "max": 6.0}, "kind": ["a", "b"]}


@pytest.fixture
def tunings(tmp_path):
    backend = LocalJobBackend(tmp_path / "data")
    oracle = OracleClient()
    yield Tunings(tmp_path / "tunings", DirectJobs(backend), oracle), backend
    oracle.close()


def run_to_end(tunings: Tunings, owner: str, run_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = tunings.advance(owner, run_id)
        if record["state"] != "running":
            return record
        time.sleep(0.5)
    raise AssertionError(f"the run did not end: {tunings.get(owner, run_id)}")


def test_six_trials_two_at_a_time_the_best_is_the_best_reported(tunings):
    engine, backend = tunings
    record = engine.create(
        "ana", json.loads(nbformat.writes(NOTEBOOK)), SPACE, "score",
        max_trials=6, parallel=2, algorithm="bayesian", name="xsearch",
    )  # fmt: skip
    assert record["objective"] == {"name": "score", "direction": "max"}
    most_at_once = 0
    deadline = time.monotonic() + 240
    while record["state"] == "running" and time.monotonic() < deadline:
        record = engine.advance("ana", record["id"])
        running = [t for t in record["trials"] if t["state"] == "running"]
        most_at_once = max(most_at_once, len(running))
        time.sleep(0.3)
    assert record["state"] == "succeeded", record
    trials = record["trials"]
    assert len(trials) == 6 and len({t["id"] for t in trials}) == 6
    assert most_at_once == 2
    jobs = {j["id"]: j for j in backend.list("ana")}
    assert sorted(jobs) == sorted(t["job"] for t in trials)  # one job per trial, no more
    for t in trials:
        log = backend.logs("ana", t["job"], "worker-0")[0]
        if t["params"]["x"] < 0.5:
            assert t["state"] == "failed" and "too small" in backend.get("ana", t["job"])["reason"]
        else:
            assert t["state"] == "succeeded", t
            assert t["objective"] == pytest.approx(-((t["params"]["x"] - 3) ** 2))
            assert f"trial {t['params']['x']} {t['params']['kind']}" in log  # its own params
    best = next(t for t in trials if t["id"] == record["best"])
    assert best["objective"] == max(t["objective"] for t in trials if t["state"] == "succeeded")


def test_a_restart_mid_search_loses_no_trial_and_runs_none_twice(tunings, tmp_path):
    engine, backend = tunings
    record = engine.create(
        "bo", json.loads(nbformat.writes(NOTEBOOK)), {"x": {"min": 1.0, "max": 5.0}}, "score",
        max_trials=4, parallel=2, name="again",
    )  # fmt: skip
    record = engine.advance("bo", record["id"])  # two trials out
    assert [t["state"] for t in record["trials"]] == ["running", "running"]
    # the service stops; a new one (a new search process too) reads the same folders
    engine.oracle.close()
    restarted = Tunings(tmp_path / "tunings", DirectJobs(LocalJobBackend(tmp_path / "data")))
    try:
        done = run_to_end(restarted, "bo", record["id"])
    finally:
        restarted.oracle.close()
    assert done["state"] == "succeeded"
    assert [t["id"] for t in done["trials"]] == ["0", "1", "2", "3"]
    assert len(backend.list("bo")) == 4  # no trial ran twice
    assert all(t["state"] == "succeeded" for t in done["trials"])


def test_cancel_stops_every_trial_and_another_user_sees_nothing(tunings):
    engine, backend = tunings
    slow = new_notebook(cells=[
        new_code_cell("x = 0.0", metadata={"tags": ["parameters"]}),
        new_code_cell("import time\ntime.sleep(120)"),
    ])  # fmt: skip
    record = engine.create(
        "cy", json.loads(nbformat.writes(slow)), {"x": [1.0, 2.0, 3.0]}, "score",
        max_trials=3, parallel=2,
    )  # fmt: skip
    record = engine.advance("cy", record["id"])
    jobs = [t["job"] for t in record["trials"]]
    assert len(jobs) == 2
    from hubforge.jobs import JobNotFound

    with pytest.raises(JobNotFound):
        engine.get("dan", record["id"])
    with pytest.raises(JobNotFound):
        engine.cancel("dan", record["id"])
    assert engine.list("dan") == []
    cancelled = engine.cancel("cy", record["id"])
    assert cancelled["state"] == "cancelled"
    assert [backend.get("cy", j)["state"] for j in jobs] == ["cancelled", "cancelled"]
    assert engine.advance("cy", record["id"])["trials"] == cancelled["trials"]  # nothing new


# a trial's score grows with its epochs and is best at lr = 0.1; it prints each epoch
HYPERBAND = new_notebook(
    cells=[
        new_code_cell("lr = 0.5\nepochs = 10", metadata={"tags": ["parameters"]}),
        new_code_cell(
            "from hubforge import distribute\n"
            "for epoch in range(epochs):\n"
            "    print('epoch', epoch + 1, flush=True)\n"
            "distribute.report(score=(1 - abs(lr - 0.1)) * (1 - 0.5 ** epochs))"
        ),
    ]
)


def test_hyperband_trains_many_trials_briefly_and_only_the_best_further(tunings, tmp_path):
    engine, backend = tunings
    record = engine.create(
        "hana", json.loads(nbformat.writes(HYPERBAND)), {"lr": {"min": 0.01, "max": 1.0}},
        "score", max_trials=10, parallel=2, algorithm="hyperband", max_epochs=3, factor=3,
        name="hb",
    )  # fmt: skip
    # one Hyperband iteration: 3 trials of 1 epoch, the best of them on to 3; 2 more of 3
    assert record["max_trials"] == 6
    record = engine.advance("hana", record["id"])
    assert len(record["trials"]) == 2
    engine.oracle.close()  # the service restarts mid-search: Hyperband's rounds are on disk
    restarted = Tunings(tmp_path / "tunings", DirectJobs(LocalJobBackend(tmp_path / "data")))
    try:
        done = run_to_end(restarted, "hana", record["id"])
    finally:
        restarted.oracle.close()
    assert done["state"] == "succeeded", done
    trials = done["trials"]
    assert len(trials) == 6 and len(backend.list("hana")) == 6  # none lost, none run twice
    short = [t for t in trials if t["params"]["epochs"] == 1]
    full = [t for t in trials if t["params"]["epochs"] == 3]
    assert len(short) == 3 and len(full) == 3, trials
    # the weak two stopped after one epoch; the best of the three went on with its lr
    (further,) = [t for t in trials if t["schedule"]["continues"]]
    best_short = max(short, key=lambda t: t["objective"])
    assert further["schedule"]["continues"] == best_short["id"]
    assert further["params"]["lr"] == best_short["params"]["lr"]
    for t in trials:
        log = backend.logs("hana", t["job"], "worker-0")[0]
        epochs = t["params"]["epochs"]
        assert f"epoch {epochs}\n" in log and f"epoch {epochs + 1}\n" not in log, log
        lr = t["params"]["lr"]
        assert t["objective"] == pytest.approx((1 - abs(lr - 0.1)) * (1 - 0.5**epochs))
    best = next(t for t in trials if t["id"] == done["best"])
    assert best["objective"] == max(t["objective"] for t in trials) and best in full
    # every trial keeps its Keras backup; the one that goes on starts from its parent's
    for t in trials:
        script = Path(backend.get("hana", t["job"])["artifacts"]["script"]).read_text()
        assert 'environ["HUBFORGE_KEEP_BACKUP"] = "1"' in script
        parent = f"{done['id']}-t{best_short['id']}"
        warm = f'environ["HUBFORGE_WARM_START"] = "{parent}"'
        assert (warm in script) == (t is further), script[:300]


# a tiny Keras model trained with hubforge.distribute.callbacks() (BackupAndRestore in it)
KERAS_TRIAL = """{prologue}
import numpy as np
import tensorflow as tf
from hubforge import distribute
tf.keras.utils.set_random_seed(1)
x = np.random.rand(64, 3).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
model.compile("sgd", "mse")
model.fit(x, y, epochs={epochs}, verbose=0, callbacks=distribute.callbacks(tensorboard=False))
"""


def test_a_trial_that_goes_on_starts_from_the_epoch_the_one_it_continues_ended(tmp_path):
    """Hyperband's warm start, as two trials' scripts ask for it: the first keeps its
    backup when it ends, the second copies it in and trains only the epochs left."""
    from hubforge.jobs.spec import JobSpec

    backend = LocalJobBackend(tmp_path / "data")
    keep = 'import os\nos.environ["HUBFORGE_KEEP_BACKUP"] = "1"'
    first = KERAS_TRIAL.format(prologue=keep, epochs=1)
    backend.submit("wes", JobSpec(name="first"), first, job_id="hb-aaaaaa-t0")
    warm = keep + '\nos.environ["HUBFORGE_WARM_START"] = "hb-aaaaaa-t0"'
    deadline = time.monotonic() + 240
    while backend.get("wes", "hb-aaaaaa-t0")["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert backend.get("wes", "hb-aaaaaa-t0")["state"] == "succeeded"
    kept = Path(backend.get("wes", "hb-aaaaaa-t0")["artifacts"]["job_dir"]) / "backup"
    assert kept.is_dir() and any(kept.iterdir())  # kept at the end of training
    backend.submit("wes", JobSpec(name="second"), KERAS_TRIAL.format(prologue=warm, epochs=3),
                   job_id="hb-aaaaaa-t1")  # fmt: skip
    while backend.get("wes", "hb-aaaaaa-t1")["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert backend.get("wes", "hb-aaaaaa-t1")["state"] == "succeeded", backend.logs(
        "wes", "hb-aaaaaa-t1", "worker-0"
    )
    epochs = [h["epoch"] for h in backend.progress("wes", "hb-aaaaaa-t1")["history"]]
    assert epochs == [1, 2]  # epoch 0 was the first trial's
    first_loss = backend.progress("wes", "hb-aaaaaa-t0")["history"][0]["loss"]
    assert backend.progress("wes", "hb-aaaaaa-t1")["history"][0]["loss"] < first_loss


# keras-tuner's HyperbandOracle run to its end, each trial scored at random: how many trials
SIMULATE = """
import json, random, sys, tempfile
import keras_tuner as kt
counts = {}
for max_epochs, factor in json.loads(sys.argv[1]):
    hp = kt.HyperParameters()
    hp.Float("a", 0, 1)
    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("s", "max"), max_epochs=max_epochs, factor=factor,
        hyperparameters=hp, seed=1)
    oracle._set_project_dir(tempfile.mkdtemp(), "o")
    n = 0
    while (trial := oracle.create_trial(str(n))).status == "RUNNING":
        n += 1
        oracle.update_trial(trial.trial_id, {"s": random.random()})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    counts[f"{max_epochs},{factor}"] = n
print(json.dumps(counts))
"""


def test_the_trials_counted_for_hyperband_are_those_keras_tuner_runs():
    import subprocess
    import sys

    from hubforge.jobs.search_space import hyperband_trials

    settings = [(1, 3), (3, 3), (9, 3), (10, 3), (27, 3), (2, 2), (5, 4), (100, 3)]
    out = subprocess.run(
        [sys.executable, "-c", SIMULATE, json.dumps(settings)],
        capture_output=True, text=True, timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    ran = json.loads(out.stdout.strip().splitlines()[-1])
    assert ran == {f"{m},{f}": hyperband_trials(m, f) for m, f in settings}
    assert ran["9,3"] == 23  # the count docs/training.md gives


@pytest.mark.parametrize(
    "notebook, extra, says",
    [
        (NOTEBOOK, {}, "an `epochs = 10`"),
        (HYPERBAND, {"max_epochs": 0}, "max_epochs=0: the most epochs"),
        (HYPERBAND, {"max_epochs": 9, "factor": 1}, "factor=1: a whole number from 2 to 10"),
        (HYPERBAND, {"max_epochs": "9"}, "max_epochs='9'"),
    ],
)
def test_hyperband_requests_say_what_to_change(tunings, notebook, extra, says):
    engine, _ = tunings
    nb = json.loads(nbformat.writes(notebook))
    space = {"x": [1.0]} if notebook is NOTEBOOK else {"lr": [0.1, 0.2]}
    with pytest.raises(JobError, match=says.replace("(", r"\(").replace(")", r"\)")):
        engine.create("ana", nb, space, "score", algorithm="hyperband", **extra)
    with pytest.raises(JobError, match="leave 'epochs' out"):
        engine.create(
            "ana", json.loads(nbformat.writes(HYPERBAND)), {"epochs": [1, 2]}, "score",
            algorithm="hyperband", max_epochs=3,
        )  # fmt: skip
    assert engine.list("ana") == []


def test_a_folder_the_owner_put_in_a_trials_way_fails_that_trial_not_other_users_runs(
    tunings, tmp_path
):
    """The attacker review's case: a user makes folders named like their own next trials'
    jobs; the service's pass went down on the FileExistsError and no run after theirs moved."""
    engine, _ = tunings
    nb = json.loads(nbformat.writes(NOTEBOOK))
    mal = engine.create("mal", nb, {"x": [1.0, 2.0]}, "score", max_trials=2, parallel=1)
    vic = engine.create("vic", nb, {"x": [1.0, 2.0]}, "score", max_trials=2, parallel=2)
    for n in range(3):
        (tmp_path / "data" / "users" / "mal" / "jobs" / f"{mal['id']}-t{n}").mkdir(parents=True)
    engine.run_pass()
    mine = engine.get("mal", mal["id"])
    assert mine["trials"][0]["state"] == "failed"
    assert "already has an entry named" in mine["trials"][0]["message"], mine
    assert [t["state"] for t in engine.get("vic", vic["id"])["trials"]] == ["running", "running"]
    assert run_to_end(engine, "vic", vic["id"])["state"] == "succeeded"
    assert run_to_end(engine, "mal", mal["id"])["state"] == "failed"  # every trial in its way


@pytest.mark.parametrize(
    "space, objective, extra, says",
    [
        ({"y": [1, 2]}, "score", {}, "'y' is not a parameter of the notebook"),
        ({"x": {"min": 2, "max": 1}}, "score", {}, "min < max"),
        ({"x": {"min": 0.0, "max": 1.0, "log": True}}, "score", {}, "log scale needs min > 0"),
        ({"x": []}, "score", {}, "a list of 1 to 100 different values"),
        ({"x": [1.0]}, "", {}, "objective"),
        ({"x": [1.0]}, {"name": "score", "direction": "up"}, {}, "'max' or 'min'"),
        ({"x": [1.0]}, "score", {"algorithm": "grid"}, "one of 'random'"),
        ({"x": [1.0]}, "score", {"max_trials": 0}, "max_trials=0"),
        ({"x": [1.0]}, "score", {"parallel": 99}, "parallel=99"),
        ({"x": [1.0]}, "score", {"spec": {"workers": 0}}, "workers=0"),
    ],
)
def test_bad_requests_say_what_to_change(tunings, space, objective, extra, says):
    engine, _ = tunings
    nb = json.loads(nbformat.writes(NOTEBOOK))
    with pytest.raises(JobError, match=says.replace("(", r"\(").replace(")", r"\)")):
        engine.create("ana", nb, space, objective, **extra)
    assert engine.list("ana") == []


def hparams_table(url: str, post=None) -> dict[str, tuple]:
    """{session group: (x, score)} as TensorBoard's HParams dashboard asks its plugin
    (``post(path, body)``: its JSON answer; requests by default)."""
    import requests

    post = post or (lambda path, body: requests.post(url + path, json=body, timeout=30).json())
    deadline = time.monotonic() + 60
    while True:  # TensorBoard reads the log dirs a moment after it starts
        experiment = post("data/plugin/hparams/experiment", {"experimentName": ""})
        if experiment.get("metricInfos") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "score" in {m["name"]["tag"] for m in experiment["metricInfos"]}, experiment
    assert [h["name"] for h in experiment["hparamInfos"]] == ["x"], experiment
    request = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE"],
        "colParams": [{"metric": {"tag": "score", "group": ""}}, {"hparam": "x"}],
        "startIndex": 0,
        "sliceSize": 100,
    }
    groups = post("data/plugin/hparams/session_groups", request)["sessionGroups"]
    score = {
        g["name"]: next(
            (m["value"] for m in g["metricValues"] if m["name"]["tag"] == "score"), None
        )
        for g in groups
    }
    return {g["name"]: (g["hparams"]["x"], score[g["name"]]) for g in groups}


def test_tune_from_a_script_with_no_hub_waits_and_names_the_best(home):
    """``hubforge.jobs.tune`` as a user calls it; no service: ``wait()`` drives the search."""
    from hubforge import jobs

    path = home / "search.ipynb"
    nbformat.write(NOTEBOOK, str(path))
    tuning = jobs.tune(path, {"x": [1.0, 2.5, 3.0]}, "score", max_trials=3, parallel=3)
    assert tuning.wait(timeout=240).state == "succeeded"
    trials = tuning.trials
    assert sorted(t.params["x"] for t in trials) == [1.0, 2.5, 3.0]
    assert tuning.best.params["x"] == 3.0 and tuning.best.objective == 0.0
    assert all(t.job.status == "succeeded" for t in trials)
    assert [t.id for t in jobs.list_tunings()] == [tuning.id]
    # TensorBoard over the search: its HParams dashboard lists each trial, x beside score
    from hubforge import tensorboard

    board = tensorboard.open(tuning)
    try:
        assert board.name == tuning.id
        assert hparams_table(board.url) == {
            f"{tuning.id}-t{t.id}": (t.params["x"], t.objective) for t in trials
        }
    finally:
        board.stop()
    with pytest.raises(JobError, match=r"'y' is not a parameter of the notebook; its are: kind, x"):
        jobs.tune(path, {"y": [1]}, "score")
    with pytest.raises(JobError, match=r"expected float like 0\.0"):
        jobs.tune(path, {"x": ["big"]}, "score")


def test_the_cli_tunes_follows_lists_shows_and_cancels(tmp_path):
    """`hubforge job tune/tunings/tuning` as a user types them (no hub: the CLI process
    drives the search while it follows)."""
    import os

    from tests import cli_record

    home = tmp_path / "home"
    home.mkdir()
    nbformat.write(NOTEBOOK, str(home / "search.ipynb"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HUBFORGE_SERVICE_URL", "JUPYTERHUB_API_TOKEN", "HUBFORGE_PROFILE_GPUS")
    }
    env.update(HOME=str(home), HUBFORGE_DATA=str(tmp_path / "data"))

    def cli(*args):
        return cli_record.run(
            ["job", *args], capture_output=True, text=True, env=env, cwd=home, timeout=300
        )

    space = json.dumps({"x": {"min": 1.0, "max": 5.0}, "kind": ["a", "b"]})
    flags = ["--max-trials", "3", "--parallel", "2", "--algorithm", "bayesian", "--follow"]
    r = cli("tune", "search.ipynb", "--space", space, "--objective", "score", *flags)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[1].rstrip(";")
    assert "3/3 trials done" in r.stderr
    assert f"{run_id}  succeeded  3/3 trials, 2 at a time  bayesian  max score" in r.stdout
    assert r.stdout.count("  <- best") == 1 and r.stdout.count("  trial ") == 3
    r = cli("tunings")
    assert r.returncode == 0 and r.stdout.startswith(run_id) and "3/3 trials" in r.stdout
    r = cli("tuning", run_id)
    assert r.returncode == 0 and "<- best" in r.stdout

    slow = new_notebook(cells=[
        new_code_cell("x = 0.0\nepochs = 1", metadata={"tags": ["parameters"]}),
        new_code_cell("import time\ntime.sleep(300)"),
    ])  # fmt: skip
    nbformat.write(slow, str(home / "slow.ipynb"))
    r = cli("tune", "slow.ipynb", "--space", '{"x": [1.0, 2.0]}', "--objective", "score")
    assert r.returncode == 0, r.stderr
    slow_id = r.stdout.split()[1].rstrip(";")
    r = cli("tuning", slow_id, "--cancel")
    assert r.returncode == 0 and f"{slow_id}  cancelled" in r.stdout, r.stdout
    # Hyperband over 9 epochs, factor 3: 23 trials in one iteration (fewer than 30 asked)
    space = '{"x": {"min": 1.0, "max": 5.0}}'
    hyperband = ["--algorithm", "hyperband", "--max-epochs", "9", "--factor", "3"]
    r = cli("tune", "slow.ipynb", "--space", space, "--objective", "score", "--max-trials", "30",
            *hyperband)  # fmt: skip
    assert r.returncode == 0, r.stderr
    hb_id = r.stdout.split()[1].rstrip(";")
    r = cli("tuning", hb_id, "--cancel")
    assert r.returncode == 0 and f"{hb_id}  cancelled  2/23 trials" in r.stdout, r.stdout
    assert r.stdout.count("epochs=1") == 2  # bracket 2 starts: 9 trials of 1 epoch each
    r = cli("tune", "slow.ipynb", "--space", "{x: 1}", "--objective", "score")
    assert r.returncode == 2 and "JSON like" in r.stderr
    r = cli("tuning", "nope-123456")
    assert r.returncode == 2 and "No tuning run 'nope-123456'" in r.stderr


def test_a_user_has_at_most_four_searches_at_once(tunings):
    engine, _ = tunings
    nb = json.loads(nbformat.writes(NOTEBOOK))
    made = [engine.create("eli", nb, {"x": [1.0]}, "score", name=f"s{i}") for i in range(4)]
    with pytest.raises(JobError, match="has 4 tuning runs searching") as refused:
        engine.create("eli", nb, {"x": [1.0]}, "score")
    assert refused.value.status == 429
    engine.create("fay", nb, {"x": [1.0]}, "score")  # another user's count is their own
    engine.cancel("eli", made[0]["id"])
    engine.create("eli", nb, {"x": [1.0]}, "score")  # one ended: room again
