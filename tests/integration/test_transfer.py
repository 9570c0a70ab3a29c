"""Transfer learning from the team's base-model store (#34): a small base model the test
trains and registers itself (no download), fine-tuned on 60 labeled images, beats the same
head trained the same way on the same network never trained (tests/transfer_case.py, in a
process with the Keras of Hubforge's kernels and jobs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CASE = Path(__file__).resolve().parents[1] / "transfer_case.py"
SAVED_MODEL = (
    Path(__file__).resolve().parents[3]
    / "shared/fixtures/tfserving/saved_model_half_plus_two_cpu/00000123"
)


def test_fine_tuning_on_60_images_beats_the_same_head_from_scratch(tmp_path):
    env = dict(
        os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3",
        HUBFORGE_DATA=str(tmp_path / "data"), JUPYTERHUB_USER="tess",
        PYTHONPATH=str(CASE.parents[1]),
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(CASE), str(tmp_path), str(SAVED_MODEL)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["classes"] == ["diagonal", "straight"] and result["epochs"] == 15
    assert result["fine_tuned"] >= 0.9, result
    assert result["fine_tuned"] >= result["scratch"] + 0.2, result
    assert result["predicted_right"] >= 18, result  # FineTuned.predict gives class names
    keras_refused, one_class, unknown = result["refusals"]
    assert "half-plus-two: Keras cannot load it" in keras_refused
    assert "at least two classes" in one_class
    assert (
        "No base model 'nope' you can read; the store has: half-plus-two, orientations, untrained"
        in unknown
    )
