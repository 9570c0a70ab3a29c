"""Canary rollouts through the gateway (#36): a good new version steps up to 100 % with no
failed request; one that answers 500 for some inputs, or is 10 times slower, is rolled back
by itself with its reason, having served at most about its step's share; the owner can roll
one back; nobody else can touch it."""

from __future__ import annotations

import os
import threading
import time

import pytest

from hubforge import serving
from tests import cli_record
from tests.models import keras_model, variant_model

pytestmark = [pytest.mark.hub, pytest.mark.timeout(600)]
API = "services/hubforge/api/endpoints"
USER = "cara"
GATEWAY = f"services/hubforge/endpoints/{USER}/steady/v1/models/steady:predict"


def rollout(workbench, token: str) -> dict:
    return workbench.api("GET", f"{API}/steady", token).json()["rollout"]


def drive(workbench, token: str, until, negative_every: int = 0, timeout: float = 150) -> dict:
    """Calls through the gateway until ``until(rollout)``; counts answers by status and by
    the version that answered (the traffic the gateway counted for this stretch)."""
    seen: dict[str, int] = {}
    deadline, i = time.monotonic() + timeout, 0
    while not until(current := rollout(workbench, token)):
        assert time.monotonic() < deadline, current
        for _ in range(10):
            i += 1
            first = -1.0 if negative_every and i % negative_every == 0 else 1.0
            r = workbench.api("POST", GATEWAY, token, json={"instances": [[first, 1, 1, 1]]})
            seen[str(r.status_code)] = seen.get(str(r.status_code), 0) + 1
    return seen


