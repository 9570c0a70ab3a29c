"""The gateway's counts of an endpoint's requests (serving.traffic): bins, latency
quantiles as Prometheus computes them, windows, a day kept, saved and read back."""

from __future__ import annotations

import json

import pytest

from hubforge.serving.errors import BadRequest
from hubforge.serving.traffic import BOUNDS_MS, KEEP, Traffic, parse_window, quantile
from hubforge.serving.traffic_report import TrafficReport, sparkline


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_quantiles_interpolate_within_a_bucket_as_prometheus_does():
    counts = [0] * (len(BOUNDS_MS) + 1)
    assert quantile(0.5, counts) is None  # no requests: no latency
    counts[BOUNDS_MS.index(10)] = 100  # every request took 5-10 ms
    assert quantile(0.5, counts) == pytest.approx(7.5)
    assert quantile(0.99, counts) == pytest.approx(9.95)
    counts[BOUNDS_MS.index(100)] = 100  # and as many 50-100 ms
    assert quantile(0.5, counts) == pytest.approx(10.0)
    assert quantile(0.9, counts) == pytest.approx(90.0)
    slow = [0] * len(BOUNDS_MS) + [3]  # slower than the last bound: that bound, not more
    assert quantile(0.99, slow) == BOUNDS_MS[-1]


def test_a_window_of_requests_in_steps_with_totals_by_status_and_version():
    clock = Clock()
    traffic = Traffic(None, clock)
    for i in range(30):  # 30 requests over 5 minutes: 10 ms, 1 in 10 answered 500
        clock.now += 10
        status = 500 if i % 10 == 9 else 200
        traffic.observe("ann", "clf", status, 0.008, "latest" if i % 3 else "2")
    traffic.observe("ann", "clf", 400, 0.002, "latest")  # the caller's mistake: no error
    summary = traffic.summary("ann", "clf", parse_window("5m"), points=10)
    totals = summary["totals"]
    assert totals["requests"] == 31 and totals["by_status"] == {"200": 27, "400": 1, "500": 3}
    assert totals["errors"] == 3 and totals["error_rate"] == pytest.approx(3 / 31, abs=1e-4)
    assert totals["by_version"] == {"2": 10, "latest": 21}
    assert 5 < totals["p50_ms"] <= 10 and totals["p99_ms"] <= 10
    assert totals["rps"] == pytest.approx(31 / 300, rel=0.05)
    series = summary["series"]
    assert len(series) == 10 and summary["step_s"] == 30
    assert sum(s["requests"] for s in series) == 31
    assert [s["t"] for s in series] == sorted(s["t"] for s in series)
    # another endpoint, or another owner's of the same name, has its own counts
    assert traffic.summary("bob", "clf", 300)["totals"]["requests"] == 0
    assert traffic.summary("ann", "other", 300)["totals"]["p50_ms"] is None
    # a shorter window sees only its own part
    assert traffic.summary("ann", "clf", 60)["totals"]["requests"] == 7


def test_a_day_is_kept_saved_atomically_and_read_back_after_a_restart(tmp_path):
    clock = Clock()
    first = Traffic(tmp_path, clock)
    first.observe("ann", "clf", 200, 0.02, "latest")
    clock.now += KEEP - 60
    first.observe("ann", "clf", 200, 0.02, "latest")
    first.save()
    saved = tmp_path / "ann" / "clf.json"
    assert saved.stat().st_mode & 0o777 == 0o600 and len(json.loads(saved.read_text())) == 2
    again = Traffic(tmp_path, clock)  # the service restarted
    assert again.summary("ann", "clf", KEEP)["totals"]["requests"] == 2
    clock.now += 120  # the first bin is now older than a day
    again.observe("ann", "clf", 200, 0.02, "latest")
    assert again.summary("ann", "clf", KEEP)["totals"]["requests"] == 2
    # an owner's name never leaves the folder
    again.observe("../x", "clf", 200, 0.02, "latest")
    again.save()
    assert (tmp_path / "..%2Fx" / "clf.json").exists() and not (tmp_path.parent / "x").exists()


