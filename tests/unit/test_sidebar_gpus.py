"""This server's GPUs for the status bar, read from nvidia-smi's CSV query output."""

from __future__ import annotations

import os

from hubforge.sidebar_handlers import nvidia_smi

# `nvidia-smi --query-gpu=index,name,memory.used,memory.total,utilization.gpu
#  --format=csv,noheader,nounits` on a two-GPU machine, as its documentation describes
OUTPUT = "0, NVIDIA H100 80GB HBM3, 1024, 81559, 37\n1, NVIDIA H100 80GB HBM3, 0, 81559, 0\n"


def fake_smi(tmp_path, monkeypatch, output: str, code: int = 0) -> None:
    binary = tmp_path / "nvidia-smi"
    binary.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {code}\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_each_visible_gpu_with_memory_and_utilisation(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch, OUTPUT)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = nvidia_smi()
    assert [g["index"] for g in gpus] == ["0", "1"]
    assert gpus[0] == {
        "index": "0",
        "name": "NVIDIA H100 80GB HBM3",
        "memory_used_mib": 1024.0,
        "memory_total_mib": 81559.0,
        "utilization": 37.0,
    }
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # this server was given GPU 1 only
    assert [g["index"] for g in nvidia_smi()] == ["1"]


def test_no_gpus_when_nvidia_smi_is_missing_or_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi at all
    assert nvidia_smi() == []
    fake_smi(tmp_path, monkeypatch, "NVIDIA-SMI has failed", code=9)
    assert nvidia_smi() == []


def test_values_a_gpu_cannot_tell_are_none(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch, "0, NVIDIA A100 MIG 1g.10gb, [N/A], [N/A], [N/A]\n")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (gpu,) = nvidia_smi()
    assert gpu["memory_used_mib"] is None and gpu["utilization"] is None
