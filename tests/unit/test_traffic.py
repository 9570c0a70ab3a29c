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
