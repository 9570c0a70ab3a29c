"""The panel's Tuning group in Chromium (#34): a search started through the user's own
server (the sidebar's REST route) shows as one group, its trials in a table and a plot and
not again among the jobs; TensorBoard over its trials lists each in the HParams plugin;
Cancel on a running search stops its trials; another user's token is refused.

Run as job's other choice, Schedule… (#35), in the same Lab (a JupyterLab load less): the
cron helper, the panel's Schedules group with a run's history, Open, Pause and Delete."""

from __future__ import annotations

import json
from urllib.parse import urljoin

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.callers import wait_for
from tests.e2e.lab import code_notebook, login_and_start, xsrf_of
from tests.integration.test_schedules_hub import Clock
from tests.integration.test_tuning_local import hparams_table

pytestmark = [pytest.mark.browser, pytest.mark.hub]

PANEL = ".jp-SideBar.jp-mod-left [data-id='hubforge-panel']"


def notebook(*sources: str) -> dict:
    model = code_notebook(sources[0])
    model["content"]["cells"][0]["metadata"] = {"tags": ["parameters"]}
    for source in sources[1:]:
        model["content"]["cells"].append({**model["content"]["cells"][0], "metadata": {}})
        model["content"]["cells"][-1]["source"] = source
    return model


SEARCH = notebook(
    "x = 0.0",
    "from hubforge import distribute\ndistribute.report(score=-(x - 3) ** 2)",
)
SLOW = notebook("x = 0.0", "import time\ntime.sleep(300)")
REPORT = notebook("x = 0.0", "print('x squared is', x * x)")


