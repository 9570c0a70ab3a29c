"""The Train widget driven through its Python methods (the same callbacks a click fires)."""

from __future__ import annotations

from pathlib import Path

import requests

from hubforge import serving
from hubforge.widgets import train


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
    assert "Epoch 2/2" in widget.logs.value and widget.logs.layout.display == "block"
    assert widget.train_button.disabled is False
    assert widget.deploy_button.disabled is False  # a finished job's model can be deployed
    exported = Path(serving.model_dir_of(widget.job))  # what deploy(job) serves
    assert (exported / "saved_model.pb").is_file()
    widget.tensorboard_button.click()
    (board,) = widget.board.children
    assert board.instance.logdirs == {widget.job.id: widget.job.artifacts["log_dir"]}
    assert requests.get(board.instance.url + "data/runs", timeout=30).json() == ["train"]
    board.stop()
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
