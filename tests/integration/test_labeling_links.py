"""Sign-in links into Label Studio's UI: single use, a short life whatever the link says, signed
with a key that is not in Label Studio's database, bound to the browser that asked for it, never
written to a log."""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import parse_qs, quote, urlparse

import pytest
import requests

from hubforge.labeling.server import BIND_COOKIE, sign_login

pytestmark = pytest.mark.hub
LINK = "services/hubforge/api/labeling/login-link"
NONCE = "the-browser-nonce"
BIND = hashlib.sha256(NONCE.encode()).hexdigest()


def _browser(origin: str, link: str, nonce: str | None = NONCE) -> requests.Session:
    """A browser that holds ``nonce`` in the bind cookie for the link's sign-in route."""
    session = requests.Session()
    if nonce is not None:
        session.cookies.set(BIND_COOKIE, nonce, path=urlparse(link).path)
    return session


def test_links_work_once_expire_soon_and_need_the_service_key(workbench):
    token = workbench.create_user("lina")
    link = workbench.api("GET", f"{LINK}?bind={BIND}", token).json()["url"]
    origin = workbench.url[: workbench.url.index("/", len("http://"))]
    browser = _browser(origin, link)
    first = browser.get(origin + link, allow_redirects=False, timeout=30)
    assert first.status_code == 302 and "sessionid" in first.headers.get("Set-Cookie", "")
    # the session goes to Label Studio's path only, never to users' servers on the origin
    session = [c for c in first.cookies if c.name == "sessionid"]
    label_studio = link.split("/hubforge/login")[0] + "/"
    assert [c.path for c in session] == [label_studio], first.headers
    assert not browser.cookies.get("sessionid", path="/"), "a session cookie for every path"
    again = _browser(origin, link).get(origin + link, allow_redirects=False, timeout=30)
    assert again.status_code == 403 and "expired or is not valid" in again.text

    query = {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}
    prefix = link.split("/hubforge/login")[0]
    state = workbench.data_dir / "state" / "label-studio-admin.json"
    admin = json.loads(state.read_text())
    key = admin["service_key"]
    forged = {
        # the admin's API token (it lives in Label Studio's database) signs nothing
        "with the admin token": sign_login(admin["token"], query["email"], "/", bind=BIND),
        # the real key, but a year: the server caps a link's life
        "valid for a year": sign_login(key, query["email"], "/", ttl=365 * 86400, bind=BIND),
        # a link bound to no browser
        "unbound": sign_login(key, query["email"], "/projects/"),
    }
    for why, forged_query in forged.items():
        url = f"{origin}{prefix}/hubforge/login?{forged_query}"
        r = _browser(origin, url).get(url, allow_redirects=False, timeout=30)
        assert r.status_code == 403, why
    fresh = f"{origin}{prefix}/hubforge/login?" + sign_login(
        key, query["email"], "/projects/", ttl=30, bind=BIND
    )

    def signed_in_lines() -> int:
        return sum(
            "/hubforge/login" in line and '" 302 ' in line
            for line in workbench.hub_log().splitlines()
        )

    before = signed_in_lines()
    r = _browser(origin, fresh).get(fresh, allow_redirects=False, timeout=30)
    assert r.status_code == 302, "a short link signed with the service key works"

    # the log line is written after the answer: wait for this last request's line (every
    # earlier one is in the log by then), then read what the log says
    deadline = time.monotonic() + 60
    while signed_in_lines() <= before:
        assert time.monotonic() < deadline, "no log line for the sign-in link"
        time.sleep(0.2)
    assert query["sig"] not in workbench.hub_log(), "the signature never reaches a log"


def test_a_link_works_only_in_the_browser_that_asked_for_it(workbench):
    """Bob's sign-in link sent to Alice's browser does not sign her in as bob (she would
    label in his projects believing they are hers); his own browser, through his server's
    /hubforge/labeling/open, gets in."""
    token = workbench.create_user("bren")
    origin = workbench.url[: workbench.url.index("/", len("http://"))]
    for holder in (None, "alices-own-nonce"):
        link = workbench.api("GET", f"{LINK}?bind={BIND}", token).json()["url"]
        r = _browser(origin, link, holder).get(origin + link, allow_redirects=False, timeout=30)
        assert r.status_code == 403 and "sessionid" not in r.headers.get("Set-Cookie", "")
    # the route a user clicks: his server sets the cookie and redirects to a bound link
    try:
        assert workbench.spawn("bren", token).status_code in (201, 202)
        r = workbench.api(
            "GET", "user/bren/hubforge/labeling/open?next=/projects/", token, allow_redirects=False
        )
        assert r.status_code == 302, r.text
        link = r.headers["Location"]
        nonce = r.cookies.get(BIND_COOKIE)
        assert nonce and hashlib.sha256(nonce.encode()).hexdigest() in link
        (cookie,) = [c for c in r.cookies if c.name == BIND_COOKIE]
        assert cookie.path == urlparse(link).path and cookie.has_nonstandard_attr("HttpOnly")
        elsewhere = _browser(origin, link, None).get(
            origin + link, allow_redirects=False, timeout=30
        )
        assert elsewhere.status_code == 403  # alice's browser, handed bob's link
        mine = _browser(origin, link, nonce).get(origin + link, allow_redirects=False, timeout=30)
        assert mine.status_code == 302 and "sessionid" in mine.headers.get("Set-Cookie", "")
        assert mine.headers["Location"].endswith(
            quote("/services/label-studio/projects/", safe="/")
        )
    finally:
        workbench.ensure_stopped("bren")