def test_a_damaged_file_starts_that_endpoint_afresh(tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "clf.json").write_text('[{"t": 1, "sta')
    traffic = Traffic(tmp_path, Clock())
    assert traffic.summary("ann", "clf", 3600)["totals"]["requests"] == 0
    traffic.observe("ann", "clf", 200, 0.01, "latest")
    traffic.save()
    assert len(json.loads((tmp_path / "ann" / "clf.json").read_text())) == 1


@pytest.mark.parametrize("given", ["0", "5s", "2d", "1w", "-1h", "1.5h", "", "h", None, 10**9])
def test_bad_windows_say_what_to_give(given):
    with pytest.raises(BadRequest, match="a time from 10s to 1d, like 15m"):
        parse_window(given)


def test_bad_points_say_what_to_give():
    with pytest.raises(BadRequest, match="from 1 to 500"):
        Traffic(None, Clock()).summary("ann", "clf", 3600, points=0)


def test_the_report_prints_what_a_person_reads():
    clock = Clock()
    traffic = Traffic(None, clock)
    for _ in range(4):
        clock.now += 30
        traffic.observe("ann", "clf", 200, 0.004, "latest")
    report = TrafficReport(traffic.summary("ann", "clf", parse_window("15m"), points=15))
    lines = report.lines()
    assert lines[0] == "clf: 4 requests in the last 15 min (0.004/s), 0 errors (0.0%)"
    assert lines[1] == "latency  p50 3.8 ms  p90 4.8 ms  p99 5.0 ms"  # all in 2.5-5 ms
    assert lines[2] == "status   200: 4" and lines[3] == "version  latest: 4"
    assert "<table>" in report._repr_html_() and report.requests == 4
    assert sparkline([None, 0, 1, 2]) == " ▁▄█"


def test_bins_that_are_not_as_written_are_left_out_not_a_500(tmp_path):
    clock = Clock()
    good = Traffic(tmp_path, clock)
    good.observe("ann", "clf", 200, 0.01, "latest")
    good.save()
    path = tmp_path / "ann" / "clf.json"
    bins = json.loads(path.read_text())
    path.write_text(json.dumps([*bins, {"t": 5, "status": [], "latency": 3, "versions": 1}]))
    assert Traffic(tmp_path, clock).summary("ann", "clf", 3600)["totals"]["requests"] == 1


def test_each_versions_figures_since_a_moment():
    clock = Clock()
    traffic = Traffic(None, clock)
    for i in range(40):
        clock.now += 1
        traffic.observe("ann", "clf", 200, 0.004, "1")
        traffic.observe("ann", "clf", 500 if i % 4 == 0 else 200, 0.2, "2")
    stats = traffic.version_stats("ann", "clf", clock.now - 40)
    assert stats["1"]["requests"] == 40 and stats["1"]["error_rate"] == 0.0
    assert stats["2"]["errors"] == 10 and stats["2"]["error_rate"] == 0.25
    assert stats["2"]["p99_ms"] > 100 > 5 > stats["1"]["p99_ms"]
    assert traffic.version_stats("ann", "clf", clock.now + 60) == {}


def test_callers_naming_ever_new_labels_are_counted_in_bounds():
    traffic = Traffic(None, Clock())
    for i in range(100):
        traffic.observe("ann", "clf", 400, 0.001, f"label-{i}")
    by_version = traffic.summary("ann", "clf", 60)["totals"]["by_version"]
    assert len(by_version) == 17 and by_version["other"] == 84


def test_model_calls_and_their_rows_are_binned_and_kept(tmp_path):
    clock = Clock(1_000_000.0)
    kept = Traffic(tmp_path, clock=clock)
    kept.observe("ann", "ep", 200, 0.004, "latest")
    kept.batches("ann", "ep", 4, 10)
    clock.now += 10
    kept.batches("ann", "ep", 2, 2)
    kept.batches("ann", "ep", 0, 5)  # no call: nothing
    kept.save()
    again = Traffic(tmp_path, clock=clock).summary("ann", "ep", 60, points=6)
    assert (again["totals"]["model_calls"], again["totals"]["batch_size"]) == (6, 2.0)
    steps = [(s["model_calls"], s["batch_size"]) for s in again["series"] if s["model_calls"]]
    assert steps == [(4, 2.5), (2, 1.0)]
    assert again["series"][0]["batch_size"] is None  # no call in that step
    # a bin whose batch counts were edited into something else is left out, not misread
    path = tmp_path / "ann" / "ep.json"
    bins = json.loads(path.read_text())
    bins[-1]["batch"] = [2, -1]
    path.write_text(json.dumps(bins))
    assert Traffic(tmp_path, clock=clock).summary("ann", "ep", 60)["totals"]["model_calls"] == 4


