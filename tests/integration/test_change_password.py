"""Users change their own password on the hub's Change password page (through the real
hub, proxy and service); nobody changes another user's."""

from __future__ import annotations

import html

import pytest

pytestmark = pytest.mark.hub
API = "services/hubforge/api/users"


def _form(workbench, session, **fields) -> tuple[int, str]:
    r = session.post(
        workbench.url + "hub/change-password",
        data={"_xsrf": session.cookies.get("_xsrf"), **fields},
        timeout=60,
    )
    return r.status_code, html.unescape(r.text)


def test_a_user_changes_their_own_password_and_only_theirs(workbench):
    admin = workbench.admin_token()
    made = {}
    for name in ("pia", "pim"):
        r = workbench.api("POST", API, admin, json={"name": name})
        assert r.status_code == 201, r.text
        made[name] = r.json()["password"]
    session = workbench.login("pia", made["pia"])
    home = session.get(workbench.url + "hub/home", timeout=30).text
    assert 'change-password">Password</a>' in home  # in the navigation bar
    page = session.get(workbench.url + "hub/change-password", timeout=30)
    assert page.status_code == 200 and 'id="change-password"' in page.text

    status, text = _form(
        workbench, session, current="a guess", new="new-pass-42", again="new-pass-42"
    )
    assert status == 403 and "The current password is not right; nothing changed" in text
    status, text = _form(workbench, session, current=made["pia"], new="new-pass-42", again="other")
    assert status == 400 and "The two new passwords differ" in text
    status, text = _form(workbench, session, current=made["pia"], new="short", again="short")
    assert status == 400 and "at least 8 characters" in text
    workbench.login("pia", made["pia"])  # nothing changed so far

    status, text = _form(
        workbench, session, current=made["pia"], new="new-pass-42", again="new-pass-42"
    )
    assert status == 200 and "Your password is changed" in text, text
    with pytest.raises(AssertionError, match="login of pia failed: 403"):
        workbench.login("pia", made["pia"])
    workbench.login("pia", "new-pass-42")
    # the one-minute token the page used is gone again
    tokens = workbench.api("GET", "hub/api/users/pia/tokens", admin).json()["api_tokens"]
    assert not [t for t in tokens if t["note"] == "change password"], tokens

    # pim, with his own token, cannot change pia's (even knowing her password)
    pim = workbench.login_token("pim", made["pim"])
    body = {"current": "new-pass-42", "new": "taken-over-1"}
    r = workbench.api("PUT", f"{API}/pia/password", pim, json=body)
    assert r.status_code == 403 and "only their own" in r.json()["message"], r.text
    r = workbench.api("PUT", f"{API}/pia/password", None, json=body)
    assert r.status_code in (401, 403), r.text
    workbench.login("pia", "new-pass-42")  # still hers
