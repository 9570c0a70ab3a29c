"""The two kinds of classify() trial the hub test does not train (#34), as a job runs them:
a text model (the endpoint takes the texts as they are) and a head on a team base model
(the card's preprocessing kept inside: the exported model takes images in [0, 1])."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import requests

from tests.models import start_serving

CASE = Path(__file__).resolve().parents[1] / "classify_case.py"


def test_a_text_model_and_a_head_on_a_base_model_train_export_and_serve(tmp_path):
    env = dict(
        os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3",
        HUBFORGE_DATA=str(tmp_path / "data"), JUPYTERHUB_USER="cass",
        PYTHONPATH=str(CASE.parents[1]),
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(CASE), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    text = result["text"]
    assert text["kind"] == "text" and text["accuracy"] >= 0.8, result
    assert "unfreeze" not in text["params"]  # no base model: nothing to unfreeze
    positive, negative = result["text_answer"]  # classes: neg, pos
    assert positive[1] > positive[0] and negative[0] > negative[1], result
    based = result["based"]
    assert based["base_model"] == "tiny-rgb" and based["params"]["unfreeze"] == 1
    assert based["accuracy"] >= 0.8, result
    assert result["based_layers"][0] == "Rescaling"  # [0, 1] back to pixels for the card
    assert abs(sum(result["based_answer"][0]) - 1) < 1e-4

    # the text model behind the model server: instances are the texts themselves
    served = tmp_path / "served" / "reviews"
    shutil.copytree(tmp_path / "jobs" / "text" / "model", served / "1")  # TF Serving's layout
    proc, url = start_serving("reviews", served)
    try:
        r = requests.post(
            url + "/v1/models/reviews:predict",
            json={"instances": ["a lovely happy day", "awful sad"]},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert [round(p, 4) for p in r.json()["predictions"][0]] == [round(p, 4) for p in positive]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
