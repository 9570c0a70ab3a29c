"""The event files a job writes for TensorBoard's HParams dashboard (hubforge.hparams): read
back as TensorBoard reads them (TFRecord framing, Event protos, the HParams plugin data)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from hubforge import hparams


def events(folder: Path) -> list[event_pb2.Event]:
    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        while data:
            (length,) = struct.unpack("<Q", data[:8])
            found.append(event_pb2.Event.FromString(data[12 : 12 + length]))
            data = data[12 + length + 4 :]
    return found


def session(folder: Path) -> plugin_data_pb2.SessionStartInfo:
    for event in events(folder):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                data = plugin_data_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content
                )
                if data.HasField("session_start_info"):
                    return data.session_start_info
    raise AssertionError("no session start info")


def test_parameters_are_written_once_lists_as_json_and_no_tensorflow_is_loaded(tmp_path):
    logs = tmp_path / "logs"
    params = {
        "lr": 0.01,
        "units": 32,
        "act": "relu",
        "bn": True,
        "sizes": [1, 2],
        "bad": float("nan"),
    }
    assert hparams.write_params(logs, params, "tune-abc123-t4") is True
    info = session(logs / "hparams")
    assert info.group_name == "tune-abc123-t4"
    shown = {
        k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
        for k, v in info.hparams.items()
    }
    assert shown == {
        "lr": 0.01, "units": 32.0, "act": "relu", "bn": True, "sizes": "[1, 2]", "bad": "NaN",
    }  # fmt: skip
    # a restarted job (a second attempt) does not start a second session
    assert hparams.write_params(logs, {"lr": 0.5}, "tune-abc123-t4") is False
    assert session(logs / "hparams").hparams["lr"].number_value == 0.01


def test_writing_them_loads_no_tensorflow(tmp_path):
    """A trial of plain Python stays fast: TensorFlow's import is seconds and 700 MB."""
    code = (
        "import sys\nfrom hubforge import hparams\n"
        f"hparams.write_params({str(tmp_path)!r}, {{'x': 1}}, 'g')\n"
        f"hparams.write_metrics({str(tmp_path)!r}, {{'score': 1.0}}, 1)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_metrics_are_appended_as_scalars_one_file_per_process(tmp_path):
    logs = tmp_path / "logs"
    hparams.write_params(logs, {"lr": 0.1}, "g")
    hparams.write_metrics(logs, {"score": 0.5, "loss": 2.0}, step=1)
    hparams.write_metrics(logs, {"score": 0.75}, step=2)
    scalars = [
        (e.step, v.tag, v.simple_value) for e in events(logs / "hparams") for v in e.summary.value
    ]
    assert [s for s in scalars if s[1] != "_hparams_/session_start_info"] == [
        (1, "score", 0.5), (1, "loss", 2.0), (2, "score", 0.75),
    ]  # fmt: skip
    assert len(list((logs / "hparams").glob("events.out.tfevents.*"))) == 2  # params, metrics


def test_a_job_without_parameters_writes_no_metrics_for_hparams(tmp_path):
    """Nothing to compare: its TensorBoard shows its own runs and no extra 'hparams' one."""
    hparams.write_metrics(tmp_path / "logs", {"score": 0.5}, step=1)
    assert not (tmp_path / "logs" / "hparams").exists()
