"""Notebook -> job script conversion and job input checks (no TensorFlow run)."""

from __future__ import annotations

import json

import nbformat
import pytest

from hubforge import jobs
from hubforge.jobs.convert import parameters_of, read_notebook, to_script, uses_strategy
from hubforge.jobs.local import LocalJobBackend
from hubforge.jobs.spec import JobSpec
from tests.notebooks import training_notebook


def test_script_keeps_code_drops_skip_job_and_overrides_parameters(home):
    nb = read_notebook(training_notebook(home / "train.ipynb"))
    assert parameters_of(nb) == {"epochs": 3, "steps": 10, "delay": 0.0}
    script = to_script(nb, {"epochs": 5})
    assert "only when exploring" not in script
    assert "# Train a tiny classifier" not in script  # markdown is not code
    assert script.index("epochs = 3") < script.index("epochs = 5") < script.index("model.fit")
    assert "get_ipython().system('echo shell-command-ran')" in script
    assert "get_ipython().run_line_magic('time', 'warmup = 1')" in script
    assert uses_strategy(script)


def test_notebook_without_language_info_converts_to_python(home):
    nb = read_notebook(training_notebook(home / "t.ipynb", language_info=False))
    assert "import tensorflow as tf" in to_script(nb)


def test_interactive_magics_are_refused_with_the_cell_number(home):
    path = training_notebook(home / "t.ipynb")
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("%debug"))
    with pytest.raises(jobs.JobError, match=r"cell 7: %debug opens an interactive debugger"):
        to_script(nb)


def test_unknown_and_mistyped_params(home):
    nb = read_notebook(training_notebook(home / "t.ipynb"))
    with pytest.raises(jobs.JobError, match=r"Unknown parameter.*epoch; the notebook.s are: delay"):
        to_script(nb, {"epoch": 3})
    with pytest.raises(jobs.JobError, match="expected int like 3"):
        to_script(nb, {"epochs": "three"})


def test_bad_notebooks(home):
    (home / "broken.ipynb").write_text("{not json")
    with pytest.raises(jobs.JobError, match="not a readable notebook"):
        read_notebook(home / "broken.ipynb")
    (home / "invalid.ipynb").write_text(
        json.dumps({"cells": "x", "nbformat": 4, "nbformat_minor": 5, "metadata": {}})
    )
    with pytest.raises(jobs.JobError, match="not a valid notebook"):
        read_notebook(home / "invalid.ipynb")
    with pytest.raises(jobs.JobError, match="does not exist"):
        read_notebook(home / "missing.ipynb")


def submitted_nothing(tmp_path) -> bool:
    return not (tmp_path / "data" / "users").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers=0: choose between 1 and 8"),
        ({"workers": 9}, "workers=9: choose between 1 and 8"),
        ({"gpus_per_worker": -1}, "gpus_per_worker=-1"),
        ({"max_restarts": -1}, "max_restarts=-1"),
        ({"name": "Bad Name"}, "name='Bad Name'"),
        ({"params": {"nope": 1}}, "Unknown parameter"),
    ],
)
def test_bad_submissions_create_nothing(home, tmp_path, kwargs, message):
    path = training_notebook(home / "train.ipynb")
    with pytest.raises(jobs.JobError, match=message):
        jobs.submit(path, **kwargs)
    assert submitted_nothing(tmp_path)


def test_gpus_beyond_the_profile(home, tmp_path, monkeypatch):
    monkeypatch.setenv("HUBFORGE_PROFILE_GPUS", "1")
    with pytest.raises(jobs.JobError, match="your profile allows at most 1"):
        jobs.submit(training_notebook(home / "t.ipynb"), gpus_per_worker=2)
    assert submitted_nothing(tmp_path)


def test_outside_home_is_refused(home, tmp_path):
    outside = training_notebook(tmp_path / "elsewhere" / "t.ipynb")
    with pytest.raises(jobs.JobError, match="outside your home folder"):
        jobs.submit(outside)
    assert submitted_nothing(tmp_path)


