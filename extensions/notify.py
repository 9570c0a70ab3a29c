"""Notifications of ended work (#35): e-mail through the admin's SMTP server and webhooks
(a JSON POST, e.g. to a chat tool) to addresses an admin allows.

Configured once, in ``hubforge_config.py`` (or the chart)::

    c.Notifications.smtp_host = "smtp.example.org"
    c.Notifications.sender = "hubforge@example.org"
    c.Notifications.email_template = "{username}@example.org"   # or email_addresses
    c.Notifications.webhook_prefixes = ["https://chat.example.org/hooks/"]

A user's address comes from this configuration, never from what a notebook or request says;
a webhook's URL must start with one of the allowed prefixes."""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import smtplib
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from traitlets import Bool, Dict, Integer, List, Unicode, default
from traitlets.config import Configurable

log = logging.getLogger("hubforge.notify")
WHEN = ("failure", "success", "always")
TIMEOUT = 10  # seconds for one e-mail or webhook
PER_HOUR = 20  # notifications one user gets within an hour
QUEUED = 200  # notifications waiting to be sent


def _under(url: str, prefix: str) -> bool:
    """Whether ``url`` is on the host, port and scheme of ``prefix`` and under its path (at a
    segment boundary), with no user info, dot segments or fragment that could lead
    elsewhere."""
    try:
        given, allowed = urlsplit(url), urlsplit(prefix)
        ports = (given.port, allowed.port)
    except ValueError:
        return False
    if given.username is not None or given.password is not None or given.fragment:
        return False
    if "\\" in url or any(seg in ("..", ".") for seg in unquote(given.path).split("/")):
        return False
    if (given.scheme, given.hostname, ports[0]) != (allowed.scheme, allowed.hostname, ports[1]):
        return False
    base = allowed.path if allowed.path.endswith("/") else allowed.path + "/"
    return given.path == allowed.path or given.path.startswith(base)


class NotifyError(ValueError):
    """Settings of a notification that cannot be used; says what to change."""


