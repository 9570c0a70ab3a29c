"""Benchmark: the Hubforge panel in JupyterLab (issue #18's figures), in a real Chromium.

1. First paint: from JupyterLab's launcher being on screen to the panel listing all of the
   user's jobs (50 by default), opened through its sidebar tab.
2. State change to panel: a job is submitted through the REST API while the panel is open;
   the time from the job's state change (read from its job.json mtime, written by the
   supervisor) to its row showing that state. Target: p50 under 1 s.

    .venv/bin/python tests/bench/bench_sidebar.py [--jobs 50] [--changes 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.lab import login_and_start
from tests.workbench import start_workbench

USER = "bench-panel"
WATCH = """() => {
  window.hfSeen = {};
  const note = () => {
    for (const row of document.querySelectorAll('#hubforge-panel .hf-Job')) {
      const key = row.dataset.job + ':' + row.dataset.state;
      if (!(key in window.hfSeen)) window.hfSeen[key] = Date.now();
    }
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true});
}"""


def submit(wb, token: str, name: str) -> str:
    r = wb.api(
        "POST",
        f"user/{USER}/hubforge/api/jobs",
        token,
        json={"path": "quick.py", "name": name, "max_restarts": 0},
    )
    r.raise_for_status()
    return r.json()["id"]


def wait_state(wb, token: str, job_id: str, states: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = wb.api("GET", f"user/{USER}/hubforge/api/jobs/{job_id}", token).json()
        if record["state"] in states:
            return record
        time.sleep(0.05)
    raise RuntimeError(f"{job_id} never reached {states}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        wb = start_workbench(Path(tmp) / "wb", base_url="/", label_studio=True)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                page.set_default_timeout(120_000)
                login_and_start(page, wb, USER, "bench-panel-password-1")
                token = wb.login_token(USER, "bench-panel-password-1")
                r = wb.api(
                    "PUT",
                    f"user/{USER}/api/contents/quick.py",
                    token,
                    json={"type": "file", "format": "text", "content": "print('done')\n"},
                )
                r.raise_for_status()
                print(f"submitting {args.jobs} jobs (one-line scripts)…")
                ids = [submit(wb, token, f"bench-{i}") for i in range(args.jobs)]
                for job_id in ids:
                    wait_state(wb, token, job_id, {"succeeded", "failed"})

                paints = []
                for _ in range(3):
                    page.reload()
                    page.wait_for_selector(".jp-Launcher")
                    started = time.perf_counter()
                    page.click(".jp-SideBar.jp-mod-left [data-id='hubforge-panel']")
                    rows = "document.querySelectorAll('#hubforge-panel .hf-Job').length"
                    page.wait_for_function(f"{rows} >= {args.jobs}")
                    paints.append(time.perf_counter() - started)

                # the browser notes when each (job, state) first shows in the panel
                page.evaluate(WATCH)
                delays = []
                for i in range(args.changes):
                    job_id = submit(wb, token, f"change-{i}")
                    record = wait_state(wb, token, job_id, {"succeeded", "failed"})
                    job_json = wb.data_dir / "hdfs" / "users" / USER / "jobs" / job_id / "job.json"
                    changed_at = job_json.stat().st_mtime  # the supervisor's last write
                    key = f"{job_id}:{record['state']}"
                    page.wait_for_function(f"'{key}' in window.hfSeen", timeout=60_000)
                    delays.append(page.evaluate(f"window.hfSeen['{key}']") / 1000 - changed_at)
                browser.close()
        finally:
            wb.down()
    print(
        f"first paint of {args.jobs} jobs after JupyterLab loaded: "
        f"{', '.join(f'{p:.2f}' for p in paints)} s (median {statistics.median(paints):.2f} s)"
    )
    print(
        f"state change to panel ({args.changes} jobs): p50 {statistics.median(delays):.2f} s, "
        f"max {max(delays):.2f} s (target p50 < 1 s)"
    )


if __name__ == "__main__":
    main()
