from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from traitlets import TraitError

from hubforge.atomic import read_json, write_json
from hubforge.workbench import (
    SOURCE_TREE,
    ConfigError,
    Workbench,
    detect_gpus,
    load_workbench,
    normalize_base_url,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("HUBFORGE_CONFIG", "HUBFORGE_GPUS", "HUBFORGE_PORT", "HUBFORGE_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HUBFORGE_DIR", str(tmp_path / "data"))


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("/", "/"), ("/forge", "/forge/"), ("/a%40b/", "/a@b/"), ("/hub forge/", "/hub%20forge/")],
)
def test_base_url_spelling(given, canonical):
    assert normalize_base_url(given) == canonical


def test_defaults(tmp_path):
    wb = Workbench(gpus=["0", "1"])
    assert wb.data_dir == str(tmp_path / "data")
    assert (wb.ip, wb.port, wb.base_url) == ("127.0.0.1", 8000, "/")
    assert [p["slug"] for p in wb.profiles] == ["cpu", "gpu-1", "gpu-2"]
    assert wb.user_area("alice") == tmp_path / "data" / "hdfs" / "users" / "alice"
    wb.prepare()
    assert stat.S_IMODE(wb.state_dir.stat().st_mode) == 0o700
    assert (wb.shared_data / "datasets").is_dir()


def test_data_dir_inside_the_source_tree_is_refused():
    with pytest.raises(TraitError, match="inside the source tree"):
        Workbench(data_dir=str(SOURCE_TREE / "data"))


def test_misspelt_key_stops_startup(tmp_path):
    config = tmp_path / "hubforge_config.py"
    config.write_text('c.Workbench.gpuss = ["0"]\n')
    with pytest.raises(
        ConfigError, match=r"Unknown setting Workbench.gpuss. Did you mean Workbench.gpus\?"
    ):
        load_workbench(str(config))


def test_bad_value_names_the_key(tmp_path):
    config = tmp_path / "hubforge_config.py"
    config.write_text('c.Workbench.profiles = [{"slug": "cpu", "gpus": "two"}]\n')
    with pytest.raises(ConfigError, match=r"Workbench.profiles\[0\].gpus='two'"):
        load_workbench(str(config))


def test_broken_config_file(tmp_path):
    config = tmp_path / "hubforge_config.py"
    config.write_text("c.Workbench.port = \n")
    with pytest.raises(ConfigError, match="Could not load config file"):
        load_workbench(str(config))
    with pytest.raises(ConfigError, match="does not exist"):
        load_workbench(str(tmp_path / "missing.py"))


def test_gpu_inventory_from_nvidia_smi(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)"\n'
        'echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbb)"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert detect_gpus() == ["0", "1"]
    assert [p["display_name"] for p in Workbench().profiles] == ["CPU", "1 GPU", "2 GPUs"]


def test_atomic_json(tmp_path):
    path = tmp_path / "state" / "x.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert read_json(path) == {"a": 2}
    assert read_json(tmp_path / "missing.json", {}) == {}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_job_backend_is_chosen_by_name():
    from hubforge.jobs.kubernetes import KubernetesJobBackend
    from hubforge.jobs.local import LocalJobBackend
    from hubforge.service.app import backend_class

    assert Workbench().job_backend == "local"
    assert backend_class("hubforge.job_backends", "local") is LocalJobBackend
    assert backend_class("hubforge.job_backends", "kubernetes") is KubernetesJobBackend
    with pytest.raises(TraitError, match="choose one of kubernetes, local"):
        Workbench(job_backend="slurm")


def test_endpoint_backend_is_chosen_by_name():
    from hubforge.service.app import backend_class
    from hubforge.serving.kubernetes import KubernetesEndpointBackend
    from hubforge.serving.local import LocalEndpointBackend

    assert Workbench().endpoint_backend == "local"
    assert backend_class("hubforge.endpoint_backends", "local") is LocalEndpointBackend
    assert backend_class("hubforge.endpoint_backends", "kubernetes") is KubernetesEndpointBackend
    with pytest.raises(TraitError, match="endpoint_backend='seldon': choose one of kubernetes"):
        Workbench(endpoint_backend="seldon")


def test_root_keeps_users_apart_by_default_and_says_when_it_cannot(tmp_path, monkeypatch):
    """As root, isolation is 'accounts' wherever accounts can work; where the data folder
    sits behind a folder other accounts cannot pass, it is 'none' and `up` says why."""
    from hubforge import accounts

    monkeypatch.delenv("HUBFORGE_ISOLATION", raising=False)
    if os.geteuid() != 0:
        wb = Workbench(data_dir=str(tmp_path / "data"))
        assert wb.isolation == "none" and wb.isolation_warning() is None
        return
    if accounts.refusal("/") is not None:
        pytest.skip(f"accounts cannot be made here: {accounts.refusal('/')}")
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    for folder in (open_dir, *open_dir.parents):
        if folder != folder.parent:
            folder.chmod(folder.stat().st_mode | 0o011)
    assert Workbench(data_dir=str(open_dir / "data")).isolation == "accounts"
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    wb = Workbench(data_dir=str(closed / "data"))
    assert wb.isolation == "none"
    warning = wb.isolation_warning()
    assert "NOT kept apart" in warning and str(closed) in warning and "/srv" in warning
    monkeypatch.setenv("HUBFORGE_ISOLATION", "none")
    assert Workbench(data_dir=str(open_dir / "data")).isolation == "none"


def test_root_keeps_users_apart_by_default(monkeypatch):
    """The README's first command as root: no --data-dir, no $HUBFORGE_DIR. The data folder
    is not under root's home (closed to the users' accounts), so isolation is 'accounts'
    with no extra flag wherever accounts can be made (security review 2026-12-04)."""
    from hubforge import accounts

    monkeypatch.delenv("HUBFORGE_DIR")
    monkeypatch.delenv("HUBFORGE_ISOLATION", raising=False)
    wb = Workbench()
    if os.geteuid() != 0:
        assert wb.data_dir == str(Path.home() / ".hubforge") and wb.isolation == "none"
        return
    assert wb.data_dir == "/var/lib/hubforge"
    assert accounts.closed_folder(wb.data_dir) is None
    if accounts.refusal(wb.data_dir) is None:
        assert wb.isolation == "accounts" and wb.isolation_warning() is None


def test_the_proxy_and_label_studio_are_found_beside_an_installed_copy(monkeypatch, tmp_path):
    """A clone closed to other accounts installs into /opt/hubforge: the package then sits
    in site-packages, and the proxy and Label Studio's venv beside the environment."""
    import sys

    from hubforge.hub import config

    runtime = tmp_path / "opt-hubforge"
    for tool in ("node_modules/.bin/configurable-http-proxy", ".venvs/label-studio/bin/python"):
        (runtime / tool).parent.mkdir(parents=True)
        (runtime / tool).write_text("#!/bin/sh\n")
        (runtime / tool).chmod(0o755)
    monkeypatch.setattr(sys, "prefix", str(runtime / "venv"))
    monkeypatch.setattr(config, "SOURCE_TREE", tmp_path / "site-packages")
    monkeypatch.delenv("HUBFORGE_CHP", raising=False)
    monkeypatch.delenv("HUBFORGE_LABEL_STUDIO_PYTHON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert config.find_proxy() == str(runtime / "node_modules/.bin/configurable-http-proxy")
    import hubforge.workbench as module

    monkeypatch.setattr(module, "__file__", str(tmp_path / "site-packages/hubforge/workbench.py"))
    assert Workbench().label_studio_python == str(runtime / ".venvs/label-studio/bin/python")
