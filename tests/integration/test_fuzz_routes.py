"""Every REST route of the service, the gateway, a user's server extension and Label Studio's
policy layer, fed generated malformed bodies, path segments and query values (Hypothesis):
never a 500, and every process still answers afterwards."""

from __future__ import annotations

import functools
import json
import time
from urllib.parse import quote

import pytest
import requests

pytestmark = [pytest.mark.hub, pytest.mark.timeout(900)]

SERVICE = "services/hubforge/api/"
USER = "fuzzer"
# (method, path template); {seg} is a generated path segment, {q} a generated query value
ROUTES = [
    ("POST", SERVICE + "jobs"),
    ("GET", SERVICE + "jobs/{seg}"),
    ("DELETE", SERVICE + "jobs/{seg}"),
    ("GET", SERVICE + "jobs/{seg}/logs/{seg}?offset={q}"),
    ("GET", SERVICE + "jobs/{seg}/progress"),
    ("POST", SERVICE + "endpoints"),
    ("GET", SERVICE + "endpoints/{seg}"),
    ("DELETE", SERVICE + "endpoints/{seg}"),
    ("GET", SERVICE + "endpoints/{seg}/traffic?window={q}&points={q}&owner={q}"),
    ("DELETE", SERVICE + "endpoints/{seg}/rollout"),
    ("POST", "services/hubforge/endpoints/" + USER + "/{seg}/v1/models/{seg}:predict"),
    ("GET", "services/hubforge/endpoints/{seg}/{seg}/v1/{seg}"),
    ("POST", SERVICE + "tunings"),
    ("GET", SERVICE + "tunings/{seg}"),
    ("DELETE", SERVICE + "tunings/{seg}"),
    ("POST", SERVICE + "schedules"),
    ("PATCH", SERVICE + "schedules/{seg}?owner={q}"),
    ("DELETE", SERVICE + "schedules/{seg}"),
    ("GET", SERVICE + "cron?cron={q}&timezone={q}"),
    ("POST", SERVICE + "gpus"),
    ("DELETE", SERVICE + "gpus/{seg}"),
    ("POST", SERVICE + "users"),
    ("POST", SERVICE + "users/{seg}/password"),
    ("POST", SERVICE + "labeling/shares"),
    ("DELETE", SERVICE + "labeling/shares/{seg}"),
    ("POST", SERVICE + "labeling/storages"),
    ("GET", SERVICE + "labeling/credentials?owner={q}"),
    ("GET", SERVICE + "labeling/login-link?next={q}&owner={q}"),
    ("POST", "user/" + USER + "/hubforge/api/tensorboards"),
    ("DELETE", "user/" + USER + "/hubforge/api/tensorboards/{seg}"),
    ("POST", "user/" + USER + "/hubforge/api/tunings"),
    ("DELETE", "user/" + USER + "/hubforge/api/tunings/{seg}"),
    ("POST", "user/" + USER + "/hubforge/api/schedules"),
    ("PATCH", "user/" + USER + "/hubforge/api/schedules/{seg}"),
    ("GET", "user/" + USER + "/hubforge/api/cron?cron={q}&timezone={q}"),
    ("POST", "user/" + USER + "/hubforge/api/classifications"),
    ("GET", "user/" + USER + "/hubforge/api/endpoints/{seg}/traffic?window={q}&points={q}"),
    ("DELETE", "user/" + USER + "/hubforge/api/endpoints/{seg}/rollout"),
    ("GET", "user/" + USER + "/hubforge/api/classifications/{seg}/report"),
    ("POST", "user/" + USER + "/hubforge/api/classifications/{seg}/prelabel"),
    ("GET", "user/" + USER + "/hubforge/labeling/open?next={q}&owner={q}"),
    ("GET", "services/label-studio/api/tasks/?project={q}"),
    ("POST", "services/label-studio/api/tasks/{seg}/annotations/"),
    ("GET", "services/label-studio/data/local-files/?d={q}"),
    ("PATCH", "services/label-studio/api/projects/{seg}/"),
]

# named, so a failing example prints short; the bytes are made in the test
RAW = {
    "deep list": b"[" * 100_000,
    "deep object": b'{"a":' * 50_000,
    "huge exponent": b"1e999999",
    "bare NaN": b"NaN",
    "NaN inside": b'{"a": NaN}',
    "not UTF-8": b"\xff\xfe",
    "empty": b"",
    "null": b"null",
}


