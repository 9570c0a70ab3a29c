"""Notifications of ended runs (#35): what users may ask for, and what reaches a real SMTP
server and a webhook receiver on loopback."""

from __future__ import annotations

import re

import pytest
from traitlets.config import Config

from hubforge.notify import Notifications, NotifyError
from hubforge.processes import free_port
from hubforge.schedules.runs import run_message
from tests.mailbox import Hooks, Mailbox

SCHEDULE = {
    "id": "s-1a2b3c4d",
    "name": "nightly",
    "owner": "sam",
    "cron": "0 2 * * *",
    "timezone": "Europe/Berlin",
}
FAILED = {
    "number": 7,
    "due": "2026-12-07T01:00:00+00:00",
    "state": "failed",
    "job": "s-1a2b3c4d-r7",
    "reason": "notebook cell 4: KeyError: 'label'",
    "started": 100.0,
    "ended": 142.0,
    "executed_notebook": "/data/users/sam/jobs/s-1a2b3c4d-r7/executed.ipynb",
}


def notifications(**settings) -> Notifications:
    config = Config()
    for key, value in settings.items():
        config.Notifications[key] = value
    return Notifications(config=config)


def test_what_users_may_ask_for_is_checked_with_what_to_change():
    n = notifications(
        smtp_host="127.0.0.1",
        email_addresses={"sam": "sam@example.org"},
        webhook_prefixes=["https://chat.example.org/hooks/"],
    )
    kept = n.check("sam", {"email": True, "webhook": "https://chat.example.org/hooks/x"})
    assert kept == {"on": "failure", "email": True, "webhook": "https://chat.example.org/hooks/x"}
    for owner, settings, says in (
        ("sam", {"on": "sometimes"}, "failure, success, always"),
        ("sam", {"email": "yes"}, "true or false"),
        ("bob", {"email": True}, "no address of bob"),  # no template: only the known ones
        ("sam", {"webhook": "https://chat.example.org.evil.test/"}, "not allowed"),
        ("sam", {"webhook": "file:///etc/passwd"}, "http(s) URL"),
        ("sam", {"channel": "#ml"}, "unknown ['channel']"),
        ("sam", ["email"], "an object"),
    ):
        with pytest.raises(NotifyError, match=re.escape(says)):
            n.check(owner, settings)
    with pytest.raises(NotifyError, match="sends no e-mail"):
        notifications().check("sam", {"email": True})


def test_a_failed_run_reaches_a_real_smtp_server_and_a_webhook_with_its_cell_and_link():
    smtp, hook = free_port(), free_port()
    n = notifications(
        smtp_host="127.0.0.1",
        smtp_port=smtp,
        email_template="{username}@example.org",
        webhook_prefixes=[f"http://127.0.0.1:{hook}/"],
        public_url="https://hub.example.org/",
    )
    settings = n.check("sam", {"email": True, "webhook": f"http://127.0.0.1:{hook}/chat"})
    message = run_message(SCHEDULE, FAILED, n.public_url)
    with Mailbox(smtp) as mailbox, Hooks(hook) as hooks:
        told = n.send("sam", settings, message)
        (mail,), ((path, posted),) = mailbox.wait(1), hooks.wait(1)
    assert told == ["e-mail: sent to sam@example.org", "webhook: posted (204)"]
    assert mail["To"] == "sam@example.org" and mail["Subject"] == "[Hubforge] nightly: run 7 failed"
    text = mail.get_payload(decode=True).decode()
    link = "https://hub.example.org/hub/user-redirect/lab/tree/hdfs/users/sam/jobs/s-1a2b3c4d-r7/executed.ipynb"
    assert "Error: notebook cell 4: KeyError: 'label'" in text and "Duration: 42 s" in text
    assert link in text
    assert path == "/chat" and posted["state"] == "failed" and posted["link"] == link
    assert posted["run"] == 7 and "nightly: run 7 failed" in posted["text"]

    # asked for failures only: a success says nothing
    assert n.send("sam", settings, run_message(SCHEDULE, {**FAILED, "state": "succeeded"})) == []


def test_a_channel_that_fails_is_recorded_and_the_other_still_goes():
    hook = free_port()
    n = notifications(
        smtp_host="127.0.0.1",
        smtp_port=free_port(),  # nobody listens there
        email_template="{username}@example.org",
        webhook_prefixes=[f"http://127.0.0.1:{hook}/"],
    )
    settings = n.check(
        "sam", {"on": "always", "email": True, "webhook": f"http://127.0.0.1:{hook}/"}
    )
    with Hooks(hook) as hooks:
        told = n.send("sam", settings, run_message(SCHEDULE, FAILED))
        hooks.wait(1)
    assert told[0].startswith("e-mail failed: ") and told[1] == "webhook: posted (204)"
    # an admin narrowed the allowed prefixes since the schedule was made: nothing is posted
    n.webhook_prefixes = ["https://chat.example.org/"]
    told = n.send(
        "sam",
        {"on": "always", "webhook": f"http://127.0.0.1:{hook}/"},
        run_message(SCHEDULE, FAILED),
    )
    assert told[0].startswith("webhook failed: ") and "not allowed" in told[0]


def test_webhooks_go_only_under_an_allowed_prefix_and_mail_is_rate_limited():
    n = notifications(webhook_prefixes=["https://chat.example.org/hooks/"])
    n.check("sam", {"webhook": "https://chat.example.org/hooks/team-ml"})
    for url in (
        "https://chat.example.org/hooks/../../admin",
        "https://chat.example.org/hooks/%2e%2e/admin",
        "https://chat.example.org@evil.test/hooks/",
        "https://chat.example.org.evil.test/hooks/",
        "https://chat.example.org:8443/hooks/x",
        "http://chat.example.org/hooks/x",
        "https://chat.example.org/hooks/x#y",
    ):
        with pytest.raises(NotifyError, match="not allowed"):
            n.check("sam", {"webhook": url})
    # no trailing slash in the admin's prefix: still a folder, not a name's beginning
    n = notifications(webhook_prefixes=["https://chat.example.org/hooks"])
    with pytest.raises(NotifyError, match="not allowed"):
        n.check("sam", {"webhook": "https://chat.example.org/hooksmith"})

    hook = free_port()
    n = notifications(webhook_prefixes=[f"http://127.0.0.1:{hook}/"])
    settings = {"on": "always", "webhook": f"http://127.0.0.1:{hook}/"}
    with Hooks(hook) as hooks:
        told = [n.send("sam", settings, run_message(SCHEDULE, FAILED)) for _ in range(21)]
        hooks.wait(20)
    assert told[19] == ["webhook: posted (204)"]
    assert told[20] == ["not sent: more than 20 notifications within an hour"]
    assert n.send("bob", settings, run_message(SCHEDULE, FAILED)) != told[20]  # per user