def test_several_workers_need_a_strategy(home, tmp_path):
    path = training_notebook(home / "t.ipynb", strategy=False)
    with pytest.raises(jobs.JobError, match=r"never enters a tf\.distribute strategy scope"):
        jobs.submit(path, workers=2)
    assert submitted_nothing(tmp_path)


def test_other_file_types(home):
    (home / "data.csv").write_text("a,b\n")
    with pytest.raises(jobs.JobError, match="submit a notebook"):
        jobs.submit(home / "data.csv")
    (home / "s.py").write_text("print(1)\n")
    with pytest.raises(jobs.JobError, match="params need a notebook"):
        jobs.submit(home / "s.py", params={"a": 1})


def test_spec_from_dict_rejects_unknown_fields():
    with pytest.raises(jobs.JobError, match=r"Unknown job field\(s\) \['gpus'\]"):
        JobSpec.from_dict({"name": "x", "gpus": 1})


def test_foreign_or_unknown_job_ids(tmp_path):
    backend = LocalJobBackend(tmp_path)
    for bad in ("nope", "../alice/jobs/x", ".hidden"):
        with pytest.raises(jobs.JobNotFound):
            backend.get("bob", bad)


def _nb(*sources: str, tags: dict[int, list[str]] | None = None):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    for index, cell_tags in (tags or {}).items():
        nb.cells[index - 1].metadata["tags"] = cell_tags
    return nb


def test_lint_names_the_cell_of_each_problem_a_job_would_meet():
    from hubforge.jobs.convert import lint

    nb = _nb(
        "import tensorflow as tf\nx = tf.constant([1.0])",  # fine: strategy made at start
        "from hubforge import distribute\nstrategy = distribute.strategy()",
        "name = input('your name? ')",
        "%matplotlib qt\nimport matplotlib\nmatplotlib.use('TkAgg')",
        "data = open('/home/jovyan/data.csv').read()\nok = open('/srv/mine/x.csv')",
        "print(input('skipped'))",
        tags={6: ["skip-job"]},
    )
    warnings = lint(nb, workers=2, areas=("/srv/mine",))
    assert [w.split(":")[0] for w in warnings] == [
        "cell 3",
        "cell 4",
        "cell 4",
        "cell 5",
    ], warnings
    assert "input()" in warnings[0] and "parameter" in warnings[0]
    assert "%matplotlib qt" in warnings[1] and "matplotlib.use('TkAgg')" in warnings[2]
    assert "/home/jovyan/data.csv" in warnings[3] and "/srv/mine" not in warnings[3]


def test_a_notebook_making_its_own_strategy_is_warned_in_the_same_cell_too():
    """Its own MultiWorkerMirroredStrategy after TensorFlow ran (earlier cell or earlier
    line of the same cell) fails every worker: the warning names the cell."""
    from hubforge.jobs.convert import lint

    same_cell = _nb(
        "import tensorflow as tf\n"
        "data = tf.data.Dataset.range(8)\n"
        "strategy = tf.distribute.MultiWorkerMirroredStrategy()",
    )
    (warning,) = lint(same_cell, workers=2)
    assert warning.startswith("cell 1: tf.data.Dataset.range() runs TensorFlow before"), warning
    assert "hubforge.distribute.strategy()" in warning
    earlier = _nb(
        "import tensorflow as tf\nx = tf.constant(1)",
        "s = tf.distribute.MultiWorkerMirroredStrategy()",
    )
    assert [w.split(":")[0] for w in lint(earlier, workers=2)] == ["cell 1"]
    assert lint(earlier, workers=1) == []


def test_lint_is_quiet_for_a_notebook_that_runs_as_a_job():
    from hubforge.jobs.convert import lint

    nb = _nb(
        "%matplotlib inline\nimport tensorflow as tf\nfrom hubforge import distribute",
        "strategy = distribute.strategy()\nwith strategy.scope():\n    m = tf.keras.Sequential()",
        "!pip list | head -3",
        "def broken(:\n    pass",  # a syntax error: the job reports it itself
    )
    assert lint(nb, workers=2) == []
    # one worker: TensorFlow before the strategy is fine (no collective ops to configure)
    assert (
        lint(_nb("import tensorflow as tf\ntf.constant(1)", "s = tf.distribute.MirroredStrategy()"))
        == []
    )
