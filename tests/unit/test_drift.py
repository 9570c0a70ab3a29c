"""Input drift (serving.drift) and the request log's sampling, files and alert
(serving.request_log): shifted rows raise the alert, rows like the training data do not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubforge.serving import drift
from hubforge.serving.errors import BadRequest
from hubforge.serving.request_log import MIN_ROWS, RequestLog, check_settings

RNG = np.random.default_rng(0)
TRAIN = RNG.normal(0, 1, (2000, 4))


def test_rows_like_the_training_data_do_not_drift_shifted_ones_do():
    base = drift.baseline(TRAIN)
    same = drift.compare(np.random.default_rng(1).normal(0, 1, (300, 4)), base)
    assert not same["drifted"] and same["psi_max"] < 0.1, same
    moved = np.random.default_rng(2).normal(0, 1, (300, 4))
    moved[:, 2] += 1.5  # one feature shifted by 1.5 standard deviations
    found = drift.compare(moved, base)
    assert found["drifted"] and found["worst_feature"] == 2 and found["psi_max"] > 0.5
    third = found["features"][2]
    assert third["mean"] == pytest.approx(1.5, abs=0.2) and third["ks"] > 0.4
    assert found["features"][0]["psi"] < 0.1  # the others did not move
    wide = drift.compare(np.full((50, 4), 10.0), base)
    assert wide["features"][1]["out_of_range"] == 1.0


@pytest.mark.parametrize(
    "rows, says",
    [
        ([[1, 2], [3]], "rows of equal length"),
        ([["a", "b"]], "numbers"),
        ([[np.nan, 1, 1, 1]], "NaN or infinite"),
        ([[1, 2, 3]], "3 features, the baseline 4"),
    ],
)
def test_rows_that_are_no_table_of_numbers_say_so(rows, says):
    with pytest.raises(BadRequest, match=says):
        drift.compare(rows, drift.baseline(TRAIN))


def test_the_rows_of_a_logged_body():
    assert drift.rows_of({"instances": [[1, 2], [3, 4]]}) == [[1, 2], [3, 4]]
    assert drift.rows_of({"inputs": [1.5, 2]}) == [[1.5], [2]]
    assert drift.rows_of({"instances": [{"x": [1]}]}) is None  # named inputs: not tabular
    assert drift.rows_of([1, 2]) is None and drift.rows_of({"instances": []}) is None


def test_settings_say_what_to_give():
    assert check_settings({"rate": 1}) == {"rate": 1.0, "max_body_bytes": 65536}
    for body, says in (
        ({"rate": 2}, "from 0 \\(off\\) to 1"),
        ({"max_body_bytes": 0}, "from 1 to"),
        ({"rate": 0.1, "keep": True}, "Send"),
        ("all", "Send"),
    ):
        with pytest.raises(BadRequest, match=says):
            check_settings(body)


def test_sampled_at_the_rate_written_as_files_and_the_alert_goes_on_once(tmp_path):
    written, alerts = [], []
    draws = iter([0.05, 0.5] * 1000)
    log = RequestLog(tmp_path, lambda *a: written.append(a), rng=lambda: next(draws))
    row = json.dumps({"instances": [[0.0, 0.0, 0.0, 0.0]]}).encode()
    log.offer("ann", "clf", "1", 200, row, b'{"predictions": [[1]]}')  # logging off: nothing
    log.configure("ann", "clf", {"rate": 0.1, "max_body_bytes": 200})
    for _ in range(4):
        log.offer("ann", "clf", "1", 200, row, b'{"predictions": [[1]]}')
    log.offer("ann", "clf", "1", 500, row, b"{}")  # only answers 200
    log.offer("ann", "clf", "1", 200, b"[" + b"1," * 200 + b"1]", b"{}")  # over the cap
    log.flush()
    ((owner, name, filename, data),) = written
    assert (owner, name) == ("ann", "clf") and filename.endswith(".jsonl")
    lines = [json.loads(x) for x in data.splitlines()]
    assert len(lines) == 2 and lines[0]["request"]["instances"] == [[0.0, 0.0, 0.0, 0.0]]
    log.flush()
    assert len(written) == 1  # nothing new: no file

    log.set_baseline("ann", "clf", TRAIN[:500].tolist())
    log.configure("ann", "clf", {"rate": 1.0, "max_body_bytes": 4096})
    log.rng = lambda: 0.0
    shifted = np.random.default_rng(3).normal(3, 1, (MIN_ROWS, 4))
    for r in shifted:
        log.offer("ann", "clf", "1", 200, json.dumps({"instances": [r.tolist()]}).encode(), b"{}")
    log.check_drift(lambda *a: alerts.append(a))
    log.check_drift(lambda *a: alerts.append(a))
    ((_, _, state),) = alerts  # told once
    assert state["drifted"] and log.public("ann", "clf")["drift"]["psi_max"] > 1
    again = RequestLog(tmp_path, lambda *a: None)  # the service restarted: kept
    assert again.public("ann", "clf")["drift"]["drifted"]
    assert (tmp_path / "ann" / "clf.json").stat().st_mode & 0o077 == 0
    with pytest.raises(BadRequest, match="at most 2000 rows"):
        log.set_baseline("ann", "clf", TRAIN.tolist() + TRAIN.tolist())
