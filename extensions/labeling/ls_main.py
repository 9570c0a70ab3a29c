"""Runs inside Label Studio's own virtual environment (its pins clash with TensorFlow's), as
``<ls-venv>/bin/python ls_main.py serve ...`` (on Kubernetes, in the Label Studio image
``images/label-studio``); it never imports Hubforge.

``serve``: bind the port at once (answering 503 "starting"), migrate, create the admin and
its organisation (legacy tokens on), then serve Label Studio's WSGI app under a URL prefix
(the hub's proxy passes the full path; Django wants
it stripped, with static files under the prefix too). Two Hubforge routes sit in front of it:
``POST /hubforge/provision`` (the hubforge service, with the admin token, gets a hub user's own
account and organisation: users see only their projects) and ``GET /hubforge/login`` (signed
one-minute links into the UI).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import threading


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "label_studio.core.settings.label_studio")
    os.environ["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] = "true"
    import label_studio

    sys.path.insert(0, os.path.dirname(label_studio.__file__))
    import django

    django.setup()  # LABEL_STUDIO_HOST (the public URL with the prefix) makes its links
    from django.conf import settings

    if settings.FORCE_SCRIPT_NAME:  # its login redirect is absolute: keep it under the prefix
        settings.LOGIN_URL = settings.FORCE_SCRIPT_NAME + settings.LOGIN_URL


def _user_and_org(
    email: str,
    password: str | None,
    token: str | None,
    staff: bool,
    organization_of: str | None = None,
) -> dict:
    """The account ``email`` (created once) in an organisation of its own, or, with
    ``organization_of``, a member of that user's organisation (a teammate labeling their
    projects)."""
    from django.db import transaction
    from organizations.functions import create_organization
    from rest_framework.authtoken.models import Token
    from users.models import User

    with transaction.atomic():
        user = User.objects.filter(email=email).first()
        if organization_of is not None:
            owner = User.objects.filter(email=organization_of).first()
            if owner is None or owner.active_organization is None:
                raise LookupError(f"{organization_of} has no Label Studio account yet")
        if user is None:
            user = User.objects.create_user(email=email, password=password)
            user.username = email.split("@")[0]
            user.is_staff = user.is_superuser = staff
            user.save()
        elif password:
            user.set_password(password)
            user.save()
        if not user.is_active:  # shared again after a revoke
            user.is_active = True
            user.save(update_fields=["is_active"])
        if organization_of is not None and user.active_organization_id is None:
            owner.active_organization.add_user(user)
            user.active_organization = owner.active_organization
            user.save(update_fields=["active_organization"])
        if user.active_organization is None:
            org = create_organization(
                title=f"{user.username}'s projects",
                created_by=user,
                legacy_api_tokens_enabled=True,
            )
            org.jwt.legacy_api_tokens_enabled = True
            org.jwt.save()
            user.active_organization = org
            user.save(update_fields=["active_organization"])
        if token:
            Token.objects.filter(user=user).exclude(key=token).delete()
            Token.objects.get_or_create(user=user, key=token)
        key = Token.objects.get_or_create(user=user)[0].key
    return {"id": user.id, "email": user.email, "token": key}


NEXT_TASK = re.compile(r"^/api/projects/\d+/next/?$")
# Label Studio picks the next task with SELECT ... FOR UPDATE SKIP LOCKED, which SQLite
# ignores: two people asking at the same instant could both get the same item. One next-task
# request at a time closes that gap (they take milliseconds).
NEXT_TASK_LOCK = threading.Lock()


class StripPrefix:
    """WSGI middleware: /prefix/x -> SCRIPT_NAME=/prefix, PATH_INFO=/x."""

    def __init__(self, app, prefix: str):
        from urllib.parse import unquote

        self.app, self.url_prefix = app, prefix
        self.prefix = unquote(prefix)  # PATH_INFO arrives decoded

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            environ["SCRIPT_NAME"] = self.prefix
            environ["PATH_INFO"] = path[len(self.prefix) :] or "/"
        if environ.get("PATH_INFO") == "/hubforge/login":
            return login(environ, start_response, self.url_prefix)
        if environ.get("PATH_INFO") == "/hubforge/provision":
            return provision(environ, start_response)
        if environ.get("PATH_INFO", "").startswith("/react-app/") and environ["PATH_INFO"].endswith(
            ".css"
        ):
            return self.rebase_css(environ, start_response)
        if NEXT_TASK.match(environ.get("PATH_INFO", "")):
            with NEXT_TASK_LOCK:
                response = self.app(environ, start_response)
                try:
                    return [b"".join(response)]
                finally:
                    getattr(response, "close", lambda: None)()
        return self.app(environ, start_response)

    def rebase_css(self, environ, start_response):
        """The frontend's stylesheet names its fonts as /static/...: keep them under the
        prefix, or the browser asks the hub for them."""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        body = body.replace(b"url(/static/", f"url({self.url_prefix}/static/".encode())
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]


LINK_TTL_CAP = 90  # seconds: a link older than this is refused whatever its expiry says
_USED_LINKS: dict[str, int] = {}
_USED_LOCK = threading.Lock()


def _first_use(signature: str, expires: int) -> bool:
    """Sign-in links work once: True the first time ``signature`` is seen."""
    import time

    with _USED_LOCK:
        now = time.time()
        for sig, until in list(_USED_LINKS.items()):
            if until < now:
                del _USED_LINKS[sig]
        if signature in _USED_LINKS:
            return False
        _USED_LINKS[signature] = expires
        return True


def login(environ, start_response, prefix: str):
    """Signed one-minute links from the hubforge service log a user into the UI."""
    import hashlib
    import hmac
    import time
    from importlib import import_module
    from urllib.parse import parse_qs, quote

    from django.conf import settings
    from django.contrib.auth import login as django_login
    from django.core.handlers.wsgi import WSGIRequest
    from users.models import User

    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    email, expires, next_path = query.get("email", ""), query.get("exp", "0"), query.get("next")
    message = f"{email}|{expires}|{next_path}".encode()
    secret = os.environ["HUBFORGE_LS_SERVICE_KEY"].encode()
    expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
    user = User.objects.filter(email=email).first()
    now = time.time()
    valid = (
        hmac.compare_digest(expected, query.get("sig", ""))
        and expires.isdigit()
        and now <= int(expires) <= now + LINK_TTL_CAP  # whatever the link says
        and _first_use(expected, int(expires))
        and user is not None
        and next_path
        and next_path.startswith("/")
        and not next_path.startswith("//")
    )
    if not valid:
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"This Label Studio link has expired or is not valid: open it again from the hub"]
    request = WSGIRequest(environ)
    request.session = import_module(settings.SESSION_ENGINE).SessionStore()
    django_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session["last_login"] = time.time()  # its inactivity check logs out without it
    request.session.save()
    cookie = (
        f"{settings.SESSION_COOKIE_NAME}={request.session.session_key}; Path=/; HttpOnly; "
        "SameSite=Lax"
    )
    location = quote(prefix + next_path, safe="/?=&%@")
    start_response("302 Found", [("Location", location), ("Set-Cookie", cookie)])
    return [b""]


def _reply(start_response, status: str, body: dict) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [data]


def provision(environ, start_response):
    """POST {"email", "organization_of"?} with ``Authorization: Hubforge <admin token>``: the
    account (created once) as {"id", "email", "token"}; {"email", "revoke": true} disables
    a teammate's account."""
    import hmac

    if environ.get("REQUEST_METHOD") != "POST":
        return _reply(start_response, "405 Method Not Allowed", {"error": "use POST"})
    sent = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Hubforge ")
    if not hmac.compare_digest(sent.encode(), os.environ["HUBFORGE_LS_SERVICE_KEY"].encode()):
        return _reply(start_response, "403 Forbidden", {"error": "only the hubforge service"})
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(min(size, 4096)))
        email = body["email"]
        if not isinstance(email, str) or "@" not in email:
            raise ValueError(email)
    except (ValueError, KeyError, TypeError):
        return _reply(start_response, "400 Bad Request", {"error": 'send {"email": "..."}'})
    if body.get("revoke"):  # a teammate's account when sharing ends: no login, no token
        from rest_framework.authtoken.models import Token
        from users.models import User

        User.objects.filter(email=email).update(is_active=False)
        Token.objects.filter(user__email=email).delete()
        return _reply(start_response, "200 OK", {"email": email, "revoked": True})
    try:
        account = _user_and_org(email, None, None, False, body.get("organization_of"))
    except LookupError as e:
        return _reply(start_response, "409 Conflict", {"error": str(e)})
    return _reply(start_response, "200 OK", account)