class Notifications(Configurable):
    smtp_host = Unicode("", config=True, help="The SMTP server for e-mail (empty: no e-mail).")
    smtp_port = Integer(25, config=True, help="Its port.")
    smtp_starttls = Bool(False, config=True, help="Upgrade the connection with STARTTLS.")
    smtp_username = Unicode("", config=True, help="Log in with this name (empty: no login).")
    smtp_password = Unicode(
        config=True, help="... and this password (default: $HUBFORGE_SMTP_PASSWORD)."
    )

    @default("smtp_password")
    def _default_smtp_password(self) -> str:
        return os.environ.get("HUBFORGE_SMTP_PASSWORD", "")

    sender = Unicode("hubforge@localhost", config=True, help="The From: of the e-mails.")
    email_addresses = Dict(
        config=True, help="Users' e-mail addresses, e.g. {'sam': 'sam@example.org'}."
    )
    email_template = Unicode(
        "", config=True, help="Addresses of users not in email_addresses: '{username}@example.org'."
    )
    webhook_prefixes = List(
        Unicode(),
        config=True,
        help="URL prefixes webhooks may post to, e.g. ['https://chat.example.org/hooks/'].",
    )
    public_url = Unicode(
        "", config=True, help="The workbench's address as users reach it, for links."
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sent: dict[str, collections.deque] = {}
        self._queue: queue.Queue | None = None

    # -- what users may ask for ------------------------------------------------------------
    def email_of(self, user: str) -> str | None:
        address = self.email_addresses.get(user)
        if not address and self.email_template:
            address = self.email_template.format(username=user)
        return address or None

    def check(self, owner: str, settings: Any) -> dict[str, Any]:
        """``settings`` ({"on": "failure", "email": true, "webhook": url}) as kept, or
        NotifyError saying what to change."""
        if not isinstance(settings, dict):
            raise NotifyError('notify: an object, e.g. {"on": "failure", "email": true}')
        unknown = sorted(set(settings) - {"on", "email", "webhook"})
        if unknown:
            raise NotifyError(f"notify: unknown {unknown}; give 'on', 'email' and 'webhook'")
        when = settings.get("on", "failure")
        if when not in WHEN:
            raise NotifyError(f"notify.on={when!r}: one of {', '.join(WHEN)}")
        email = settings.get("email", False)
        if not isinstance(email, bool):
            raise NotifyError("notify.email: true or false")
        if email and not self.smtp_host:
            raise NotifyError("notify.email: this workbench sends no e-mail (ask an admin)")
        if email and not self.email_of(owner):
            raise NotifyError(f"notify.email: the workbench knows no address of {owner}")
        webhook = settings.get("webhook") or None
        if webhook is not None:
            self.check_webhook(webhook)
        return {"on": when, "email": email, "webhook": webhook}

    def check_webhook(self, url: Any) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise NotifyError("notify.webhook: an http(s) URL")
        if len(url) > 2000 or not any(_under(url, prefix) for prefix in self.webhook_prefixes):
            allowed = ", ".join(self.webhook_prefixes) or "none on this workbench"
            raise NotifyError(f"notify.webhook: {url[:200]} is not allowed; allowed: {allowed}")

    # -- sending -----------------------------------------------------------------------------
    def wanted(self, settings: dict[str, Any], state: str) -> bool:
        when = settings.get("on", "failure")
        return when == "always" or (when == "success") == (state == "succeeded")

    def send(self, owner: str, settings: dict[str, Any], message: dict[str, Any]) -> list[str]:
        """Send ``message`` (subject, text, and the JSON for webhooks) as ``settings`` ask;
        what happened, one line per channel (kept with the run). At most ``PER_HOUR``
        notifications per user and hour: the admin's mail server is everyone's."""
        if not settings or not self.wanted(settings, message.get("state", "")):
            return []
        sent = self._sent.setdefault(owner, collections.deque())
        now = time.monotonic()
        while sent and now - sent[0] > 3600:
            sent.popleft()
        if len(sent) >= PER_HOUR:
            return [f"not sent: more than {PER_HOUR} notifications within an hour"]
        sent.append(now)
        done = []
        if settings.get("email"):
            done.append(self._guarded("e-mail", self._email, owner, message))
        if settings.get("webhook"):
            done.append(self._guarded("webhook", self._webhook, settings["webhook"], message))
        return done

    @staticmethod
    def _guarded(channel: str, send: Any, *args: Any) -> str:
        try:
            return f"{channel}: {send(*args)}"
        except (OSError, smtplib.SMTPException, requests.RequestException, NotifyError) as e:
            log.warning("Notification by %s failed: %s", channel, e)
            return f"{channel} failed: {e}"

    def _email(self, owner: str, message: dict[str, Any]) -> str:
        address = self.email_of(owner)
        if not self.smtp_host or not address:
            raise NotifyError("no SMTP server or no address")
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = self.sender, address, message["subject"]
        mail.set_content(message["text"])
        with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=TIMEOUT) as smtp:
            if self.smtp_starttls:
                smtp.starttls()
            if self.smtp_username:
                smtp.login(self.smtp_username, self.smtp_password)
            smtp.send_message(mail)
        return f"sent to {address}"

    def _webhook(self, url: str, message: dict[str, Any]) -> str:
        self.check_webhook(url)  # the allowed prefixes may have changed since
        body = {"text": f"{message['subject']}\n{message['text']}", **message["data"]}
        with requests.Session() as session:
            session.trust_env = False  # never the service's proxies or ~/.netrc
            r = session.post(
                url,
                data=json.dumps(body),
                headers={"Content-Type": "application/json"},
                timeout=TIMEOUT,
                allow_redirects=False,
                stream=True,  # the status is enough: no body read from a slow server
            )
            r.close()
        if r.status_code >= 300:
            raise NotifyError(f"{url} answered {r.status_code}")
        return f"posted ({r.status_code})"

    def send_later(
        self,
        owner: str,
        settings: dict[str, Any],
        message: dict[str, Any],
        then: Callable[[list[str]], None],
    ) -> None:
        """``send`` in the notifier's own thread (a slow mail server or webhook holds up no
        schedule); ``then`` gets what happened. At most ``QUEUED`` wait: more are dropped,
        said in ``then``."""
        if self._queue is None:
            self._queue = queue.Queue(QUEUED)
            threading.Thread(target=self._work, name="notifier", daemon=True).start()
        try:
            self._queue.put_nowait((owner, settings, message, then))
        except queue.Full:
            then(["not sent: too many notifications waiting"])

    def _work(self) -> None:
        assert self._queue is not None
        while True:
            owner, settings, message, then = self._queue.get()
            try:
                then(self.send(owner, settings, message))
            except Exception:  # the next one still goes
                log.exception("Notification of %s", owner)
