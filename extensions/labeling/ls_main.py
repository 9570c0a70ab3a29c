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

The rest sits beside this file, imported as sibling modules (this folder is on sys.path when
it runs as a script): ls_start.py (Django set-up, the start gate, the database's health and
template), ls_routes.py (the /hubforge/ routes and the accounts they make), ls_policy.py with
ls_rules.py (the policy middleware and its rules) and ls_files.py (local files).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading

if __package__:  # imported as hubforge.labeling.ls_main (Hubforge's own tests)
    from . import ls_policy
    from .ls_files import open_beneath as open_beneath
    from .ls_policy import POLICY, _enforce_organisations
    from .ls_routes import _user_and_org, cookie_path, login, provision, storage
    from .ls_start import (
        Gate,
        _setup,
        back_up_and_exit,
        database_problem,
        make_template,
        seed_from_template,
    )
else:  # run as a script in Label Studio's environment: the siblings are on sys.path
    import ls_policy
    from ls_files import open_beneath as open_beneath
    from ls_policy import POLICY, _enforce_organisations
    from ls_routes import _user_and_org, cookie_path, login, provision, storage
    from ls_start import (
        Gate,
        _setup,
        back_up_and_exit,
        database_problem,
        make_template,
        seed_from_template,
    )


NEXT_TASK = re.compile(r"^/api/projects/\d+/next/?$")
# Label Studio picks the next task with SELECT ... FOR UPDATE SKIP LOCKED, which SQLite
# ignores: two people asking at the same instant could both get the same item. One next-task
# request at a time closes that gap (they take milliseconds).
NEXT_TASK_LOCK = threading.Lock()


ANNOTATE = re.compile(r"^/api/tasks/(\d+)/annotations/?$")
_task_locks: dict[int, threading.Lock] = {}
_task_locks_guard = threading.Lock()


def _hubforge_ids(body) -> set[str]:
    """The ids Hubforge's journal gives the result items of one annotation (hf<uid><i>)."""
    result = body.get("result") if isinstance(body, dict) else None
    return {
        r["id"]
        for r in result or []
        if isinstance(r, dict) and isinstance(r.get("id"), str) and r["id"].startswith("hf")
    }


def create_annotation_once(app, environ, start_response, task_id: int):
    """POST /api/tasks/<id>/annotations/ carrying Hubforge result ids, exactly once: creates
    on one task run one at a time, and a create whose ids are already saved (a retry after
    a lost answer, or one sent while the first was still being served) answers the saved
    annotation instead of adding a second (PolicyMiddleware answers it, after the policy)."""
    import io

    size = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(size) if size else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        ids = _hubforge_ids(json.loads(raw)) if raw else set()
    except (ValueError, RecursionError):  # deep nesting: Label Studio answers it
        ids = set()
    if not ids:
        return app(environ, start_response)
    with _task_locks_guard:
        lock = _task_locks.setdefault(task_id, threading.Lock())
    with lock:
        from tasks.models import Annotation

        for annotation in Annotation.objects.filter(task_id=task_id):
            saved = {r.get("id") for r in annotation.result or [] if isinstance(r, dict)}
            if ids & saved:
                # answered by PolicyMiddleware, only to an account the policy lets through
                environ["hubforge.saved_annotation"] = (task_id, annotation.id)
                break
        response = app(environ, start_response)
        try:
            return [b"".join(response)]  # served completely while the lock is held
        finally:
            getattr(response, "close", lambda: None)()


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
        if environ.get("PATH_INFO") == "/hubforge/storage":
            return storage(environ, start_response)
        if environ.get("PATH_INFO", "").startswith("/react-app/") and environ["PATH_INFO"].endswith(
            ".css"
        ):
            return self.rebase_css(environ, start_response)
        annotate = ANNOTATE.match(environ.get("PATH_INFO", ""))
        if annotate and environ.get("REQUEST_METHOD") == "POST":
            return create_annotation_once(self.app, environ, start_response, int(annotate[1]))
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
        adopt=True,
    )
    print(f"label studio: admin {admin['email']} ready", flush=True)
    from django.core.wsgi import get_wsgi_application

    _enforce_organisations()
    from django.conf import settings

    # the policy sees the view Django resolved and the account it authenticated
    sys.modules.setdefault("hubforge_ls_policy", ls_policy)
    if POLICY not in settings.MIDDLEWARE:
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, POLICY]
    # its cookies go to Label Studio only, never to users' servers on the same origin
    settings.SESSION_COOKIE_PATH = settings.CSRF_COOKIE_PATH = cookie_path(args.prefix)
    gate.app = StripPrefix(get_wsgi_application(), args.prefix)
    print(f"label studio: ready on {args.host}:{args.port}{args.prefix}/", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("template", help="migrate the database every first start copies (set-up)")
    s = sub.add_parser("serve")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--prefix", default="", help="URL prefix, e.g. /services/label-studio")
    args = parser.parse_args()
    if args.command == "template":
        print(f"label studio: migrated database template {make_template()}", flush=True)
        return
    args.prefix = args.prefix.rstrip("/")
    gate = Gate(args.prefix)
    listen(args.host, args.port, gate)
    where = f"{args.host}:{args.port}{args.prefix}/"
    print(f"label studio: listening on {where} (starting)", flush=True)
    if seed_from_template():
        print("label studio: first start, from the migrated template", flush=True)
    gate.damaged = database_problem()
    if gate.damaged:  # no crash loop: it stays up and says what to do
        print(f"label studio: {gate.damaged}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
        return
    _setup()
    serve(args, gate)
    signal.signal(signal.SIGTERM, back_up_and_exit)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()  # the server thread serves until the process is stopped


if __name__ == "__main__":
    main()
