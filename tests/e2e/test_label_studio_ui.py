"""Label Studio's own UI through the hub's one port: signed in without a password, every
asset loads under /services/label-studio/."""

from __future__ import annotations

import pytest

from hubforge import labeling
from tests.cleanup import leave_nothing_running
from tests.e2e.lab import login_and_start
from tests.integration.test_labeling import as_user, shapes  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.hub]
USER, PASSWORD = "ulla", "ulla-password-1"


@pytest.fixture(scope="module")
def signed_in(workbench, browser) -> list[dict]:
    """The file's one user, made and signed in through the hub's form, their server started
    (one spawn and one JupyterLab load for the file's stories): the browser's cookies, for
    each test's own page."""
    try:
        context = browser.new_context()
        try:
            login_and_start(context.new_page(), workbench, USER, PASSWORD)
            cookies = context.cookies()
        finally:
            context.close()
        yield cookies
    finally:
        leave_nothing_running(workbench, USER, password=PASSWORD)


def test_open_label_studio_from_the_server(workbench, page, as_user, signed_in):  # noqa: F811
    as_user(USER)
    shapes(workbench.data_dir / "hdfs" / "datasets" / "ui", 3)
    project = labeling.create_project("ui-check", "datasets/ui", ["circle", "square"])
    page.context.add_cookies(signed_in)
    failed = []
    page.on(
        "response",
        lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )

    def request_failed(r) -> None:
        # JupyterLab's own polls in flight when the page leaves it for Label Studio are
        # aborted by the browser (net::ERR_ABORTED): the navigation, not a failure
        left_behind = f"/user/{USER}/" in r.url and r.failure == "net::ERR_ABORTED"
        if not left_behind:
            failed.append(f"failed {r.url} ({r.failure})")

    page.on("requestfailed", request_failed)
    page.goto(
        workbench.url + f"user/{USER}/hubforge/labeling/open?next=/projects/{project.id}/data"
    )
    page.wait_for_url("**/services/label-studio/projects/**", timeout=60_000)
    page.wait_for_selector("text=ui-check", timeout=60_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_selector("text=Tasks: 3 / 3", timeout=60_000)
    page.wait_for_load_state("networkidle")
    # the items' images come from the data area, through the hub, in Label Studio's own grid
    sizes = page.eval_on_selector_all(
        "img[src*='local-files']", "imgs => imgs.map(i => i.complete && i.naturalWidth)"
    )
    assert sizes == [32, 32, 32], sizes
    assert failed == [], failed
    # an expired or forged link is refused
    r = page.request.get(
        workbench.url + f"services/label-studio/hubforge/login?email={USER}@hubforge.local"
        "&exp=1&next=/projects/&sig=00"
    )
    assert r.status == 403 and "expired or is not valid" in r.text()


def test_launcher_card_opens_label_studio_signed_in(workbench, page, as_user, signed_in):  # noqa: F811
    as_user(USER)
    labeling.create_project(
        "from-launcher", ["a text to label"], ["yes", "no"], "text-classification"
    )
    page.context.add_cookies(signed_in)
    page.goto(workbench.url + f"user/{USER}/lab")
    card = page.locator(".jp-Launcher .jp-LauncherCard[title^='Label Studio']")
    card.wait_for(timeout=60_000)
    icon = card.locator(".jp-LauncherCard-icon img")  # our icon, served by the proxy entry
    icon.wait_for(timeout=30_000)
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=icon.element_handle(), timeout=30_000
    )
    with page.context.expect_page() as opened:
        card.click()
    tab = opened.value
    tab.wait_for_url("**/services/label-studio/projects/**", timeout=60_000)
    tab.wait_for_selector("text=from-launcher", timeout=60_000)  # the user's project: signed in
    assert "/user/login" not in tab.url


def test_labeling_and_export_in_label_studios_own_ui(workbench, page, as_user, signed_in):  # noqa: F811
    """Behind the policy layer Label Studio's UI still does its job for its user: open an item,
    choose a label, submit; the export (as the UI's export button asks for it, with the
    browser's session) has the annotation, made by this user."""
    from hubforge.labeling import api

    as_user(USER)
    project = labeling.create_project(
        "ui-labeling", ["the first text", "the second text"], ["yes", "no"], "text-classification"
    )
    me = api.credentials()
    page.context.add_cookies(signed_in)
    task = project.tasks()[0]["id"]
    page.goto(
        workbench.url + f"user/{USER}/hubforge/labeling/open?next=/projects/{project.id}/data"
        f"?task={task}"
    )
    page.wait_for_url("**/services/label-studio/projects/**", timeout=60_000)
    page.locator("input[type=checkbox][name=yes]").check(timeout=60_000)  # the choice "yes"
    page.get_by_role("button", name="Submit").click(timeout=30_000)
    base = workbench.url + "services/label-studio/"
    deadline = 60
    while deadline:
        done = project.tasks(labeled=True)
        if done:
            break
        page.wait_for_timeout(1000)
        deadline -= 1
    assert [t["id"] for t in done] == [task]
    exported = page.request.get(base + f"api/projects/{project.id}/export?exportType=JSON")
    assert exported.ok, exported.text()
    rows = {row["id"]: row for row in exported.json()}
    (annotation,) = rows[task]["annotations"]
    assert annotation["completed_by"] == me["id"]
    assert annotation["result"][0]["value"]["choices"] == ["yes"]
