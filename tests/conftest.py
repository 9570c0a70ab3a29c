"""Shared fixtures: one real workbench (hub + proxy + service) per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import psutil
import pytest

from hubforge.processes import free_port
from tests.models import warm_cache as warm_models
from tests.notebooks import training_notebook
from tests.workbench import RunningWorkbench, isolated, passable, start_workbench


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The OS accounts the suite's workbenches made go with it (see remove_accounts)."""
    import os

    from tests.workbench import STARTED, remove_accounts

    early = session.config.stash.get(EARLY, None)
    if early is not None:  # the shared workbench stops, whether a test used it or not
        early.thread.join()
        if early.result is not None:
            early.result.down()
    if os.geteuid() == 0 and STARTED:
        remove_accounts(STARTED)


def pytest_configure(config: pytest.Config) -> None:
    """Each run's temporary folders in /tmp/hubforge-tests/run-<pid> (not pytest's
    /tmp/pytest-of-<user>): workbenches with per-user accounts open the folders above their
    data to every account, and any other pytest started meanwhile would close pytest's own
    folder again (0700), locking the users of a running suite out of their homes. Folders of
    runs that have ended are removed when the next run starts."""
    if config.option.basetemp or not isolated():
        return
    root = Path(tempfile.gettempdir()) / "hubforge-tests"
    root.mkdir(exist_ok=True)
    root.chmod(0o711)
    for old in root.glob("run-*"):
        pid = old.name.removeprefix("run-")
        if not (pid.isdigit() and psutil.pid_exists(int(pid))):
            shutil.rmtree(old, ignore_errors=True)
    config.option.basetemp = str(root / f"run-{os.getpid()}")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist (``make test``, with ``--no-loadscope-reorder``) a worker takes a whole
    file when it is free, in this order: files that start hubs, browsers and TensorFlow
    (integration, e2e) first and the many short ones (unit, chart) after, so that no worker
    is left alone with a long file at the end while the other idles. The shuffled order
    (pytest-randomly) is kept within each group."""
    if not getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return

    def short(item: pytest.Item) -> bool:
        parts = item.path.parts
        return "unit" in parts or "chart" in parts

    items.sort(key=short)  # a stable sort: the order within each group stays


# Where the shared workbench sends notifications: an SMTP server and a webhook receiver that
# the notification tests start on loopback (tests/mailbox.py), one pair per test process.
SMTP_PORT, HOOK_PORT = free_port(), free_port()
# A fake inventory of two GPUs: allocation is real, the devices are not.
SESSION_CONFIG = (
    'c.Workbench.gpus = ["0", "1"]\n'
    "c.Workbench.tensorboard_idle_timeout = 15\n"
    "c.Workbench.max_endpoints_per_user = 2\n"
    "c.Workbench.drift_check_interval = 2\n"  # (a minute by default)
    "c.Workbench.endpoint_scale_down_delay = 4\n"  # (a minute by default)
    "c.Workbench.endpoint_scale_up_window = 4\n"  # (10 s by default)
    "c.Workbench.endpoint_health_interval = 1\n"  # (5 s by default)
    # the schedules' clock, which tests move on (service folder/schedule-clock)
    "c.Workbench.schedule_clock_file = 'schedule-clock'\n"
    f"c.Notifications.smtp_host = '127.0.0.1'\nc.Notifications.smtp_port = {SMTP_PORT}\n"
    "c.Notifications.email_template = '{username}@hubforge.test'\n"
    f"c.Notifications.webhook_prefixes = ['http://127.0.0.1:{HOOK_PORT}/hooks/']\n"
    "c.Notifications.public_url = 'http://hub.hubforge.test/'\n"
    # the default classes and one only the on-call person may use
    "c.Workbench.priority_classes = [{'name': 'oncall', 'value': 400, 'users': ['oncall-olga']},"
    " {'name': 'interactive', 'value': 300}, {'name': 'normal', 'value': 200},"
    " {'name': 'batch', 'value': 100, 'preemptible': True}]\n"
)


class EarlyStart:
    """The shared workbench, started in a thread as soon as the tests are collected, so that
    its start (hub, proxy, service, Label Studio: half a minute or more on 2 cores) overlaps
    the tests that need no workbench. It gets the environment as it was then: tests change
    os.environ meanwhile."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.result: RunningWorkbench | None = None
        self.error: BaseException | None = None
        passable(data_dir)
        env = dict(os.environ)
        self.thread = threading.Thread(target=self._start, args=(env,), daemon=True)
        self.thread.start()

    def _start(self, env: dict[str, str]) -> None:
        try:
            self.result = start_workbench(self.data_dir, config=SESSION_CONFIG, env=env)
        except BaseException as e:  # re-raised where a test asks for the workbench
            self.error = e

    def get(self) -> RunningWorkbench:
        self.thread.join()
        if self.error is not None:
            raise RuntimeError("the shared workbench did not start") from self.error
        assert self.result is not None
        return self.result


EARLY = pytest.StashKey[EarlyStart]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any({"integration", "e2e"} & set(item.path.parts) for item in session.items):
        threading.Thread(target=warm_models, daemon=True).start()
    if any("workbench" in item.fixturenames for item in session.items):
        folder = session.config._tmp_path_factory.mktemp("workbench")
        session.config.stash[EARLY] = EarlyStart(folder)


@pytest.fixture(scope="session")
def workbench(request: pytest.FixtureRequest) -> RunningWorkbench:
    early = request.config.stash.get(EARLY, None)
    if early is None:  # a test that asks for it in a way collection did not show
        folder = request.config._tmp_path_factory.mktemp("workbench")
        request.config.stash[EARLY] = early = EarlyStart(folder)
    yield early.get()


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
