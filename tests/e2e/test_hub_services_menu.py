"""Label Studio from the hub's own pages: every user has it in the Services menu, and the
link signs them in as themselves (never Label Studio's e-mail/password form)."""

from __future__ import annotations

import pytest

from tests.cleanup import leave_nothing_running
from tests.e2e.lab import login_and_start

pytestmark = [pytest.mark.browser, pytest.mark.hub, pytest.mark.timeout(600)]


def test_services_menu_opens_label_studio_signed_in_as_that_user(workbench, page):
    user, password = "sena", "sena-password-1"
    try:
        login_and_start(page, workbench, user, password)  # an ordinary user, not an admin
        page.goto(workbench.url + "hub/home")
        page.click("a.dropdown-toggle:has-text('Services')")
        page.click("a.dropdown-item:has-text('Label Studio')")
        page.wait_for_url("**/services/label-studio/projects/**", timeout=120_000)
        assert "/user/login" not in page.url  # not Label Studio's own sign-in form
        whoami = page.request.get(workbench.url + "services/label-studio/api/current-user/whoami")
        assert whoami.status == 200, whoami.text()
        assert whoami.json()["email"] == f"{user}@hubforge.local", whoami.json()
    finally:
        leave_nothing_running(workbench, user, password=password)
