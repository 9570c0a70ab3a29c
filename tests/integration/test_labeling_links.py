"""Sign-in links into Label Studio's UI: single use, a short life whatever the link says, signed
with a key that is not in Label Studio's database, never written to a log."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from hubforge.labeling.server import sign_login

pytestmark = pytest.mark.hub
LINK = "services/hubforge/api/labeling/login-link"


def test_links_work_once_expire_soon_and_need_the_service_key(workbench):
    token = workbench.create_user("lina")
    link = workbench.api("GET", LINK, token).json()["url"]
    origin = workbench.url[: workbench.url.index("/", len("http://"))]
    first = requests.get(origin + link, allow_redirects=False, timeout=30)
    assert first.status_code == 302 and "sessionid" in first.headers.get("Set-Cookie", "")
    again = requests.get(origin + link, allow_redirects=False, timeout=30)
    assert again.status_code == 403 and "expired or is not valid" in again.text

    query = {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}
    prefix = link.split("/hubforge/login")[0]
    state = workbench.data_dir / "state" / "label-studio-admin.json"
    admin = json.loads(state.read_text())
    forged = {
        # the admin's API token (it lives in Label Studio's database) signs nothing
        "with the admin token": sign_login(admin["token"], query["email"], "/projects/"),
        # the real key, but a year: the server caps a link's life
        "valid for a year": sign_login(
            admin["service_key"], query["email"], "/projects/", ttl=365 * 86400
        ),
    }
    for why, forged_query in forged.items():
        r = requests.get(
            f"{origin}{prefix}/hubforge/login?{forged_query}", allow_redirects=False, timeout=30
        )
        assert r.status_code == 403, why
    fresh = sign_login(admin["service_key"], query["email"], "/projects/", ttl=30)
    r = requests.get(f"{origin}{prefix}/hubforge/login?{fresh}", allow_redirects=False, timeout=30)
    assert r.status_code == 302, "a short link signed with the service key works"

    time.sleep(0.5)  # the log line is written after the answer
    log = workbench.log.read_text()
    assert "/hubforge/login?" in log or "/hubforge/login" in log
    assert query["sig"] not in log, "the signature never reaches a log"
