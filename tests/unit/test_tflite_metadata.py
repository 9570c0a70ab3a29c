"""TFLite metadata (#37): the writer runs in tflite-support's own environment and answers
for each file on its own (a missing file, a file that is not TFLite: a clear error, the file
as it was, no temporary file left); without that environment nothing fails, nothing is
written, and the answer (optimize's report) says to run `make setup`. Written into real
models: tests/integration/test_mobile.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hubforge.serving import tflite_metadata
from hubforge.serving.mobile import _metadata
from hubforge.serving.mobile_report import OptimizationReport, Variant
from hubforge.serving.tflite_metadata import (
    WRITER,
    metadata_python,
    read_metadata,
    write_metadata,
)

ASKED = {
    "name": "digits",
    "description": "a test",
    "class_names": ["zero", "one"],
    "normalization": {"mean": 0.5, "std": 2.0},
    "input_kind": "image",
}
SETUP = "run `make setup`: it installs tflite-support in .venvs/tflite-support"


@pytest.fixture
def python(monkeypatch):
    monkeypatch.delenv("HUBFORGE_TFLITE_SUPPORT_PYTHON", raising=False)
    found = metadata_python()
    assert found, "tflite-support's environment is missing: " + SETUP
    return found


def test_each_bad_file_gets_its_own_clear_error_and_is_left_as_it_was(tmp_path, python):
    missing, text, empty = (tmp_path / n for n in ("gone.tflite", "notes.tflite", "e.tflite"))
    text.write_text("not a model")
    empty.write_bytes(b"")
    found = write_metadata([missing, text, empty], **ASKED)
    assert found["files"] == {
        str(missing): f"ValueError: no such file: {missing}",
        str(text): "ValueError: notes.tflite is not a TFLite model (no TFL3 identifier)",
        str(empty): "ValueError: e.tflite is not a TFLite model (no TFL3 identifier)",
    }
    assert "reason" not in found  # the writer ran: each file says why
    assert found["labels"] == "labels.txt"
    assert found["normalization"] == {"mean": 0.5, "std": 2.0}
    assert text.read_text() == "not a model" and empty.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.tflite", "notes.tflite"]
    with pytest.raises(RuntimeError, match=r"notes\.tflite is not a TFLite model"):
        read_metadata(text)


def test_the_writer_refuses_a_request_it_cannot_read(python):
    for request, says in (
        ("not json", "JSONDecodeError"),
        (json.dumps({"op": "delete"}), "op 'delete': 'write' or 'read'"),
    ):
        done = subprocess.run(
            [python, "-I", str(WRITER)], input=request, capture_output=True, text=True
        )
        assert done.returncode == 1, done.stderr
        assert says in json.loads(done.stdout)["error"]


def test_without_its_environment_nothing_is_written_and_the_report_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBFORGE_TFLITE_SUPPORT_PYTHON", str(tmp_path / "nowhere/bin/python"))
    assert metadata_python() is None
    model = tmp_path / "int8.tflite"
    model.write_bytes(b"\0\0\0\0TFL3" + bytes(32))
    variant = Variant("int8", str(model), 40, 30, 99.0, 0.1, 0.1, 1000, 1.0, True, True)
    context = {"signature": {"inputs": {"x": [12, 12, 1]}, "outputs": {"y": [2]}}}
    found = _metadata([variant], context, ASKED, tmp_path / "digits" / "1")
    assert SETUP in found["reason"] and "not written" in found["reason"]
    assert "HUBFORGE_TFLITE_SUPPORT_PYTHON=" in found["reason"]
    assert found["files"] == {str(model): found["reason"]}
    assert model.read_bytes() == b"\0\0\0\0TFL3" + bytes(32)
    report = OptimizationReport([variant], 99.0, {}, str(tmp_path), {}, 10, metadata=found)
    (tmp_path / "report.json").write_text(json.dumps(report.to_dict()))
    assert OptimizationReport.load(tmp_path / "report.json").metadata["reason"] == found["reason"]
    with pytest.raises(RuntimeError, match="make setup"):
        read_metadata(model)


def test_its_environment_is_found_beside_an_installed_copy(tmp_path, monkeypatch):
    """A closed clone installs into /opt/hubforge/venv: tflite-support's environment is
    then /opt/hubforge/.venvs/tflite-support, beside it."""
    monkeypatch.delenv("HUBFORGE_TFLITE_SUPPORT_PYTHON", raising=False)
    installed = tmp_path / "site-packages/hubforge/serving/tflite_metadata.py"
    monkeypatch.setattr(tflite_metadata, "__file__", str(installed))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "opt-hubforge/venv"))
    assert metadata_python() is None
    python = tmp_path / "opt-hubforge/.venvs/tflite-support/bin/python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    assert metadata_python() is None  # not executable: as good as absent
    python.chmod(0o755)
    assert metadata_python() == str(python)


def test_an_old_report_without_metadata_still_loads(tmp_path):
    variant = Variant("float", "f.tflite", 40, 30, 99.0, 0.1, 0.1, 1000, 1.0, True, True)
    saved = OptimizationReport([variant], 99.0, {}, str(tmp_path), {}, 10).to_dict()
    del saved["metadata"]
    (tmp_path / "report.json").write_text(json.dumps(saved))
    assert OptimizationReport.load(tmp_path / "report.json").metadata == {}