@functools.cache
def strategies():
    """(bodies, path segments, query values): built on first use, so that collecting the
    suite does not import Hypothesis in every test process (~1 CPU-s each)."""
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(10**30), max_value=10**30)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    # the keys the handlers read, with values of any type
    known_keys = st.fixed_dictionaries(
        {},
        optional={
            k: json_values
            for k in (
                "script",
                "spec",
                "name",
                "model_dir",
                "project",
                "folders",
                "owner",
                "member",
                "count",
                "admin",
                "result",
                "instances",
                "inputs",
                "logdir",
                "batching",
                "notebook",
                "path",
                "space",
                "objective",
                "max_trials",
                "parallel",
                "algorithm",
                "max_epochs",
                "factor",
                "cron",
                "timezone",
                "params",
                "paused",
                "notify",
                "missed",
                "update_notebook",
                "canary",
            )
        },
    )
    raw_bodies = st.sampled_from(sorted(RAW))
    bodies = st.one_of(
        json_values.map(lambda v: ("json", v)),
        known_keys.map(lambda v: ("json", v)),
        raw_bodies.map(lambda v: ("raw", v)),
    )
    segments = st.text(min_size=1, max_size=30).filter(lambda s: s not in (".", ".."))
    queries = st.one_of(st.text(max_size=30), st.integers().map(str), st.just(str(10**30)))
    return bodies, segments, queries


@pytest.fixture(scope="module")
def tokens(workbench):
    token = workbench.create_user(USER)
    try:
        assert workbench.spawn(USER, token).status_code in (201, 202)
        workbench.wait_label_studio(time.monotonic() + 300)
        # Label Studio's routes are fuzzed with the fuzzer's own Label Studio token (what
        # a notebook uses), one Label Studio accepts: else they would only test the refusal
        ls = workbench.api("GET", SERVICE + "labeling/credentials", token)
        assert ls.status_code == 200, ls.text
        ls_token = ls.json()["token"]
        mine = requests.get(
            workbench.url + "services/label-studio/api/projects/",
            headers={"Authorization": f"Token {ls_token}"},
            timeout=60,
        )
        assert mine.status_code == 200, mine.text[:300]
        yield {"hub": token, "ls": ls_token}
    finally:
        workbench.ensure_stopped(USER)


@pytest.mark.parametrize("method,template", ROUTES)
def test_malformed_input_never_becomes_a_500(workbench, tokens, method, template):
    headers = {"Authorization": f"token {tokens['hub']}"}
    if "label-studio/" in template:
        headers = {"Authorization": f"Token {tokens['ls']}"}
    seen = []
    from hypothesis import HealthCheck, given, settings

    bodies, segments, queries = strategies()

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=bodies, seg=segments, q=queries)
    def attempt(body, seg, q):
        path = template.replace("{seg}", quote(seg, safe="")).replace("{q}", quote(q, safe=""))
        kind, value = body
        # JSON as a careless client writes it: NaN and Infinity included
        data = json.dumps(value, allow_nan=True).encode() if kind == "json" else RAW[value]
        if method in ("GET", "DELETE"):
            data = None
        r = requests.request(
            method,
            workbench.url + path,
            data=data,
            headers={**headers, "Content-Type": "application/json"},
            allow_redirects=False,
            timeout=120,
        )
        seen.append(r.status_code)
        # no 5xx at all: every process is up (the fixture waited for Label Studio) and the
        # endpoints named are not deployed, so a 502/503 would be a crash behind the proxy
        # or a process that stopped answering, not a refusal a user could act on. The
        # token is one Label Studio accepts: 401 would mean the routes were never reached
        assert r.status_code < 500 and r.status_code != 401, (
            method,
            path,
            repr(data)[:200],
            r.status_code,
            r.text[:300],
        )

    attempt()
    assert seen
    # everything still answers
    assert workbench.api("GET", SERVICE + "status", tokens["hub"]).status_code == 200
    assert (
        workbench.api("GET", f"user/{USER}/hubforge/api/status", tokens["hub"]).status_code == 200
    )
