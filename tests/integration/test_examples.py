"""The example series a new user finds in ~/examples runs top to bottom on a real workbench:
label -> train (a 2-worker job) -> TensorBoard -> deploy (curl, TFLite) -> pre-label.

The notebooks run with nbclient inside the user's own server (their account, their tokens),
as "Run All" would run them; the assertions read what the user would see in the outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urljoin

import nbformat
import pytest
import requests

from hubforge import examples
from tests.kernel import execute

pytestmark = pytest.mark.hub

USER = "newcomer"
RUN = """
import json, pathlib, time
import nbclient, nbformat
here = pathlib.Path.cwd()
done = here / "examples-run"
done.mkdir(exist_ok=True)
results = {}
for path in sorted((here / "examples").glob("0[{first}-{last}]*.ipynb")):
    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute()
        status = "ok"
    except Exception as e:
        status = f"{type(e).__name__}: {e}"[-4000:]
    nbformat.write(nb, done / path.name)
    results[path.name] = {"status": status, "seconds": round(time.monotonic() - started, 1)}
    if status != "ok":
        break
print("RESULTS" + json.dumps(results))
"""


def text_of(nb, pattern: str) -> str:
    """The first output text (stream or plain result) of any cell that matches ``pattern``."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            if re.search(pattern, text):
                return text
    raise AssertionError(f"no output matches {pattern!r}")


def images_in(nb) -> int:
    return sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )


@pytest.mark.timeout(1500)
def test_the_example_series_runs_end_to_end(workbench):
    token = workbench.create_user(USER)
    r = workbench.spawn(USER, token)
    assert r.status_code in (201, 202), r.text
    home = workbench.data_dir / "homes" / USER
    try:
        names = sorted(p.name for p in (home / "examples").glob("*.ipynb"))
        assert names == [p.name for p in examples.notebooks()]
        results: dict = {}

        def run_notebooks(first: int, last: int) -> None:
            code = RUN.replace("{first}", str(first)).replace("{last}", str(last))
            outputs = execute(workbench, USER, token, code, timeout=1400)
            printed = "".join(o.get("text", "") for o in outputs if o["type"] == "stream")
            errors = [o for o in outputs if o["type"] == "error"]
            assert not errors and "RESULTS" in printed, (errors, printed[-3000:])
            results.update(json.loads(printed.split("RESULTS", 1)[1].splitlines()[0]))
            failed = {k: v for k, v in results.items() if v["status"] != "ok"}
            assert not failed, results

        def ran() -> dict:
            done = (home / "examples-run").iterdir()
            return {p.name[:2]: nbformat.read(p, as_version=4) for p in done}

        # 1-3 first: the session workbench stops a TensorBoard after 15 s unused, so it is
        # looked at before 4 and 5 run
        run_notebooks(1, 3)
        path = text_of(ran()["03"], r"/proxy/absolute/").strip().splitlines()[0]
        runs = requests.get(
            urljoin(workbench.url, path + "data/runs"),
            headers={"Authorization": f"token {token}"},
            timeout=60,
        )
        assert runs.status_code == 200, runs.text[:300]
        run_notebooks(4, 5)
        assert len(results) == 5, results
        print("seconds per notebook:", {k: v["seconds"] for k, v in results.items()})
        run = ran()

        # 1. label: 120 images in Label Studio, all but 30 labeled, the pairs saved
        assert "120 images in" in text_of(run["01"], r"images in")
        assert re.search(r"'labeled': 90,\s*'total': 120", text_of(run["01"], "'labeled': 90"))
        assert "90 labeled digits saved" in text_of(run["01"], "saved for training")

        # 2. train: one epoch in the kernel, then the 2-worker job succeeded and learned
        assert re.search(r"validation accuracy after 1 epoch", text_of(run["02"], "after 1 epoch"))
        job_line = text_of(run["02"], r"-> (succeeded|failed|cancelled)")
        assert "-> succeeded" in job_line, job_line
        job_accuracy = re.search(r"after 12 epoch\(s\): (\d+)%", text_of(run["02"], "after 12"))
        assert job_accuracy and int(job_accuracy.group(1)) > 40, job_line  # chance: 20%

        # 3. watch: TensorBoard showed both runs through the hub; the accuracy plot was drawn
        job_id = job_line.split()[0]
        assert any(x.startswith(job_id) for x in runs.json()), runs.json()
        assert any(x.startswith("interactive") for x in runs.json()), runs.json()
        assert images_in(run["03"]) >= 1

        # 4. deploy: the endpoint answers from the notebook and from curl; TFLite report written
        accuracy = re.search(
            r"endpoint accuracy on \d+ held-out digits: (\d+)%",
            text_of(run["04"], "endpoint accuracy"),
        )
        assert accuracy and int(accuracy.group(1)) > 40
        curl = json.loads(text_of(run["04"], r'"predictions"'))
        assert len(curl["predictions"]) == 1 and abs(sum(curl["predictions"][0]) - 1) < 1e-3
        report = text_of(run["04"], r"\.tflite")
        tflite = Path(re.search(r"(/\S+\.tflite)", report).group(1))
        assert tflite.is_file() and Path(f"{tflite}.json").is_file(), report
        r = workbench.api(
            "POST",
            f"services/hubforge/endpoints/{USER}/digits/v1/models/digits:predict",
            token,
            json={"instances": [[[[0.0, 0.0, 0.0]] * 16] * 16]},
        )
        assert r.status_code == 200 and len(r.json()["predictions"][0]) == 5, r.text

        # 5. pre-label: 30 proposals, most of them right
        assert "30 digits got a proposed label" in text_of(run["05"], "proposed label")
        agreement = re.search(r"match the truth: (\d+)% of 30", text_of(run["05"], "truth"))
        assert agreement and int(agreement.group(1)) > 40
        assert images_in(run["05"]) >= 1
    finally:
        workbench.api("DELETE", "services/hubforge/api/endpoints/digits", token)
        workbench.ensure_stopped(USER)
