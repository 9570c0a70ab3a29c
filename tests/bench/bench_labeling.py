"""Benchmark: importing 10,000 tasks through create_project against the same payload posted
directly to Label Studio's import API; the labeling widget's next-item latency; what Hubforge's
policy layer in front of Label Studio costs (its own time per request, from the
`Server-Timing: hubforge-policy` header it adds), on the import and on next-item requests.

Targets: create_project >= 0.8x the direct import's throughput; next item p50 <= 50 ms; the
policy adds at most 10 % to a request.

    .venv/bin/python tests/bench/bench_labeling.py [--tasks 10000] [--items 40]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.test_labeling import shapes
from tests.workbench import start_workbench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        wb = start_workbench(Path(tmp) / "wb", base_url="/")
        try:
            token = wb.create_user("bench")
            os.environ.update(
                HUBFORGE_SERVICE_URL=wb.url + "services/hubforge/api",
                JUPYTERHUB_API_TOKEN=token,
                HUBFORGE_DATA=str(wb.data_dir / "hdfs"),
                HUBFORGE_USER_AREA=str(wb.data_dir / "hdfs/users/bench"),
            )
            from hubforge import labeling
            from hubforge.labeling import api
            from hubforge.widgets import label

            creds = api.credentials()
            texts = [
                f"review number {i}: {'good' if i % 3 else 'bad'} value" for i in range(args.tasks)
            ]
            # direct: the same payload our import sends, in one request
            ls = api.client()
            direct_project = ls.projects.create(
                title="direct",
                label_config=labeling.label_config("text-classification", ["good", "bad"]),
            )
            payload = [
                {"text": t, "hubforge_key": hashlib.sha1(t.encode()).hexdigest()} for t in texts
            ]
            t0 = time.perf_counter()
            r = requests.post(
                f"{creds['api_url']}/api/projects/{direct_project.id}/import",
                json=payload,
                headers={"Authorization": f"Token {creds['token']}"},
                timeout=600,
            )
            r.raise_for_status()
            direct = time.perf_counter() - t0
            import_policy_ms = policy_ms(r)
            t0 = time.perf_counter()
            project = labeling.create_project(
                "ours", texts, ["good", "bad"], task="text-classification"
            )
            ours = time.perf_counter() - t0
            assert project.last_import.added == args.tasks, project.last_import
            t0 = time.perf_counter()
            again = labeling.create_project(
                "ours", texts, ["good", "bad"], task="text-classification"
            )
            rerun = time.perf_counter() - t0
            assert again.last_import.added == 0

            shapes(wb.data_dir / "hdfs" / "datasets" / "bench-shapes", args.items + 5)
            images = labeling.create_project(
                "shapes", "datasets/bench-shapes", ["circle", "square"]
            )
            widget = label(images)
            for i in range(args.items):  # a labeler who looks for 0.3 s at each item
                time.sleep(0.3)
                widget.label("circle" if i % 2 else "square")
            latencies = [x * 1000 for x in widget.latencies]
            hurried = label(images)
            for i in range(args.items // 2):  # keys pressed as fast as the widget allows
                hurried.label("circle" if i % 2 else "square")
            rushed = [x * 1000 for x in hurried.latencies]
            # next-item requests as the widget sends them: total time and the policy's share
            shares, totals = [], []
            for _ in range(50):
                t0 = time.perf_counter()
                r = requests.get(
                    f"{creds['api_url']}/api/projects/{images.id}/next",
                    headers={"Authorization": f"Token {creds['token']}"},
                    timeout=60,
                )
                total = (time.perf_counter() - t0) * 1000
                totals.append(total)
                shares.append(policy_ms(r) / total)
        finally:
            wb.down()
    print(
        f"import {args.tasks} tasks: direct {direct:.2f} s ({args.tasks / direct:.0f}/s), "
        f"create_project {ours:.2f} s ({args.tasks / ours:.0f}/s) -> {direct / ours:.2f}x; "
        f"re-run (nothing new) {rerun:.2f} s"
    )
    q = statistics.quantiles(latencies, n=100)
    print(
        f"widget next item after a key press (0.3 s per item): p50 {q[49]:.1f} ms, "
        f"p90 {q[89]:.1f} ms, max {max(latencies):.1f} ms over {len(latencies)} items"
    )
    q = statistics.quantiles(rushed, n=100)
    print(
        f"  keys as fast as possible: p50 {q[49]:.1f} ms, p90 {q[89]:.1f} ms "
        "(each waits for the previous label's round trip to Label Studio)"
    )
    print(
        f"policy layer: {import_policy_ms:.1f} ms of the {direct * 1000:.0f} ms import "
        f"({import_policy_ms / (direct * 1000):.2%}); next-item requests "
        f"(p50 {statistics.median(totals):.1f} ms): the policy's share p50 "
        f"{statistics.median(shares):.1%}, max {max(shares):.1%}"
    )


def policy_ms(response: requests.Response) -> float:
    """The policy layer's own time for this request (its Server-Timing entry)."""
    for entry in response.headers.get("Server-Timing", "").split(","):
        name, _, params = entry.strip().partition(";")
        if name == "hubforge-policy":
            return float(params.split("dur=", 1)[1].split(";")[0])
    raise AssertionError(f"no policy timing on {response.url}: is the policy layer on?")


if __name__ == "__main__":
    main()