def test_canaries_step_up_or_roll_back_by_themselves(workbench, monkeypatch):
    token = workbench.create_user(USER)
    exports = workbench.data_dir / "hdfs" / "users" / USER / "exports"
    models = workbench.data_dir / "hdfs" / "users" / USER / "models" / "steady"
    keras_model(exports, 1, bias=1.0)  # y = sum(x) + 1, as every variant answers
    for version, mode in ((2, "good"), (3, "fails"), (4, "slow"), (5, "good")):
        variant_model(exports, version, mode)
    env = {"HUBFORGE_SERVICE_URL": workbench.url + "services/hubforge/api"}
    monkeypatch.setenv("HUBFORGE_SERVICE_URL", env["HUBFORGE_SERVICE_URL"])
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    env = {**os.environ, **env, "JUPYTERHUB_API_TOKEN": token}
    try:
        serving.deploy(str(exports / "1"), "steady")
        # a good version: 10 % then 50 % every 10 s, then all; not one request fails
        canary = {"steps": [10, 50, 100], "interval": "10s", "min_requests": 10}
        ep = serving.deploy(str(exports / "2"), "steady", canary=canary)
        assert ep.rollout["state"] == "running" and ep.rollout["percent"] == 10
        assert (ep.rollout["stable"], ep.rollout["canary"]) == (1, 2)
        # while it runs, no second deploy of the endpoint
        r = workbench.api("POST", API, token, json={"name": "steady", "model_dir": str(exports)})
        assert r.status_code == 409 and "rolling out (10%)" in r.json()["message"], r.text
        seen = drive(workbench, token, lambda r: r["state"] != "running")
        assert seen == {"200": sum(seen.values())}, seen
        done = rollout(workbench, token)
        assert done["state"] == "promoted", (done["reason"], done["history"])
        events = [h["event"] for h in done["history"]]
        assert events == [
            "version 2 gets 10%",
            "version 2 gets 50%",
            "promoted: version 2 serves all requests",
        ]
        assert "hubforge-stable" not in (models / "labels.json").read_text()

        # answers 500 where the first value is negative (a third of these calls): rolled back
        # once it has answered 10 times, having had about its 10 % of the calls
        bad = {"steps": [10, 100], "interval": "10m", "min_requests": 10}
        serving.deploy(str(exports / "3"), "steady", canary=bad)
        before = counted_by_version(workbench, token)
        drive(workbench, token, lambda r: r["state"] != "running", negative_every=3)
        done = rollout(workbench, token)
        assert done["state"] == "rolled_back", done
        assert done["reason"].startswith("version 3: error rate "), done
        share = share_of(workbench, token, before, "3")
        assert share <= 0.2, share  # the step is 10 %: a random draw, so a margin
        assert not (models / "3").exists() and list(models.glob(".rolled-back-3-*"))
        # every call goes to the stable version again, none fails
        seen = {}
        for _ in range(20):
            r = workbench.api("POST", GATEWAY, token, json={"instances": [[-1.0, 1, 1, 1]]})
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert seen == {200: 20}, seen

        # ten times slower: rolled back on its latency (p90 or p99; the CLI's flags)
        deploy = ["serve", "deploy", str(exports / "4"), "--name", "steady"]
        cli = cli_record.run(
            [*deploy, "--canary", "10", "--canary-interval", "10m"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert cli.returncode == 0, cli.stderr
        # (version 4: a number names one model, the rolled back 3 included)
        assert "canary: version 4 gets 10% (version 2 the rest)" in cli.stdout
        drive(workbench, token, lambda r: r["state"] != "running")
        done = rollout(workbench, token)
        assert done["state"] == "rolled_back" and "0 latency" in done["reason"], done

        # the owner rolls a canary back by hand
        good = ["serve", "deploy", str(exports / "5"), "--name", "steady", "--canary", "20"]
        assert cli_record.run(good, env=env, capture_output=True).returncode == 0
        back = cli_record.run(["serve", "rollback", "steady"], env=env, capture_output=True)
        assert back.returncode == 0 and b"rolled back to version 2: cancelled" in back.stdout
        again = cli_record.run(
            ["serve", "rollback", "steady"], env=env, capture_output=True, text=True
        )
        assert again.returncode == 2 and "No canary of steady is rolling out" in again.stderr

        # a canary waits for no deploy of the same endpoint: it is refused while one is under
        # way (it would pin the version that deploy is replacing). This deploy changes the
        # batching: a new process starts (seconds) after the version is copied in
        plain: list = []
        body = {"name": "steady", "model_dir": str(exports / "5")}
        batched = {**body, "batching": {"max_batch_size": 4}}
        before = set(os.listdir(models))
        under_way = threading.Thread(
            target=lambda: plain.append(workbench.api("POST", API, token, json=batched))
        )
        under_way.start()
        deadline = time.monotonic() + 60
        while set(os.listdir(models)) <= before:
            assert time.monotonic() < deadline and under_way.is_alive(), plain
            time.sleep(0.02)
        r = workbench.api("POST", API, token, json={**body, "canary": 10})
        assert r.status_code == 409, r.text
        assert "Another deploy of steady is under way" in r.json()["message"], r.text
        under_way.join(120)
        assert plain[0].status_code == 201, plain[0].text
    finally:
        workbench.api("DELETE", f"{API}/steady", token)


def counted_by_version(workbench, token: str) -> dict[str, int]:
    r = workbench.api("GET", f"{API}/steady/traffic?window=1h", token)
    return r.json()["totals"]["by_version"]


def share_of(workbench, token: str, before: dict[str, int], version: str) -> float:
    after = counted_by_version(workbench, token)
    calls = {v: n - before.get(v, 0) for v, n in after.items()}
    return calls.get(version, 0) / max(1, sum(calls.values()))


def test_canary_mistakes_and_other_users(workbench):
    token, other = workbench.create_user("cato"), workbench.create_user("otto")
    exports = workbench.data_dir / "hdfs" / "users" / "cato" / "exports"
    keras_model(exports, 1, bias=1.0)
    variant_model(exports, 2, "good")
    body = {"name": "solo", "model_dir": str(exports / "1")}
    try:
        # no endpoint yet: nothing to compare a canary with
        r = workbench.api("POST", API, token, json={**body, "canary": 10})
        assert r.status_code == 400 and "deploy without canary first" in r.json()["message"]
        assert workbench.api("POST", API, token, json=body).status_code == 201
        for canary, says in (
            (150, "rising percents ending at 100"),
            ({"steps": [50, 10, 100]}, "rising percents"),
            ({"interval": "1w"}, "a time from 10s to 1d"),
            ({"sticky_header": "bad header!"}, "a header name like X-User"),
            ({"max_latency_ratio": 0.5}, "from 1 to 100"),
            ({"speed": "fast"}, "unknown ['speed']"),
            ("ten", "a percent (1-99) or an object"),
            ({"notify": {"on": "never"}}, "canary.notify.on='never'"),
        ):
            r = workbench.api(
                "POST", API, token, json={**body, "model_dir": str(exports / "2"), "canary": canary}
            )
            assert r.status_code == 400 and says in r.json()["message"], (canary, r.text)
        assert not (exports.parent / "models" / "solo" / "2").exists()  # nothing deployed
        labels = exports.parent / "models" / "solo" / "labels.json"
        labels.write_text("[" * 3000)  # the owner's own file, damaged: said, not overwritten
        r = workbench.api(
            "POST", API, token, json={"name": "solo", "model_dir": str(exports / "2"), "canary": 30}
        )
        assert r.status_code == 400 and "labels.json is not a JSON object" in r.text, r.text
        assert labels.read_text() == "[" * 3000
        labels.unlink()
        r = workbench.api(
            "POST", API, token, json={"name": "solo", "model_dir": str(exports / "2"), "canary": 30}
        )
        assert r.status_code == 201 and r.json()["rollout"]["percent"] == 30, r.text
        # another user: not theirs to see, roll back or call
        assert workbench.api("DELETE", f"{API}/solo/rollout", other).status_code == 404
        assert workbench.api("GET", f"{API}/solo", other).status_code == 404
        call = "services/hubforge/endpoints/cato/solo/v1/models/solo:predict"
        r = workbench.api("POST", call, other, json={"instances": [[1, 1, 1, 1]]})
        assert r.status_code == 403
        assert workbench.api("GET", f"{API}/solo", token).json()["rollout"]["state"] == "running"
        r = workbench.api("DELETE", f"{API}/solo/rollout", token)
        assert r.status_code == 200 and r.json()["state"] == "rolled_back", r.text
        assert workbench.api("DELETE", f"{API}/solo/rollout", token).status_code == 404
    finally:
        workbench.api("DELETE", f"{API}/solo", token)
