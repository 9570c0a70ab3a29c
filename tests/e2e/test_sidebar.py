"""The Hubforge panel in JupyterLab, driven as a user would in a real Chromium: Run as job
from the file browser, watch it succeed, TensorBoard, deploy, try it, undeploy."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.lab import login_and_start, put_file, tab_walk
from tests.notebooks import training_notebook

pytestmark = [pytest.mark.browser, pytest.mark.hub]


def test_the_panel_runs_a_notebook_as_a_job_and_deploys_it(workbench, page, tmp_path):
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"console: {m.text} ({m.location.get('url')})")
            if m.type == "error"
            else 0
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else 0
        ),
    )
    user = "paula"
    # HUBFORGE_SCREENSHOTS=docs/images refreshes the docs' pictures from this run
    shots = Path(os.environ.get("HUBFORGE_SCREENSHOTS") or tmp_path)

    def shot(name: str, selector: str | None = "#hubforge-panel") -> None:
        where = page.locator(selector) if selector else page  # None: the whole window
        where.screenshot(path=str(shots / f"{name}.png"))

    workbench.wait_label_studio(time.monotonic() + 300)  # the panel lists labeling projects too
    login_and_start(page, workbench, user, "paula-password-1")
    token = None
    try:
        notebook = json.loads(training_notebook(tmp_path / "train.ipynb").read_text())
        put_file(page, workbench, user, "train.ipynb", {"type": "notebook", "content": notebook})

        # the panel: its own icon in the left sidebar, an empty state that says what to do
        page.click(".jp-SideBar.jp-mod-left [data-id='hubforge-panel']")
        page.wait_for_selector("#hubforge-panel .hf-Section[data-section='jobs']")
        page.wait_for_selector("#hubforge-panel >> text=No jobs yet")
        assert "0 jobs running" in page.inner_text(".hf-Status")
        assert re.search(r"GPUs \d+/\d+ in use", page.inner_text(".hf-Status"))

        # Run as job from the file browser's context menu: 2 workers, a parameter changed
        page.click(".jp-SideBar.jp-mod-left [data-id='filebrowser']")
        item = ".jp-DirListing-item[data-file-type='notebook']:has-text('train.ipynb')"
        # the file browser polls the folder by itself, slowly on a busy machine: refresh it
        # as a user would
        page.click(".jp-FileBrowser [data-command='filebrowser:refresh']")
        page.wait_for_selector(item, timeout=120_000)
        page.click(item, button="right")
        page.click(".lm-Menu-item:has-text('Run as job')")
        dialog = page.wait_for_selector(".jp-Dialog .hf-RunAsJob-body")
        page.wait_for_selector(".jp-Dialog input[name='param-delay']")
        shot("sidebar-run-as-job", ".jp-Dialog-content")
        assert page.input_value(".jp-Dialog input[name='param-epochs']") == "3"
        page.fill(".jp-Dialog input[name='workers']", "2")
        page.fill(".jp-Dialog input[name='param-delay']", "0.4")
        assert "Parameters" in dialog.inner_text()
        page.click(".jp-Dialog button:has-text('Submit')")

        # the job appears at once in the panel, with progress moving, and ends succeeded
        job = page.wait_for_selector("#hubforge-panel .hf-Job", timeout=30_000)
        job_id = job.get_attribute("data-job")
        row = f"#hubforge-panel .hf-Job[data-job='{job_id}']"
        page.wait_for_selector(f"{row} .hf-Progress:has-text('epoch')", timeout=240_000)
        assert "1 job running" in page.inner_text(".hf-Status")
        shot("sidebar-job-running")
        page.wait_for_selector(f"{row}[data-state='succeeded']", timeout=240_000)
        assert "2 workers" in page.inner_text(row)
        # JupyterLab's notification centre says so, with the next steps
        page.wait_for_selector("text=Job train succeeded", timeout=30_000)
        page.wait_for_selector("button:has-text('Open TensorBoard')")
        records = page.request.get(workbench.url + f"user/{user}/hubforge/api/jobs").json()
        (record,) = records["jobs"]
        assert record["spec"]["workers"] == 2 and record["spec"]["params"]["delay"] == 0.4

        # keyboard: Tab walks through the job's actions
        reached = tab_walk(page, f"{row} button:has-text('Logs')", 5)
        assert reached == ["Logs", "TensorBoard", "Deploy", "Optimize", "Notebook"], reached

        # logs in a main-area tab, with a replica picker
        page.click(f"{row} button:has-text('Logs')")
        page.wait_for_selector(".hf-LogText:has-text('Epoch 3/3')", timeout=30_000)
        page.select_option(".hf-Replica", "worker-1")
        page.wait_for_selector(".hf-LogText:has-text('Epoch 3/3')", timeout=30_000)

        # TensorBoard in a tab, through this server
        page.click(f"{row} button:has-text('TensorBoard')")
        frame = page.wait_for_selector(".hf-TensorBoardTab iframe", timeout=60_000)
        src = frame.get_attribute("src")
        assert f"/user/{user}/proxy/" in src, src  # through this user's server
        tensorboard = page.frame_locator(".hf-TensorBoardTab iframe")
        tensorboard.locator("text=TensorBoard").first.wait_for(timeout=60_000)
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(workbench.url))
        assert "TensorBoard" in page.request.get(origin + src).text()
        page.wait_for_selector("#hubforge-panel .hf-TensorBoard")
        reached = tab_walk(page, "#hubforge-panel .hf-TensorBoard button:has-text('Open')", 2)
        assert reached == ["Open", "Stop"], reached
        shot("sidebar-tensorboard", None)

        # deploy the exported model, try it, copy the curl line, undeploy
        page.click(f"{row} button:has-text('Deploy')")
        page.fill(".jp-Dialog input", "panel-model")
        page.click(".jp-Dialog button.jp-mod-accept")
        endpoint = "#hubforge-panel .hf-Endpoint[data-endpoint='panel-model']"
        page.wait_for_selector(endpoint, timeout=120_000)
        assert "versions 1" in page.inner_text(endpoint)
        # keyboard: Tab reaches the endpoint's actions, Enter opens Try it
        reached = tab_walk(page, f"{endpoint} button:has-text('Try it')", 5)
        assert reached == ["Try it", "Copy curl", "Monitor", "Optimize", "Undeploy"], reached
        page.focus(f"{endpoint} button:has-text('Try it')")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('.hf-TryInput').value.includes('[[0, 0, 0, 0]]')"
            " || document.querySelector('.hf-TryInput').value.includes('[[0,0,0,0]]')"
        )
        page.click(".hf-TryIt button:has-text('Send')")
        page.wait_for_selector(".hf-TryOutput:has-text('predictions')")
        assert re.fullmatch(r"[\d.]+ ms", page.inner_text(".hf-Latency"))
        predictions = json.loads(page.inner_text(".hf-TryOutput"))["predictions"]
        assert len(predictions) == 1 and 0.0 <= predictions[0][0] <= 1.0  # a sigmoid
        # keep this request under a name; pick it again after changing the text
        page.fill(".hf-SaveName", "zeros")
        page.click(".hf-TryIt button.hf-Save")
        page.wait_for_selector(".hf-SavedNote:has-text('Saved as \"zeros\"')")
        page.fill(".hf-TryInput", '{"instances": [[1, 1, 1, 1]]}')
        page.select_option(".hf-Saved", "zeros")
        assert json.loads(page.input_value(".hf-TryInput")) == {"instances": [[0, 0, 0, 0]]}
        shot("sidebar-try-it", ".jp-Dialog-content")
        page.click(".jp-Dialog button:has-text('Close')")
        shot("sidebar-endpoint")

        # another user cannot undeploy it through their own server
        token = workbench.create_user("paula-rival")
        assert workbench.spawn("paula-rival", token).status_code in (201, 202)
        r = workbench.api("DELETE", "user/paula-rival/hubforge/api/endpoints/panel-model", token)
        assert r.status_code == 404, r.text

        optimize_for_phones(page, workbench, user, row, job_id, token, shot)

        page.click(f"{endpoint} button:has-text('Undeploy')")
        page.click(".jp-Dialog button:has-text('Undeploy')")
        page.wait_for_selector(endpoint, state="detached", timeout=60_000)  # gone from the list
        page.wait_for_selector("#hubforge-panel >> text=No endpoints")
        assert "0 jobs running" in page.inner_text(".hf-Status")
        # the status bar item opens the panel: Enter from the keyboard, and a click
        page.click(".jp-SideBar.jp-mod-left [data-id='filebrowser']")
        page.wait_for_selector("#hubforge-panel", state="hidden")
        page.focus(".hf-Status")
        page.keyboard.press("Enter")
        page.wait_for_selector("#hubforge-panel", state="visible")
        page.click(".jp-SideBar.jp-mod-left [data-id='filebrowser']")
        page.wait_for_selector("#hubforge-panel", state="hidden")
        page.click(".hf-Status")
        page.wait_for_selector("#hubforge-panel", state="visible")
        assert not problems, problems  # TensorBoard's fonts too (beside its page)
    finally:
        workbench.ensure_stopped(user)
        if token:
            workbench.ensure_stopped("paula-rival")


def optimize_for_phones(page, workbench, user, row, job_id, rival_token, shot) -> None:
    """Optimize for mobile on the job: two variants, with the job's own training data; the
    panel's "For phones" section shows the table, the plot and the snippets; another user
    reaches none of it."""
    page.click(f"{row} button:has-text('Optimize')")
    page.wait_for_selector(".jp-Dialog .hf-Optimize-body")
    checked = page.eval_on_selector_all(
        ".jp-Dialog .hf-Optimize-body input[type=checkbox]:checked", "els => els.map(e => e.value)"
    )
    assert checked == ["float", "dynamic", "int8", "pruned-int8"], checked
    page.uncheck(".jp-Dialog input[name='variant-int8']")
    page.uncheck(".jp-Dialog input[name='variant-pruned-int8']")
    shot("sidebar-optimize", ".jp-Dialog-content")
    page.click(".jp-Dialog button:has-text('Optimize')")
    item = "#hubforge-panel .hf-Optimization"
    page.wait_for_selector(f"{item} >> text=model of job {job_id}", timeout=60_000)
    # its own section, not among the jobs
    assert page.locator("#hubforge-panel .hf-Job").count() == 1
    page.wait_for_selector(f"{item}[data-state='succeeded']", timeout=300_000)
    table = page.locator(f"{item} table.hf-Variants")
    table.wait_for(timeout=30_000)
    variants = table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.variant)")
    assert variants == ["float", "dynamic"], variants
    dynamic = table.locator("tbody tr[data-variant='dynamic']")
    cells = dynamic.locator("td").all_inner_texts()
    assert re.fullmatch(r"dynamic( ✓)?", cells[0]) and re.fullmatch(r"[\d.]+K", cells[1]), cells
    assert re.fullmatch(r"[\d.]+x", cells[2]) and re.fullmatch(r"[\d.]+", cells[3]), cells
    assert re.fullmatch(r"[\d.]+", cells[4]), cells  # ms, one thread
    assert dynamic.get_attribute("data-verdict") in ("chosen", "ok")
    chosen = page.inner_text(f"{item} .hf-Chosen")
    assert re.match(r"chosen: (float|dynamic), [\d.]+x smaller", chosen), chosen
    dots = page.locator(f"{item} svg.hf-MobilePlot g[data-variant]")
    assert sorted(dots.evaluate_all("gs => gs.map(g => g.dataset.variant)")) == [
        "dynamic",
        "float",
    ]
    shot("sidebar-mobile", item)
    page.click(f"{item} button:has-text('Snippets')")
    page.wait_for_selector(".jp-Dialog pre.hf-Snippet[data-language='kotlin']")
    python = page.inner_text(".jp-Dialog pre.hf-Snippet[data-language='python']")
    assert "ai_edge_litert" in python or "Interpreter" in python, python
    page.click(".jp-Dialog button:has-text('Close')")
    optimization = page.get_attribute(item, "data-optimization")
    # another user: not through their own server, not through this user's
    r = workbench.api("GET", f"user/paula-rival/hubforge/api/mobile/{optimization}", rival_token)
    assert r.status_code == 404, r.text
    r = workbench.api(
        "POST", "user/paula-rival/hubforge/api/mobile", rival_token, json={"job": job_id}
    )
    assert r.status_code == 404, r.text
    r = workbench.api("GET", f"user/{user}/hubforge/api/mobile", rival_token)
    assert r.status_code == 403, r.text
    listed = workbench.api("GET", "user/paula-rival/hubforge/api/mobile", rival_token).json()
    assert listed == {"optimizations": []}
