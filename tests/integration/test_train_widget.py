"""The Train widget driven through its Python methods (the same callbacks a click fires)."""

from __future__ import annotations

from pathlib import Path

import requests

from hubforge import serving
from hubforge.widgets import train
from hubforge.widgets.train import logs_html


def test_form_is_prefilled_from_the_parameters_cell(home):
    widget = train(home / "train.ipynb")
    assert {name: box.value for name, box in widget.params.items()} == {
        "epochs": "3",
        "steps": "10",
        "delay": "0.0",
    }
    assert widget.workers.value == 1
    assert widget.train_button.disabled is False
    assert widget.cancel_button.disabled and widget.logs_button.disabled


def test_click_train_runs_the_job_and_shows_progress(home):
    widget = train(home / "train.ipynb", poll_interval=0.3)
    widget.workers.value = 2
    widget.params["epochs"].value = "2"
    widget.train_button.click()
    assert widget.job is not None and widget.train_button.disabled
    assert widget.wait(timeout=240) == "succeeded"
    assert "succeeded" in widget.status.value
    assert widget.progress_bar.value == widget.progress_bar.max == 2 * 10
    assert "worker-1: succeeded" in widget.replicas.value
    assert widget.chart.value.startswith("<svg") and "<polyline" in widget.chart.value
    assert "loss" in widget.chart.value
    widget.logs_button.click()
    assert "Epoch 2/2" in widget.logs.value and widget.logs.layout.display == "flex"
    assert widget.replica_picker.options == ("worker-0", "worker-1")
    widget.replica_picker.value = "worker-1"  # the picker shows that replica's log
    assert widget.logs.value == logs_html(widget.job.logs("worker-1"), "")
    assert widget.train_button.disabled is False
    assert widget.deploy_button.disabled is False  # a finished job's model can be deployed
    exported = Path(serving.model_dir_of(widget.job))  # what deploy(job) serves
    assert (exported / "saved_model.pb").is_file()
    widget.tensorboard_button.click()
    assert widget.board in widget.children  # drawn on screen, below the job
    (board,) = widget.board.children
    assert board.instance.logdirs == {widget.job.id: widget.job.artifacts["log_dir"]}
    assert requests.get(board.instance.url + "data/runs", timeout=30).json() == ["train"]
    board.stop()
    widget.deploy_button.click()
    (deployer,) = widget.board.children  # the Deploy widget replaces TensorBoard there
    assert "hubforge-deploy" in deployer._dom_classes
    widget.close()


def test_a_failed_job_shows_one_story_and_its_error_first(home):
    """After a failure: no replica still "running", no "waiting for the first training
    step", the logs open at the error on the failing replica, and a re-train clears them."""
    import nbformat

    broken = home / "broken.ipynb"
    cells = [
        nbformat.v4.new_code_cell("epochs = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import not_a_module"),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), broken)
    widget = train(broken, poll_interval=0.3)
    widget.train_button.click()
    assert widget.wait(timeout=120) == "failed"
    assert "failed before the first training step" in widget.status.value
    assert "waiting" not in widget.status.value and "running" not in widget.replicas.value
    assert "hubforge job" not in widget.status.value  # no CLI advice in a notebook
    widget.logs_button.click()
    assert widget.replica_picker.value == "worker-0"
    error_at = widget.logs.value.index("ModuleNotFoundError")
    assert error_at < widget.logs.value.index("<pre")  # the error above the log
    failed = widget.job
    widget.train()  # again: the logs on screen were the failed job's, they go
    assert widget.job is not failed
    assert widget.logs.value == "" and widget.logs.layout.display == "none"
    widget.cancel()
    widget.close()


def test_cancel_button(home):
    widget = train(home / "train.ipynb", poll_interval=0.3)
    widget.params["epochs"].value = "100"
    widget.params["delay"].value = "0.2"
    job = widget.train()
    assert widget.deploy_button.disabled is True  # nothing exported yet
    widget.cancel_button.click()
    assert job.status == "cancelled"
    assert "cancelled" in widget.status.value
    widget.close()


def test_bad_input_is_shown_and_submits_nothing(home, tmp_path):
    widget = train(home / "train.ipynb")
    widget.params["epochs"].value = '"many"'
    widget.train_button.click()
    assert widget.job is None
    assert "Not submitted" in widget.status.value and "expected int like 3" in widget.status.value
    assert not (tmp_path / "data" / "users").exists()


def test_warnings_are_shown_and_train_anyway_submits(home):
    """A notebook the check warns about: the first click shows the warnings (with the cell)
    and submits nothing; "Train anyway" submits; the figures it drew show as thumbnails."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nname = 'x'"),
        nbformat.v4.new_code_cell("if False:\n    name = input()\nplt.plot([1, 3, 2])\nplt.show()"),
    ]
    nbformat.write(nb, home / "asks.ipynb")
    widget = train(home / "asks.ipynb", poll_interval=0.3)
    assert widget.train() is None and widget.job is None
    assert "cell 2: input()" in widget.warnings.value
    assert widget.train_button.description == "Train anyway"
    job = widget.train()
    assert job is not None and widget.warnings.value == ""
    assert widget.wait(timeout=120) == "succeeded", job.reason
    (thumbnail,) = widget.figures.children
    assert thumbnail.format == "png" and bytes(thumbnail.value[:8]) == b"\x89PNG\r\n\x1a\n"
    widget.close()
