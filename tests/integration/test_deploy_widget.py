"""The Deploy widget in a real kernel of a user's server, driven by its Python methods."""

from __future__ import annotations

import json

import pytest
import requests

from tests.cleanup import leave_nothing_running
from tests.kernel import execute
from tests.models import keras_model

pytestmark = pytest.mark.hub

CODE = """
import json, os
from hubforge.widgets import deploy
widget = deploy({model!r})
print("name:", widget.name.value)
widget.batch.value = 4
ep = widget.deploy()
print("status:", widget.status.value)
print("request:", widget.request.value)
print("curl:", widget.curl_line.value)
print("progress shown:", widget.progress.layout.display)
print("answer:", json.dumps(widget.try_it([[1, 2, 3, 4]])))
widget.request.value = '{{"instances": [[1, 2]]}}'
widget.try_it()
print("mistake:", widget.response.value)
report = widget.export("dynamic")
print("report:", json.dumps(report.to_dict()))
print("export view:", widget.export_result.value)
import numpy as np
rng = np.random.default_rng(0)
x = rng.random((60, 4), dtype=np.float32) - 0.4
np.savez("phones.npz", x=x, y=(x.sum(1) > 0.5).astype("int64"))
widget.data.value = "phones.npz"
widget.variants.value = ("float", "dynamic")
phones = widget.optimize()
print("phones:", json.dumps(phones.to_dict() | {{"job": phones.job}}))
print("phones view:", widget.optimize_result.value.replace(chr(10), " ")[:20000])
again = deploy({model!r}, name=widget.name.value)
batching = json.dumps(again.endpoint.batching, sort_keys=True)
print("reattached:", again.endpoint is not None, batching)
widget.undeploy()
print("after:", widget.status.value, widget.send_button.disabled)
"""


@pytest.mark.timeout(600)
def test_deploy_try_export_undeploy(workbench):
    token = workbench.create_user("deanna")
    model = keras_model(workbench.data_dir / "hdfs" / "users" / "deanna" / "exports" / "ranker", 1)
    try:
        assert workbench.spawn("deanna", token).status_code in (201, 202)
        outputs = execute(workbench, "deanna", token, CODE.format(model=str(model)), timeout=400)
        text = "".join(o.get("text", "") for o in outputs)
        errors = [o for o in outputs if o["type"] == "error"]
        text += "".join(f"\n{o.get('ename')}: {o.get('evalue')}" for o in errors)  # (if any)
        said = [line.split(":", 1) for line in text.splitlines() if ":" in line]
        lines = {key: value.strip() for key, value in said}
        assert "Optimizing for phones as job optimize-ranker" in text, text
        assert lines["name"] == "ranker", text  # a version folder: its parent's name
        assert "running" in lines["status"] and "versions [1]" in lines["status"]
        assert json.loads(lines["request"]) == {"instances": [[0, 0, 0, 0]]}
        origin = workbench.url.split("/hub@forge")[0]
        assert lines["curl"].startswith('curl -H "Authorization: token $TOKEN" -d ')
        call, hint = lines["curl"].split("  # ")
        assert call.endswith(
            f"{origin}/hub@forge%20space/services/hubforge/endpoints/deanna/ranker/v1/models/ranker:predict"
        )
        # where $TOKEN comes from: the hub's token page, which answers
        assert hint == f"$TOKEN: a token of yours, from {origin}/hub@forge%20space/hub/token"
        page = requests.get(hint.rsplit(" ", 1)[1], timeout=30, allow_redirects=False)
        assert page.status_code == 302 and "/hub/login" in page.headers["Location"], page
        assert '{"instances": [[0, 0, 0, 0]]}' in lines["curl"]  # the model's real input shape
        assert lines["progress shown"] == "none"  # no bar left behind once deployed
        assert json.loads(lines["answer"]) == [[10.0]]
        assert "BadRequest" in lines["mistake"] and "shape" in lines["mistake"]
        report = json.loads(lines["report"])
        assert report["quantize"] == "dynamic" and report["size_bytes"] > 0
        assert report["path"].endswith("ranker/1-dynamic.tflite")
        assert "of the SavedModel" in lines["export view"]
        # Optimize for mobile: a job of deanna's, its report and plot in the widget
        assert "phones" in lines, outputs[-3:]
        phones = json.loads(lines["phones"])
        assert [v["name"] for v in phones["variants"]] == ["float", "dynamic"]
        assert phones["job"].startswith("optimize-") and phones["chosen"] in ("float", "dynamic")
        assert phones["folder"].endswith(f"/users/deanna/jobs/{phones['job']}/mobile")
        assert all(v["accuracy"] >= 90 and v["parity"] for v in phones["variants"]), phones
        assert (
            "<table>" in lines["phones view"]
            and f"chosen: {phones['chosen']}" in lines["phones view"]
        )
        assert 'src="data:image/png;base64,iVBOR' in lines["phones view"]  # the plot
        assert lines["reattached"] == 'True {"batch_timeout_ms": 2.0, "max_batch_size": 4}'
        assert "undeployed" in lines["after"] and lines["after"].endswith("True")
    finally:
        leave_nothing_running(workbench, "deanna", token)
