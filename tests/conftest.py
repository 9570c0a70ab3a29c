"""Shared fixtures: one real workbench (hub + proxy + service) per test session."""

from __future__ import annotations

import pytest

from tests.notebooks import training_notebook
from tests.workbench import RunningWorkbench, start_workbench

# A fake inventory of two GPUs: allocation is real, the devices are not.
SESSION_CONFIG = (
    'c.Workbench.gpus = ["0", "1"]\n'
    "c.Workbench.tensorboard_idle_timeout = 15\n"
    "c.Workbench.max_endpoints_per_user = 2\n"
)


@pytest.fixture(scope="session")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> RunningWorkbench:
    wb = start_workbench(tmp_path_factory.mktemp("workbench"), config=SESSION_CONFIG)
    yield wb
    wb.down()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """No hub around: a fresh home with train.ipynb and a data folder; jobs run in-process."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HUBFORGE_DATA", str(tmp_path / "data"))
    for var in (
        "HUBFORGE_SERVICE_URL",
        "JUPYTERHUB_API_TOKEN",
        "HUBFORGE_PROFILE_GPUS",
        "HUBFORGE_USER_AREA",
        "JUPYTERHUB_SERVICE_PREFIX",
    ):
        monkeypatch.delenv(var, raising=False)
    training_notebook(home / "train.ipynb")
    return home
