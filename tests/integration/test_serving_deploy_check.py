"""Deploy loads and checks a new version (load, signatures, a warm-up call) before it serves:
a broken version is the deploy's error and never interrupts the version serving."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
import requests

from hubforge.serving.errors import BadRequest
from hubforge.serving.local import LocalEndpointBackend
from tests.models import _run, keras_model

# A model whose own code refuses zeros: it loads, but its first call fails.
REFUSES_ZEROS = """
import sys, tensorflow as tf
class M(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        tf.debugging.assert_positive(x, message="inputs must be positive")
        return {"y": tf.reduce_sum(x, axis=1)}
m = M()
tf.saved_model.save(m, sys.argv[1], signatures={"serving_default": m.serve})
"""


@pytest.fixture
def backend(tmp_path):
    root = tmp_path / "hdfs"
    backend = LocalEndpointBackend(root, tmp_path / "state" / "endpoints.json")
    yield backend
    for record in backend._records().values():
        backend.undeploy(record["owner"], record["name"])


def exports(backend):
    return backend.area("ann") / "exports"


def hammer(url: str, headers: dict, stop: threading.Event, answers: list[int]) -> None:
    with requests.Session() as s:
        s.headers.update(headers)  # as the gateway calls it
        while not stop.is_set():
            r = s.post(url, json={"instances": [[1, 2, 3, 4]]}, timeout=30)
            answers.append(r.json()["predictions"] == [[11.0]] if r.status_code == 200 else 0)


@pytest.mark.parametrize("damage", ["corrupt saved_model.pb", "fails its warm-up call"])
def test_a_broken_version_never_replaces_the_one_serving(backend, damage):
    good = keras_model(exports(backend), 1, bias=1.0)
    record = backend.deploy("ann", "clf", str(good))
    assert record["versions"] == [1]
    broken = exports(backend) / "broken"
    if damage == "corrupt saved_model.pb":
        shutil.copytree(good, broken)
        pb = broken / "saved_model.pb"
        pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 3])
        expected = "Version 2 failed to load"
    else:
        _run(REFUSES_ZEROS, str(broken))
        expected = "warm-up call of signature 'serving_default' failed"

    url = backend.target("ann", "clf") + "/v1/models/clf:predict"
    key = backend.gateway_headers("ann", "clf")  # what the gateway adds
    assert requests.post(url, json={"instances": [[1, 2, 3, 4]]}, timeout=30).status_code == 403
    stop, answers = threading.Event(), []
    caller = threading.Thread(target=hammer, args=(url, key, stop, answers))
    caller.start()
    try:
        with pytest.raises(BadRequest) as e:
            backend.deploy("ann", "clf", str(broken))
    finally:
        stop.set()
        caller.join(timeout=60)
    assert expected in str(e.value) and "It was not deployed" in str(e.value)
    assert len(answers) > 10 and all(answers), f"{answers.count(0)} of {len(answers)} failed"
    # nothing changed: version 1 serves, version 2 is not left behind
    assert backend.get("ann", "clf")["versions"] == [1]
    assert not (backend.area("ann") / "models" / "clf" / "2").exists()
    r = requests.post(url, json={"instances": [[1, 2, 3, 4]]}, headers=key, timeout=30)
    assert r.json() == {"predictions": [[11.0]]}

    # a good version 2 then deploys as usual
    fixed = keras_model(exports(backend), 3, bias=2.0)
    assert backend.deploy("ann", "clf", str(fixed))["versions"] == [1, 2]
    r = requests.post(url, json={"instances": [[1, 2, 3, 4]]}, headers=key, timeout=30)
    assert r.json() == {"predictions": [[12.0]]}


@pytest.mark.parametrize("attack", ["link to the environment", "link to state", "a pipe"])
def test_deploy_never_copies_through_links_out_of_the_model(backend, tmp_path, attack):
    """bob's "model" carries links to what only the service may read: refused, nothing
    copied (the service would otherwise copy its own secrets into bob's area)."""
    model = exports(backend) / "evil"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"not really")
    state = tmp_path / "state"
    state.mkdir()
    (state / "service-token").write_text("s3cret")
    if attack == "link to the environment":
        (model / "env").symlink_to("/proc/self/environ")
    elif attack == "link to state":
        (model / "assets").symlink_to(state)
    else:
        os.mkfifo(model / "pipe")
    with pytest.raises(BadRequest, match=r"Not deployed: .*(links outside|not a regular file)"):
        backend.deploy("ann", "evil", str(model))
    base = backend.area("ann") / "models" / "evil"
    assert not base.exists() or list(base.iterdir()) == [], "nothing half-copied left"
    assert "s3cret" not in "".join(
        f.read_text(errors="replace") for f in backend.area("ann").rglob("*") if f.is_file()
    )


def test_links_inside_the_folder_are_copied_as_files(tmp_path):
    from hubforge.confined import copy_tree

    source = tmp_path / "m"
    (source / "variables").mkdir(parents=True)
    (source / "variables" / "data").write_text("weights")
    (source / "alias").symlink_to(source / "variables" / "data")
    copy_tree(source, tmp_path / "copy")
    assert (tmp_path / "copy" / "alias").read_text() == "weights"
    assert not (tmp_path / "copy" / "alias").is_symlink()