class Gate:
    """The WSGI app the port serves from the first second, until Label Studio has migrated
    its database: the front page says "starting" (200, it reloads itself, and it is what the
    hub checks before it routes anything), every other path answers 503 with Retry-After.
    Then Label Studio itself. The hub starts routing at once instead of waiting."""

    MESSAGE = (
        "Label Studio is starting (its first start prepares its database and takes about a "
        "minute): try again in a few seconds"
    )

    def __init__(self, prefix: str) -> None:
        self.app = None
        self.prefix = prefix

    def __call__(self, environ, start_response):
        if self.app is not None:
            return self.app(environ, start_response)
        headers = [("Retry-After", "5"), ("Cache-Control", "no-store")]
        if environ.get("PATH_INFO", "/").rstrip("/") == self.prefix:
            body = (
                "<!doctype html><meta http-equiv='refresh' content='5'>"
                f"<title>Label Studio is starting</title><p>{self.MESSAGE}. This page reloads "
                "by itself.</p>"
            ).encode()
            start_response("200 OK", [("Content-Type", "text/html"), *headers])
            return [body]
        body = json.dumps({"status": "starting", "error": self.MESSAGE}).encode()
        start_response("503 Service Unavailable", [("Content-Type", "application/json"), *headers])
        return [body]


def listen(host: str, port: int, app) -> object:
    """Bind ``host:port`` now (before Django loads) and serve ``app`` in a thread."""
    import socketserver

    from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer

    class Handler(WSGIRequestHandler):
        """Request lines without their query strings: sign-in links carry a signature."""

        def log_message(self, format, *args):
            args = tuple(re.sub(r"\?\S*", "?…", a) if isinstance(a, str) else a for a in args)
            super().log_message(format, *args)

    server_class = type("ThreadingWSGIServer", (socketserver.ThreadingMixIn, WSGIServer), {})
    server_class.request_queue_size = 64
    server = server_class((host, port), Handler, ipv6=False)
    server.daemon_threads = True
    server.set_app(app)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def serve(args: argparse.Namespace, gate: Gate) -> None:
    from django.core.management import call_command

    call_command("migrate", "--no-color", verbosity=0)
    admin = _user_and_org(
        os.environ["HUBFORGE_LS_ADMIN_EMAIL"],
        os.environ["HUBFORGE_LS_ADMIN_PASSWORD"],
        os.environ["HUBFORGE_LS_ADMIN_TOKEN"],
        staff=True,
    )
    print(f"label studio: admin {admin['email']} ready", flush=True)
    from django.core.wsgi import get_wsgi_application

    gate.app = StripPrefix(get_wsgi_application(), args.prefix)
    print(f"label studio: ready on {args.host}:{args.port}{args.prefix}/", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--prefix", default="", help="URL prefix, e.g. /services/label-studio")
    args = parser.parse_args()
    args.prefix = args.prefix.rstrip("/")
    gate = Gate(args.prefix)
    listen(args.host, args.port, gate)
    where = f"{args.host}:{args.port}{args.prefix}/"
    print(f"label studio: listening on {where} (starting)", flush=True)
    _setup()
    serve(args, gate)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()  # the server thread serves until the process is stopped


if __name__ == "__main__":
    main()