def test_a_search_is_one_group_with_its_table_and_plot_and_cancel_stops_one(workbench, page):
    user = "tuna-tess"
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.text} {m.location.get('url', '')}") if m.type == "error" else 0
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    # the team's base-model store: one model for everyone, one private to another account
    from hubforge import automl
    from tests.integration.test_base_models import SAVED_MODEL

    store = workbench.data_dir / "hdfs" / "datasets" / "base-models"
    card = {"input_size": [1], "licence": "Apache-2.0", "source": "TF Serving's tests"}
    for name, private in (("team-net", False), ("someone-elses", True)):
        if not (store / name).exists():
            automl.add_base_model(name, SAVED_MODEL, **card, private=private, root=store)
    login_and_start(page, workbench, user, "tuna-password-1")
    api = workbench.url + f"user/{user}/hubforge/api/"
    headers = {"X-XSRFToken": xsrf_of(page), "Content-Type": "application/json"}

    def call(method: str, path: str, body: dict | None = None):
        return page.request.fetch(
            api + path, method=method, headers=headers, data=json.dumps(body) if body else None
        )

    try:
        for name, model in (
            ("search.ipynb", SEARCH),
            ("slow.ipynb", SLOW),
            ("report.ipynb", REPORT),
        ):
            r = page.request.put(
                workbench.url + f"user/{user}/api/contents/{name}",
                data=json.dumps(model), headers=headers,
            )  # fmt: skip
            assert r.ok, r.text()
        search = {"path": "search.ipynb", "space": {"x": [1.0, 3.0, 5.0]}, "objective": "score"}
        r = call("POST", "tunings", {**search, "max_trials": 3, "parallel": 3})
        assert r.status == 201, r.text()
        run = r.json()
        for body, says in [
            ({**search, "space": {"y": [1]}}, "'y' is not a parameter of the notebook"),
            ({"path": "search.ipynb"}, 'Send {"path": "train.ipynb"'),
            ({**search, "colour": "red"}, "Unknown field(s) ['colour']"),
            ({**search, "path": "../../etc/passwd.ipynb"}, "outside your home folder"),
            ({**search, "path": "\u0000.ipynb"}, "is not a path to use"),
        ]:
            r = call("POST", "tunings", body)
            assert r.status == 400 and says in r.json()["message"], (body, r.text())

        # the panel: the run as one group; once it ends, 3 rows, the best one marked, a plot
        page.click(PANEL)
        group = f"#hubforge-panel .hf-Tuning[data-tuning='{run['id']}']"
        page.wait_for_selector(f"{group}[data-state='succeeded']", timeout=180_000)
        text = page.inner_text(group)
        assert "3/3 trials done · 3 at a time · random · max score" in text, text
        assert "Best: trial" in text and "score 0 (x=3)" in text, text
        assert page.locator(f"{group} .hf-Trials tbody tr").count() == 3
        assert "x=3" in page.inner_text(f"{group} .hf-Trials tr.hf-TrialBest")
        assert page.locator(f"{group} svg.hf-Plot circle").count() == 3
        assert page.locator(f"{group} svg.hf-Plot .hf-PlotDot-best").count() == 1
        models = page.inner_text("#hubforge-panel [data-section='base-models']")
        assert "team-net" in models and "1 · scale_0_1 · Apache-2.0 · added by" in models, models
        assert "someone-elses" not in models  # another account's private entry: not even listed
        jobs = page.inner_text("#hubforge-panel [data-section='jobs']")
        assert "No jobs besides the trials of the tuning runs below" in jobs, jobs
        done = call("GET", f"tunings/{run['id']}").json()
        for trial in done["trials"]:  # shown in their run, not again among the jobs
            assert page.locator(f"#hubforge-panel .hf-Job[data-job='{trial['job']}']").count() == 0

        # Deploy best: the deploy dialog for the best trial's job (this search exports no
        # model, so it is left there)
        best = next(t for t in done["trials"] if t["id"] == done["best"])
        page.click(f"{group} button:has-text('Deploy best')")
        dialog = page.wait_for_selector(".jp-Dialog", timeout=30_000)
        assert "Deploy tune-search-t" in dialog.inner_text(), dialog.inner_text()
        assert page.input_value(".jp-Dialog input") == f"tune-search-t{best['id']}"
        page.click(".jp-Dialog button:has-text('Cancel')")
        page.wait_for_selector(".jp-Dialog", state="detached")

        # TensorBoard, pressed: a tab over the trials; its HParams plugin lists each one
        page.click(f"{group} button:has-text('TensorBoard')")
        page.wait_for_selector(f".lm-TabBar-tab:has-text('TensorBoard: {run['id']}')")
        boards = call("GET", "tensorboards").json()["tensorboards"]
        board = urljoin(workbench.url, next(b for b in boards if b["name"] == run["id"])["url"])

        def plugin(path: str, body: dict) -> dict:
            r = page.request.post(board + path, data=json.dumps(body), headers=headers)
            assert r.ok, (r.status, r.text()[:300])
            return r.json()

        assert hparams_table(board, plugin) == {
            t["job"]: (t["params"]["x"], t["objective"]) for t in done["trials"]
        }

        # Tune…, chosen in Run as job from the file browser: a search of slow.ipynb's x
        page.click(".jp-SideBar.jp-mod-left [data-id='filebrowser']")
        item = ".jp-DirListing-item[data-file-type='notebook']:has-text('slow.ipynb')"
        page.click(".jp-FileBrowser [data-command='filebrowser:refresh']")
        page.wait_for_selector(item, timeout=120_000)
        page.click(item, button="right")
        page.click(".lm-Menu-item:has-text('Run as job')")
        page.wait_for_selector(".jp-Dialog input[name='param-x']")
        page.check(".jp-Dialog input[name='tune']")
        page.fill(".jp-Dialog input[name='param-x']", "1 .. 2")
        page.fill(".jp-Dialog input[name='objective']", "score")
        page.fill(".jp-Dialog input[name='max_trials']", "2")
        page.click(".jp-Dialog button:has-text('Submit')")
        page.wait_for_selector(".jp-Dialog", state="detached")
        # (the dialog closes at once; its POST follows)
        made = wait_for(
            lambda: next(
                (r for r in call("GET", "tunings").json()["tunings"] if r["id"] != run["id"]), None
            ),
            30,
            "the new search",
        )
        assert made["space"] == {
            "x": {"type": "float", "min": 1, "max": 2, "step": None, "log": False}
        } and made["objective"] == {"name": "score", "direction": "max"}, made
        assert made["max_trials"] == 2 and made["algorithm"] == "random"

        # Cancel, pressed on a search whose trials run (Submit brought the panel back)
        slow = f"#hubforge-panel .hf-Tuning[data-tuning='{made['id']}']"
        page.wait_for_selector(f"{slow} .hf-Trials tr[data-state='running']", timeout=120_000)
        page.click(f"{slow} button:has-text('Cancel')")
        page.wait_for_selector(f"{slow}[data-state='cancelled']", timeout=60_000)
        cancelled = call("GET", f"tunings/{made['id']}").json()
        for trial in cancelled["trials"]:
            job = call("GET", f"jobs/{trial['job']}").json()
            assert job["state"] == "cancelled", job

        # Schedule…, chosen in Run as job: the cron helper says what is typed in words, with
        # the next five times; the panel shows the schedule, its runs and opens a run's outputs
        clock = Clock(workbench)
        page.click(".jp-SideBar.jp-mod-left [data-id='filebrowser']")
        item = ".jp-DirListing-item[data-file-type='notebook']:has-text('report.ipynb')"
        page.click(".jp-FileBrowser [data-command='filebrowser:refresh']")
        page.wait_for_selector(item, timeout=120_000)
        page.click(item, button="right")
        page.click(".lm-Menu-item:has-text('Run as job')")
        page.wait_for_selector(".jp-Dialog input[name='param-x']")
        page.check(".jp-Dialog input[name='schedule']")
        page.fill(".jp-Dialog input[name='cron']", "61 * * * *")
        page.wait_for_selector(".jp-Dialog .hf-CronHelp.hf-Error:has-text('minute 0-59')")
        page.fill(".jp-Dialog input[name='cron']", "* * * * *")
        page.fill(".jp-Dialog input[name='timezone']", "Europe/Berlin")
        page.wait_for_selector(".jp-Dialog .hf-CronHelp:not(.hf-Error):has-text('every minute')")
        assert page.locator(".jp-Dialog .hf-NextRuns li").count() == 5
        assert "(in " in page.inner_text(".jp-Dialog .hf-NextRuns li >> nth=0")
        page.fill(".jp-Dialog input[name='param-x']", "3.0")
        page.click(".jp-Dialog button:has-text('Submit')")
        page.wait_for_selector(".jp-Dialog", state="detached")
        (made,) = wait_for(lambda: call("GET", "schedules").json()["schedules"], 30, "the schedule")
        assert made["path"] == "report.ipynb" and made["params"] == {"x": 3.0}, made
        assert made["timezone"] == "Europe/Berlin" and made["cron"] == "* * * * *", made
        row = f"#hubforge-panel .hf-Schedule[data-schedule='{made['id']}']"
        page.wait_for_selector(row)
        assert "every minute (Europe/Berlin) · next" in page.inner_text(row)
        clock.minute_on()
        ran = f"{row} .hf-Runs tr[data-run='1'][data-state='succeeded']"
        page.wait_for_selector(ran, timeout=120_000)
        page.click(f"{ran} button:has-text('Open')")
        page.wait_for_selector(".lm-TabBar-tab:has-text('executed.ipynb')", timeout=60_000)
        page.wait_for_selector(".jp-OutputArea-output:has-text('x squared is 9.0')")
        # the notebook changes: runs keep the frozen copy until "Update notebook" is pressed
        cubed = notebook("x = 0.0", "print('x cubed is', x ** 3)")
        r = page.request.put(
            workbench.url + f"user/{user}/api/contents/report.ipynb",
            data=json.dumps(cubed), headers=headers,
        )  # fmt: skip
        assert r.ok, r.text()
        page.click(f"{row} button:has-text('Update notebook')")
        page.click(".jp-Dialog button:has-text('Update')")
        page.wait_for_selector(".jp-Dialog", state="detached")
        # (the dialog closes at once and its PATCH follows: the minute moves on only once the
        # panel says the update was made, as a user would wait for it)
        page.wait_for_selector(
            ".Toastify__toast:has-text('runs the current report.ipynb from now on')", timeout=60_000
        )
        clock.minute_on()
        ran = f"{row} .hf-Runs tr[data-run='2'][data-state='succeeded']"
        page.wait_for_selector(ran, timeout=120_000)
        (second,) = [
            r for r in call("GET", "schedules").json()["schedules"][0]["runs"] if r["number"] == 2
        ]
        assert second["lab_path"].endswith(f"{made['id']}-r2/executed.ipynb"), second
        r = page.request.get(workbench.url + f"user/{user}/api/contents/{second['lab_path']}")
        assert r.ok, r.text()
        assert "x cubed is 27.0" in json.dumps(r.json()["content"]["cells"]), r.text()[:2000]
        # (the panel redraws its rows every few seconds: a click that lands as the row is
        # replaced opens nothing, so it is pressed again; the run's own notebook must open)
        for attempt in range(3):
            page.click(f"{ran} button:has-text('Open')")
            try:
                page.wait_for_selector(
                    ".jp-OutputArea-output:has-text('x cubed is 27.0')", timeout=30_000
                )
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    raise
        page.click(f"{row} button:has-text('Pause')")
        page.wait_for_selector(f"{row}[data-state='paused']")
        page.click(f"{row} button:has-text('Delete')")
        page.click(".jp-Dialog button:has-text('Delete')")
        page.wait_for_selector(row, state="detached")
        assert call("GET", "schedules").json()["schedules"] == []

        # another user: refused at the server, and sees no run through the service
        other = workbench.create_user("tuna-theo")
        assert workbench.api("GET", f"user/{user}/hubforge/api/tunings", other).status_code == 403
        mine = workbench.api("GET", "services/hubforge/api/tunings", other).json()["tunings"]
        assert mine == []
        r = workbench.api("DELETE", f"services/hubforge/api/tunings/{run['id']}", other)
        assert r.status_code == 404
        # (the cron helper's answer to "61 * * * *" was a 400, as it should be)
        assert not [p for p in problems if "/hubforge/api/cron?" not in p], problems
    finally:
        workbench.ensure_stopped(user)