def test_the_service_reads_batch_sizes_from_the_endpoint_processes():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prometheus_client import generate_latest

    from hubforge.serving.batch_sizes import BatchSizes, read_batches
    from hubforge.serving.server import Metrics

    metrics = Metrics()  # what an endpoint process serves at /metrics

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.headers.get("X-Key") == "k"
            body = generate_latest(metrics.registry) if ok else b"no"
            self.send_response(200 if ok else 403)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    traffic = Traffic(None, clock=Clock(1_000_000.0))
    scraper = BatchSizes(traffic, started=100.0)
    try:
        for rows in (4, 2):
            metrics.batch_size.observe(rows)
        assert read_batches(generate_latest(metrics.registry).decode()) == (2.0, 6.0)
        assert read_batches("# nothing here\n") is None

        copy = {"owner": "ann", "name": "ep", "pid": 7, "url": url, "headers": {"X-Key": "k"}}

        class Endpoints:
            copies_now = [{**copy, "create_time": 50.0}]

            def copies(self):
                return self.copies_now

        endpoints = Endpoints()
        scraper.run_pass(endpoints)  # a process older than the service: counted from now
        assert traffic.summary("ann", "ep", 60)["totals"]["model_calls"] == 0
        metrics.batch_size.observe(8)
        scraper.run_pass(endpoints)
        totals = traffic.summary("ann", "ep", 60)["totals"]
        assert (totals["model_calls"], totals["batch_size"]) == (1, 8.0)
        # a process started after the service: all its calls are new
        endpoints.copies_now = [{**copy, "pid": 8, "create_time": 150.0}]
        scraper.run_pass(endpoints)
        assert traffic.summary("ann", "ep", 60)["totals"]["model_calls"] == 4
        # without the key the page is refused: nothing counted, nothing breaks
        endpoints.copies_now = [{**copy, "pid": 9, "create_time": 150.0, "headers": {}}]
        scraper.run_pass(endpoints)
        assert traffic.summary("ann", "ep", 60)["totals"]["model_calls"] == 4
    finally:
        scraper.close()
        server.shutdown()
        server.server_close()


def test_a_metrics_page_that_lies_or_drips_is_not_counted_and_holds_up_nothing():
    import math
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    from hubforge.serving import batch_sizes
    from hubforge.serving.batch_sizes import fetch, read_batches

    name = "hubforge_serving_batch_size"

    def page(count: str, total: str) -> str:
        return (
            f'# TYPE {name} histogram\n{name}_bucket{{le="+Inf"}} 1.0\n'
            f"{name}_count {count}\n{name}_sum {total}\n"
        )

    assert read_batches(page("3.0", "6.0")) == (3.0, 6.0)
    for count, total in (("+Inf", "1.0"), ("2.0", "NaN"), ("-1.0", "2.0"), ("1e300", "1.0")):
        assert read_batches(page(count, total)) is None, (count, total)
    assert not math.isnan(3.0)

    class Drip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            if self.path == "/huge":
                self.wfile.write(b"#" * (batch_sizes.MAX_PAGE + 10))
                return
            for _ in range(20):  # a byte every half second: never a whole page in time
                self.wfile.write(b"#")
                self.wfile.flush()
                time.sleep(0.5)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with requests.Session() as session:
            started = time.monotonic()
            assert fetch(session, url + "/drip", {}) is None
            assert time.monotonic() - started < batch_sizes.DEADLINE + 1.5
            assert fetch(session, url + "/huge", {}) is None
    finally:
        server.shutdown()
        server.server_close()
