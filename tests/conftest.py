"""Shared fixtures: one real workbench (hub + proxy + service) per test session."""

from __future__ import annotations

import pytest

from tests.workbench import RunningWorkbench, start_workbench

# A fake inventory of two GPUs: allocation is real, the devices are not.
SESSION_CONFIG = 'c.Workbench.gpus = ["0", "1"]\nc.Workbench.tensorboard_idle_timeout = 15\n'


@pytest.fixture(scope="session")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> RunningWorkbench:
    wb = start_workbench(tmp_path_factory.mktemp("workbench"), config=SESSION_CONFIG)
    yield wb
    wb.down()
