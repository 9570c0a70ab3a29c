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
import html
import json
import os
import re
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote


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


MADE_BY_HUBFORGE = "hubforge-accounts"  # the Django group of the accounts Hubforge made


class NotHubforges(LookupError):
    """An account with that e-mail exists, made by someone else (Label Studio's API or UI)."""


def _user_and_org(
    email: str,
    password: str | None,
    token: str | None,
    staff: bool,
    organization_of: str | None = None,
    adopt: bool = False,
) -> dict:
    """The account ``email`` (created once) in an organisation of its own, or, with
    ``organization_of``, a member of that user's organisation (a teammate labeling their
    projects). Accounts made here join the MADE_BY_HUBFORGE group (nothing in Label
    Studio's API can change groups); an existing account outside it is refused
    (NotHubforges), unless ``adopt`` (the configured admin)."""
    from django.contrib.auth.models import Group
    from django.db import transaction
    from organizations.functions import create_organization
    from rest_framework.authtoken.models import Token
    from users.models import User

    with transaction.atomic():
        made_here = Group.objects.get_or_create(name=MADE_BY_HUBFORGE)[0]
        user = User.objects.filter(email=email).first()
        if user is not None and not adopt and not user.groups.filter(pk=made_here.pk).exists():
            raise NotHubforges(
                f"a Label Studio account {email} exists that Hubforge did not make: an "
                "administrator must remove it before this hub user can label"
            )
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
        user.groups.add(made_here)
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


BIND_COOKIE = "hubforge-ls-bind"  # set by the user's server with the link (labeling/server.py)
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


def cookie_path(prefix: str) -> str:
    """Label Studio's own path on the hub's origin: its session and CSRF cookies go there
    and nowhere else (users' servers share the origin and would be sent them)."""
    from urllib.parse import quote

    return quote(prefix.rstrip("/"), safe="/@%") + "/"


def login(environ, start_response, prefix: str):
    """Signed one-minute links from the hubforge service log a user into the UI."""
    import hashlib
    import hmac
    import time
    from http.cookies import CookieError, SimpleCookie
    from importlib import import_module
    from urllib.parse import parse_qs, quote

    from django.conf import settings
    from django.contrib.auth import login as django_login
    from django.core.handlers.wsgi import WSGIRequest
    from users.models import User

    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    email, expires, next_path = query.get("email", ""), query.get("exp", "0"), query.get("next")
    bind = query.get("bind", "")
    message = f"{email}|{expires}|{next_path}|{bind}".encode()
    cookies = SimpleCookie()
    with contextlib.suppress(CookieError):
        cookies.load(environ.get("HTTP_COOKIE", ""))
    nonce = cookies[BIND_COOKIE].value if BIND_COOKIE in cookies else ""
    held = hashlib.sha256(nonce.encode()).hexdigest()
    secret = os.environ["HUBFORGE_LS_SERVICE_KEY"].encode()
    expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
    user = User.objects.filter(email=email).first()
    now = time.time()
    valid = (
        hmac.compare_digest(expected, query.get("sig", ""))
        and expires.isdigit()
        and now <= int(expires) <= now + LINK_TTL_CAP  # whatever the link says
        and bind != ""
        and hmac.compare_digest(held, bind)  # the browser that asked for it, no other
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
    name = settings.SESSION_COOKIE_NAME
    cookie = (
        f"{name}={request.session.session_key}; Path={cookie_path(prefix)}; HttpOnly; SameSite=Lax"
    )
    location = quote(prefix + next_path, safe="/?=&%@")
    used = f"{BIND_COOKIE}=; Path={quote(prefix, safe='/@%')}/hubforge/login; Max-Age=0"
    old = f"{name}=; Path=/; Max-Age=0"  # one of an earlier version, sent to every path
    headers = [("Location", location), ("Set-Cookie", old), ("Set-Cookie", cookie)]
    start_response("302 Found", [*headers, ("Set-Cookie", used)])
    return [b""]


def _reply(start_response, status: str, body: dict) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [data]


def _service_body(environ, start_response):
    """The JSON body of a request from the hubforge service (its key), or a reply refusing
    it: (body, None) or (None, reply)."""
    import hmac

    if environ.get("REQUEST_METHOD") != "POST":
        return None, _reply(start_response, "405 Method Not Allowed", {"error": "use POST"})
    sent = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Hubforge ")
    if not hmac.compare_digest(sent.encode(), os.environ["HUBFORGE_LS_SERVICE_KEY"].encode()):
        return None, _reply(start_response, "403 Forbidden", {"error": "only the hubforge service"})
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(min(size, 65536)))
        if not isinstance(body, dict):
            raise ValueError(body)
    except (ValueError, TypeError):
        return None, _reply(start_response, "400 Bad Request", {"error": "send a JSON object"})
    return body, None


def storage(environ, start_response):
    """POST {"project", "path"} from the hubforge service (which checked that the caller owns
    the project and the folder): a local-files storage, made once. Accounts cannot make
    storages themselves (the policy refuses them)."""
    body, refused = _service_body(environ, start_response)
    if refused:
        return refused
    from django.conf import settings
    from io_storages.localfiles.models import LocalFilesImportStorage
    from projects.models import Project

    project, path = body.get("project"), body.get("path")
    root = os.path.realpath(settings.LOCAL_FILES_DOCUMENT_ROOT)
    if not isinstance(project, int) or not isinstance(path, str):
        return _reply(start_response, "400 Bad Request", {"error": 'send {"project", "path"}'})
    real = os.path.realpath(path)
    # a user's area is closed to Label Studio's own account (the hubforge service, root,
    # checked that folder for the caller); anything else must be a folder it sees
    theirs = os.environ.get("HUBFORGE_HELPER_SOCKET") and real.startswith(
        os.path.join(root, "users") + os.sep
    )
    if real != path or not real.startswith(root + os.sep) or not (theirs or os.path.isdir(real)):
        return _reply(
            start_response, "400 Bad Request", {"error": f"{path}: not a folder in {root}"}
        )
    if not Project.objects.filter(pk=project).exists():
        return _reply(start_response, "404 Not Found", {"error": f"no project {project}"})
    made, _ = LocalFilesImportStorage.objects.get_or_create(
        project_id=project, path=real, defaults={"title": real[-50:], "use_blob_urls": False}
    )
    return _reply(start_response, "200 OK", {"id": made.id, "path": made.path})


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
        # "made_by_hubforge": the service's own records name this account as one it made
        # (an account of an earlier version, before MADE_BY_HUBFORGE existed)
        vouched = body.get("made_by_hubforge") is True
        account = _user_and_org(email, None, None, False, body.get("organization_of"), vouched)
    except LookupError as e:
        return _reply(start_response, "409 Conflict", {"error": str(e)})
    return _reply(start_response, "200 OK", account)


# -- the policy layer -----------------------------------------------------------------------
# Label Studio Community runs one organisation and lets any account reach any project's tasks,
# annotations and files. The policy is Django middleware (PolicyMiddleware, last in
# settings.MIDDLEWARE): it decides in process_view, on the view Django resolved for the
# request (never on the path's text) and on every account the view could act as (the
# session's user and an `Authorization: Token` header's, authenticated as DRF would). An
# account reaches only the projects of its own organisation (a hub user's own, or, for a
# teammate's account, the owner's that shared with them); the Hubforge admin (staff: the
# hubforge service) reaches everything. A view the policy does not know is refused.

QUERY_KEYS = {
    "project": "project",
    "task": "task",
    "view": "view",
    "view_id": "view",
    "annotation": "annotation",
}
BODY_KEYS = {"project": "project", "task": "task", "view": "view"}
READ = frozenset({"GET", "HEAD", "OPTIONS"})
USER_FIELDS = {
    "first_name",
    "last_name",
    "username",
    "phone",
    "allow_newsletters",
    "custom_hotkeys",
}
STORAGES_BY_HUBFORGE = "storages are made by Hubforge (labeling.import_items), not by accounts"


class Rule(NamedTuple):
    """What an account may do with one view. ``kind``: "public" (anyone, credentials not
    looked at), "account" (the account's own things, or nothing of a project), "objects"
    (the URL's ``objects`` kwargs name objects of the account's projects), "list" (must be
    narrowed to one of its projects), "user"/"org" (the URL names the account itself / its
    organisation), "upload", "storage-data", "local-files", "storages" (accounts never
    write them). ``methods``: the only ones allowed (None: any)."""

    kind: str
    methods: frozenset | None = None
    objects: tuple[tuple[str, str], ...] = ()
    why: str = ""


def _rules() -> dict[str, Rule]:
    public = Rule("public")
    account = Rule("account")
    read_only = Rule("account", READ)
    project = Rule("objects", objects=(("pk", "project"),))
    task = Rule("objects", objects=(("pk", "task"),))
    rules = {
        # pages and files that hold nothing of a project
        "main": public,
        "django.views.static.serve": public,
        "core.views.serve_file": public,
        "core.utils.static_serve.serve": public,
        "django.views.generic.base.RedirectView": public,
        # versions (and the git commit of the folder it runs in) only for signed-in accounts
        "version": Rule("signed-in"),
        "api-version": Rule("signed-in"),
        "health": public,
        "static_time_series": public,
        "samples_paragraphs": public,
        "user-login": public,
        "user-signup": public,
        "logout": public,
        "rest_framework:login": public,
        "rest_framework:logout": public,
        "schema": public,
        "swagger-ui": public,
        "redoc": public,
        "schema-json": public,
        "schema-yaml": public,
        "schema-swagger-ui": public,
        "docs-api": public,
        "docs-redirect": public,
        "feature_flags": public,
        "heidi_tips": public,
        "collect_metrics": public,
        "webhooks:api:webhook-info": public,
        "projects:api:label-config-validate": public,
        "projects:api-templates:template-list": Rule("public", READ),
        "api-root": Rule("public", READ),
        "data_manager:api:api-root": Rule("public", READ),
        "tasks:api-predictions:api-root": Rule("public", READ),
        "labels_manager:api-labels:api-root": Rule("public", READ),
        "organizations:organization-simple": account,
        "organizations:organization-simple-webhooks": account,
        "organizations:organization-index": account,
        "organizations:models": account,
        "projects:project-index": account,
        "user-account": account,
        "user-account-anything": account,
        # the account itself
        "current-user-reset-token": account,
        "current-user-token": account,
        "current-user-whoami": account,
        "product-tour": account,
        "current-user-hotkeys": account,
        "jwt_auth:token_manage": account,
        "jwt_auth:token_refresh": account,
        "jwt_auth:token_blacklist": account,
        "jwt_auth:token_rotate": account,
        "user-detail": Rule("user"),
        "user-avatar": Rule("user"),
        # lists Label Studio keeps to the account's organisation itself; nobody writes them
        "user-list": Rule("account", READ, why="accounts are made by Hubforge, not by accounts"),
        "organizations:api:organization-list": read_only,
        "organizations:api:organization-detail": Rule("org", READ),
        "organizations:api:organization-memberships-list": Rule("org", READ),
        "organizations:api:organization-membership-detail": Rule("org", READ),
        "jwt_auth:api-jwt-settings": Rule("account", READ),
        "session_policy:session-policy": Rule("account", READ),
        "projects:api:project-list": account,
        "projects:api:project-counts-list": read_only,
        # one project
        "projects:project-settings": project,
        "projects:project-settings-anything": project,
        "projects:api:project-detail": project,
        "projects:api:project-next": project,
        "projects:api:label-stream-history": project,
        "projects:api:project-label-config-validate": project,
        "projects:api:project-summary": project,
        "projects:api:project-summary-reset": project,
        "projects:api:project-imports": project,
        "projects:api:project-reimports": project,
        "projects:api:project-tasks-list": project,
        "projects:api:project-sample-task": project,
        "projects:api:project-model-versions": project,
        "projects:api:project-annotators": project,
        "data_import:api-projects:project-tasks-bulk-upload": project,
        "data_import:api-projects:project-import": project,
        "data_import:api-projects:project-import-predictions": project,
        "data_import:api-projects:project-reimport": project,
        "data_import:api-projects:project-file-upload-list": project,
        "data_manager:project-data": project,
        "data_manager:project-import": project,
        "data_manager:project-export": project,
        "data_export:api-projects:project-export": project,
        "data_export:api-projects:project-export-formats": project,
        "data_export:api-projects:project-export-files": project,
        "data_export:api-projects:project-exports-list": project,
        "data_export:api-projects:project-exports-detail": project,
        "data_export:api-projects:project-exports-download": project,
        "data_export:api-projects:project-exports-convert": project,
        "storages:project-storage-data-resolve": Rule(
            "objects", objects=(("project_id", "project"),)
        ),
        "storages:project-storage-data-presign": Rule(
            "objects", objects=(("project_id", "project"),)
        ),
        # objects of a project
        "tasks:api:task-detail": task,
        "tasks:api:task-annotations": task,
        "tasks:api:task-drafts": task,
        "tasks:api:task-annotations-drafts": Rule(
            "objects", objects=(("pk", "task"), ("annotation_id", "annotation"))
        ),
        "tasks:api:task-agreement": task,
        "storages:task-storage-data-resolve": Rule("objects", objects=(("task_id", "task"),)),
        "storages:task-storage-data-presign": Rule("objects", objects=(("task_id", "task"),)),
        "tasks:api-annotations:annotation-detail": Rule("objects", objects=(("pk", "annotation"),)),
        "tasks:api-annotations:annotation-convert-to-draft": Rule(
            "objects", objects=(("pk", "annotation"),)
        ),
        "tasks:api-drafts:draft-detail": Rule("objects", objects=(("pk", "draft"),)),
        "tasks:api-predictions:prediction-detail": Rule("objects", objects=(("pk", "prediction"),)),
        "data_manager:api:view-detail": Rule("objects", objects=(("pk", "view"),)),
        "data_import:api:file-upload-detail": Rule("objects", objects=(("pk", "upload"),)),
        # lists across projects: narrowed to one of the account's
        "tasks:api:task-list": Rule("list"),
        "tasks:api-predictions:prediction-list": Rule("list"),
        "data_manager:api:view-list": Rule("list"),
        "ml:api:ml-list": Rule("list", READ),
        "webhooks:api:webhook-list": Rule("list", READ),
        # the data manager names its project in the query or the body
        "data_manager:api:view-reset": account,
        "data_manager:api:view-update-order": account,
        "data_manager:dm-columns": account,
        "data_manager:dm-project": account,
        "data_manager:dm-actions": account,
        "data_manager:dm-actions-form": account,
        # files
        "data_import:data-upload": Rule("upload", READ),
        "data_import:storage-data-upload": Rule("storage-data", READ),
        "storages:localfiles_data": Rule("local-files", READ),
    }
    return rules


RULES: dict[str, Rule] = _rules()
# storage routes: accounts may read the lists of their projects' storages and the forms
STORAGE_LIST = re.compile(r"^storages:api:(?:export-)?storage(?:-[a-z]+)?-list$")
STORAGE_FORM = re.compile(r"^storages:api:(?:export-)?storage(?:-[a-z]+-form|-types)$")


def rule_for(view_name: str) -> Rule | None:
    """The policy's rule for a resolved view (None: not one accounts may use)."""
    if view_name in RULES:
        return RULES[view_name]
    if STORAGE_FORM.match(view_name):
        return Rule("public", READ)
    if STORAGE_LIST.match(view_name):
        return Rule("list", READ, why=STORAGES_BY_HUBFORGE)
    if view_name.startswith("storages:api:"):
        return Rule("storages", frozenset(), why=STORAGES_BY_HUBFORGE)
    return None


# What the policy looks up for every request, kept in memory: objects never change project
# and ids are never reused (AUTOINCREMENT), so a found answer stays true; callers are kept
# for CALLER_TTL seconds (Label Studio checks the credentials again itself, so a token revoked
# meanwhile is still refused). The policy's share of a next-item request: 14 % -> 0.2 % (p50).
CALLER_TTL = 30.0
_PROJECT_OF: dict[tuple[str, int], int] = {}
_ORG_OF: dict[int, int] = {}
_CALLERS: dict[str, tuple[float, Any]] = {}


class Caller(NamedTuple):
    id: int
    org: int | None
    staff: bool


class Refused(Exception):
    """The request may not pass: 403 with why."""


def _remember(cache: dict, key: Any, value: Any) -> Any:
    if len(cache) > 50_000:  # a scan of ids: start over rather than grow without end
        cache.clear()
    cache[key] = value
    return value


def _org_of(project_id: int) -> int | None:
    if project_id not in _ORG_OF:
        from projects.models import Project

        org = Project.objects.filter(pk=project_id).values_list("organization_id", flat=True)
        found = org.first()
        if found is None:
            return None
        _remember(_ORG_OF, project_id, found)
    return _ORG_OF[project_id]


def _project_of(kind: str, pk: int):
    if kind == "project":
        return pk
    if (kind, pk) not in _PROJECT_OF:
        found = _look_up_project_of(kind, pk)
        if found is None:
            return None
        _remember(_PROJECT_OF, (kind, pk), found)
    return _PROJECT_OF[(kind, pk)]


def _look_up_project_of(kind: str, pk: int):
    from data_import.models import FileUpload
    from data_manager.models import View
    from tasks.models import Annotation, AnnotationDraft, Prediction, Task

    lookups = {
        "project": lambda: pk,
        "task": lambda: Task.objects.filter(pk=pk).values_list("project_id", flat=True).first(),
        "annotation": lambda: (
            Annotation.objects.filter(pk=pk).values_list("task__project_id", flat=True).first()
        ),
        "prediction": lambda: (
            Prediction.objects.filter(pk=pk).values_list("task__project_id", flat=True).first()
        ),
        "draft": lambda: (
            AnnotationDraft.objects.filter(pk=pk).values_list("task__project_id", flat=True).first()
        ),
        "view": lambda: View.objects.filter(pk=pk).values_list("project_id", flat=True).first(),
        "upload": lambda: (
            FileUpload.objects.filter(pk=pk).values_list("project_id", flat=True).first()
        ),
    }
    return lookups[kind]()


def _cookie_refusal(request) -> str | None:
    """Why the session cookie cannot be read unambiguously (None: it can): Django and the
    standard library must find the same session, and the header must name it once."""
    from http.cookies import CookieError, SimpleCookie

    from django.conf import settings

    header = request.META.get("HTTP_COOKIE", "")
    name = settings.SESSION_COOKIE_NAME
    if name not in header:
        return None
    named = [p for p in header.split(";") if p.partition("=")[0].strip() == name]
    stdlib = SimpleCookie()
    try:
        stdlib.load(header)
    except CookieError:
        stdlib = SimpleCookie()
    theirs = stdlib[name].value if name in stdlib else None
    if len(named) > 1 or theirs != request.COOKIES.get(name):
        return (
            "this request's Cookie header cannot be read unambiguously (a malformed item or "
            f"two {name} cookies): clear this site's cookies and sign in again from the hub"
        )
    return None


def _token_caller(header: str) -> Caller | None:
    """The account of an `Authorization: Token <key>` header, authenticated as Label
    Studio's DRF TokenAuthentication does (None: no such active account, which Label Studio
    answers with 401 itself). Refused: any other scheme, or a header DRF cannot read."""
    import time

    from rest_framework.authtoken.models import Token

    parts = header.encode("iso-8859-1", "replace").split()
    if not parts or parts[0].lower() != b"token":
        raise Refused("only legacy tokens (Authorization: Token ...) are accepted here")
    if len(parts) != 2:
        raise Refused("malformed Authorization header: send 'Authorization: Token <key>'")
    try:
        key = parts[1].decode()
    except UnicodeError:
        raise Refused("malformed Authorization header: the token is not text") from None
    cached = _CALLERS.get("token " + key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    token = Token.objects.select_related("user").filter(key=key).first()
    user = token.user if token is not None and token.user.is_active else None
    if user is not None and user.active_organization_id is not None:
        with contextlib.suppress(Exception):  # legacy tokens turned off: Label Studio's 401
            if not user.active_organization.jwt.legacy_api_tokens_enabled:
                user = None
    return _caller("token " + key, user)


def _callers(request) -> list[Caller]:
    """Every account the resolved view could act as: an `Authorization: Token` header's
    (DRF views) and the session's or JWT middleware's ``request.user`` (every view)."""
    import time

    refusal = _cookie_refusal(request)
    if refusal:
        raise Refused(refusal)
    callers = []
    header = request.META.get("HTTP_AUTHORIZATION")
    if header is not None:
        found = _token_caller(header)
        if found is not None:
            callers.append(found)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        cached = _CALLERS.get(f"user {user.id}")
        if cached and cached[0] > time.monotonic():
            callers.append(cached[1])
        else:
            callers.append(_caller(f"user {user.id}", user))
    return callers


def _caller(key: str, user) -> Caller | None:
    """The policy's view of ``user`` (None: unknown credentials, not kept): its active
    organisation only while it is a member of it."""
    import time

    from organizations.models import OrganizationMember

    if user is None:
        return None
    org = user.active_organization_id
    if org is not None:
        member = OrganizationMember.objects.filter(
            user_id=user.id, organization_id=org, deleted_at__isnull=True
        )
        org = org if member.exists() else None
    caller = Caller(user.id, org, user.is_staff or user.is_superuser)
    _remember(_CALLERS, key, (time.monotonic() + CALLER_TTL, caller))
    return caller


def _ids(values) -> list[int]:
    out = []
    for value in values if isinstance(values, list) else [values]:
        for part in str(value).split(","):
            if part.strip().isdigit():
                out.append(int(part))
            elif part.strip():
                raise ValueError(part)
    return out


def _json_body(request):
    """The request's JSON object, when it sends one (Django keeps the bytes for the view)."""
    if request.method not in ("POST", "PUT", "PATCH") or "json" not in request.content_type:
        return None
    try:
        return json.loads(request.body) if request.body else None
    except (ValueError, RecursionError):
        return None  # Label Studio answers the bad body itself


FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def _body_fields(request) -> list[dict] | None:
    """The fields of every object the body sends, read as Label Studio's parsers read it
    (JSON: an object or a list of them; a form; multipart form data): [] without a body,
    None for a body DRF would parse but this policy cannot (refused)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return []
    kind = request.content_type or ""
    if "json" in kind:
        body = _json_body(request)
        items = body if isinstance(body, list) else [body]
        return [item for item in items if isinstance(item, dict)]
    if kind == FORM:
        from django.http import QueryDict

        form = request.POST if request.method == "POST" else QueryDict(request.body)
        return [{key: form.getlist(key) for key in form}]
    if kind == MULTIPART:
        if request.method != "POST":
            return None  # Django parses multipart for POST only: not read here, refused
        return [{key: request.POST.getlist(key) for key in request.POST}]
    return []  # Label Studio's parsers refuse any other type (415)


def view_refusal(request, view_name: str, kwargs: dict, caller: Caller) -> str | None:
    """Why ``caller`` may not use this view (None: it may)."""
    if caller.staff:
        return None
    rule = rule_for(view_name)
    method = request.method
    if rule is None:
        return f"{request.path_info} is not a route Hubforge lets accounts use"
    if rule.methods is not None and method not in rule.methods:
        return (
            rule.why or f"{method} {request.path_info} is not for accounts (Hubforge's admin only)"
        )
    org = caller.org

    def mine(project_id) -> bool:
        return project_id is not None and org is not None and _org_of(project_id) == org

    if rule.kind == "public":
        return None
    if rule.kind == "local-files":
        return None  # served by local_file() below, which checks the file itself
    if rule.kind == "upload":
        from data_import.models import FileUpload

        name = "upload/" + str(kwargs.get("filename", ""))
        owner = FileUpload.objects.filter(file=name).values_list("project_id", flat=True).first()
        return None if mine(owner) else "no such upload in your projects"
    if rule.kind == "storage-data":
        from django.conf import settings

        path = request.GET.get("filepath", "")
        if path.startswith(settings.AVATAR_PATH + "/") and ".." not in path.split("/"):
            return None  # Label Studio shows avatars of the account's organisation only
        from data_import.models import FileUpload

        owner = FileUpload.objects.filter(file=path).values_list("project_id", flat=True).last()
        return None if mine(owner) else "no such upload in your projects"
    if rule.kind == "user":
        if str(kwargs.get("pk")) != str(caller.id):
            return "not your user"
        if method not in READ:  # not active_organization: that would join any organisation
            body = _json_body(request)
            if not isinstance(body, dict) or set(body) - USER_FIELDS:
                return f"send JSON with only {', '.join(sorted(USER_FIELDS))}"
    if rule.kind == "org" and str(kwargs.get("pk")) != str(org):
        return "not your organization"
    for name, kind in rule.objects:
        value = str(kwargs.get(name, ""))
        if not value.isdigit() or not mine(_project_of(kind, int(value))):
            return f"{kind} {value} is not in your projects"
    try:
        narrowed = False
        for key, kind in QUERY_KEYS.items():
            for pk in _ids(request.GET.getlist(key)):
                narrowed = True
                if not mine(_project_of(kind, pk)):
                    return f"{kind} {pk} is not in your projects"
        fields = _body_fields(request)
        if fields is None:
            return "send JSON, a form or multipart form data this policy can read"
        for body in fields:
            for key, kind in BODY_KEYS.items():
                if key in body and body[key] is not None:
                    for pk in _ids(body[key]):
                        narrowed = True
                        if not mine(_project_of(kind, pk)):
                            return f"{kind} {pk} is not in your projects"
    except ValueError:
        return "project, task and view must be numbers"
    if rule.kind == "list" and not narrowed:
        return "name one of your projects (?project=ID)"
    return None


# -- local files ----------------------------------------------------------------------------
# Label Studio's own view compares the path's text with a storage and then follows links as
# the (root) server. Hubforge serves them itself: only a file inside a local-files storage of
# a project every caller may reach, opened one component at a time relative to the one above
# with O_NOFOLLOW (no link at any level, below the configured document root), a regular file
# only, and, when Label Studio runs as root on Linux, with the file-system identity of the
# account owning the storage's area (users/<name>), in this serving thread only.

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
_FILE = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
NO_FILE = "no such file in your projects"


def _parts(relative: str) -> list[str] | None:
    """The components of a relative path; None for one that climbs ('..') or holds NUL."""
    if "\x00" in relative:
        return None
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    return None if ".." in parts else parts


def _storage_parts(caller_orgs: list[int | None], root: str) -> list[list[str]]:
    """The storage roots (components below ``root``) of the projects every caller reaches."""
    from io_storages.localfiles.models import LocalFilesImportStorage

    storages = LocalFilesImportStorage.objects.all()
    for org in caller_orgs:
        storages = storages.filter(project__organization_id=org)
    out = []
    for path in storages.values_list("path", flat=True):
        path = os.path.normpath(path)
        if path.startswith(root + os.sep):
            parts = _parts(path[len(root) + 1 :])
            if parts:
                out.append(parts)
    return out


class _FsIdentity:
    """setfsuid/setfsgid (and no supplementary groups) for the calling thread only, as long
    as the ``with`` lasts; a no-op unless this process runs as root on Linux. The kernel
    clears the file-access capabilities while the fsuid is not 0."""

    SETGROUPS = {"x86_64": 116, "aarch64": 159, "ppc64le": 81, "s390x": 206}

    def __init__(self, uid: int, gid: int):
        self.uid, self.gid = uid, gid
        self.active = sys.platform.startswith("linux") and os.geteuid() == 0 and uid != 0

    def _libc(self):
        import ctypes
        import ctypes.util
        import platform

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.setfsuid.argtypes = [ctypes.c_uint32]
        libc.setfsgid.argtypes = [ctypes.c_uint32]
        number = self.SETGROUPS.get(platform.machine())
        if number is None:
            raise OSError(f"setgroups: unknown syscall number on {platform.machine()}")
        return ctypes, libc, number

    def _setgroups(self, groups: list[int]) -> None:
        ctypes, libc, number = self._libc()
        array = (ctypes.c_uint32 * max(len(groups), 1))(*groups)
        # the raw syscall changes this thread only (glibc's setgroups() changes every thread)
        if libc.syscall(ctypes.c_long(number), ctypes.c_long(len(groups)), array) != 0:
            raise OSError(ctypes.get_errno(), "setgroups")

    def __enter__(self):
        if not self.active:
            return self
        _, libc, _ = self._libc()
        self.groups = os.getgroups()
        self._setgroups([])
        libc.setfsgid(self.gid)
        libc.setfsuid(self.uid)
        # both return the previous value; asking with an invalid id reads the current one
        if libc.setfsuid(0xFFFFFFFF) != self.uid or libc.setfsgid(0xFFFFFFFF) != self.gid:
            self.__exit__()
            raise OSError("could not take the storage owner's file-system identity")
        return self

    def __exit__(self, *exc):
        if not self.active:
            return
        _, libc, _ = self._libc()
        libc.setfsuid(0)
        libc.setfsgid(os.getegid())
        self._setgroups(self.groups)
        if libc.setfsuid(0xFFFFFFFF) != 0:  # never serve the next request as someone else
            os._exit(70)


def open_beneath(root: str, parts: list[str], area: int) -> int:
    """A descriptor of the regular file ``root``/``parts``, every component opened relative
    to the one above without following a link; the first ``area`` components (users/<name>,
    or datasets) as this process, the rest as the owner of that area folder."""
    import stat

    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for part in parts[:area]:
            fds.append(os.open(part, _DIRECTORY, dir_fd=fds[-1]))
        owner = os.fstat(fds[-1])
        with _FsIdentity(owner.st_uid, owner.st_gid):
            for part in parts[area:-1]:
                fds.append(os.open(part, _DIRECTORY, dir_fd=fds[-1]))
            fd = os.open(parts[-1], _FILE, dir_fd=fds[-1])
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IsADirectoryError(parts[-1])
        return fd
    finally:
        for fd in fds:
            os.close(fd)


def open_storage_file(root: str, parts: list[str], area: int) -> int:
    """A descriptor of the storage file ``root``/``parts``. With per-user accounts Label
    Studio runs as its own unprivileged account: a file of a user's area comes from the
    workbench's privileged helper (HUBFORGE_HELPER_SOCKET), opened by a process running as
    that user, without following links; everything else is opened here (open_beneath)."""
    helper = os.environ.get("HUBFORGE_HELPER_SOCKET")
    if helper and parts[0] == "users":
        return _open_through_helper(helper, "/".join(parts))
    return open_beneath(root, parts, area)


def _open_through_helper(path: str, relative: str) -> int:
    import socket
    import time

    for attempt in range(20):  # a busy helper (its backlog full) is asked again shortly
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(30)
                conn.connect(path)
                conn.sendall((json.dumps({"open": relative}) + "\n").encode())
                message, fds, _, _ = socket.recv_fds(conn, 65536, 1)
            break
        except (BlockingIOError, ConnectionRefusedError):
            if attempt == 19:
                raise
            time.sleep(0.05 * (attempt + 1))
    try:
        reply = json.loads(message or b"{}")
    except ValueError:
        reply = {}
    if not reply.get("ok") or not fds:
        for fd in fds:
            os.close(fd)
        raise PermissionError(reply.get("error") or "the helper did not answer")
    return fds[0]


def local_file(request, callers: list[Caller]):
    """Label Studio's /data/local-files/?d=<path below the document root>, served safely."""
    import mimetypes

    from django.conf import settings
    from django.http import HttpResponseNotModified, JsonResponse
    from ranged_fileresponse import RangedFileResponse

    def refuse(why: str = NO_FILE):
        return JsonResponse({"detail": why}, status=403)

    if not settings.LOCAL_FILES_SERVING_ENABLED:
        return refuse("local files are not served here")
    if not callers:
        return refuse("sign in first")
    parts = _parts(request.GET.get("d", ""))
    if not parts:
        return refuse()
    root = os.path.realpath(settings.LOCAL_FILES_DOCUMENT_ROOT)
    orgs = [c.org for c in callers if not c.staff]  # staff: every storage
    inside = [s for s in _storage_parts(orgs, root) if len(parts) > len(s) and parts[: len(s)] == s]
    if not inside:
        return refuse()
    area = 2 if parts[0] == "users" else 1  # users/<name>, datasets, ...
    try:
        fd = open_storage_file(root, parts, min(area, len(parts) - 1))
    except OSError:
        return refuse()
    handle = os.fdopen(fd, "rb")
    info = os.fstat(fd)
    etag = f'W/"{info.st_mtime_ns:x}-{info.st_size:x}"'
    wanted = [e.strip() for e in request.META.get("HTTP_IF_NONE_MATCH", "").split(",")]
    if etag in wanted or "*" in wanted:
        handle.close()
        response = HttpResponseNotModified()
        response["ETag"] = etag
        return response
    kind = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    response = RangedFileResponse(request, handle, content_type=kind)
    response["ETag"] = etag
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"  # a stored page runs nothing in our origin
    return response


def _saved_annotation(annotation_id: int):
    from django.http import HttpResponse
    from tasks.models import Annotation
    from tasks.serializers import AnnotationSerializer

    annotation = Annotation.objects.get(pk=annotation_id)
    data = json.dumps(AnnotationSerializer(annotation).data, default=str)
    return HttpResponse(data, status=201, content_type="application/json")


POLICY = "hubforge_ls_policy.PolicyMiddleware"


class PolicyMiddleware:
    """Django middleware (last in settings.MIDDLEWARE): every resolved view past the
    policy, or 403 with why. Adds `Server-Timing: hubforge-policy;dur=<ms>` to every answer
    (tests/bench/bench_labeling.py reads it)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.hubforge_policy_ms = 0.0
        response = self.get_response(request)
        response["Server-Timing"] = f"hubforge-policy;dur={request.hubforge_policy_ms:.3f}"
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        import time

        from django.http import JsonResponse

        started = time.perf_counter()
        try:
            match = request.resolver_match
            rule = rule_for(match.view_name)
            if (
                rule is not None
                and rule.kind == "public"
                and (rule.methods is None or request.method in rule.methods)
            ):
                return None
            try:
                callers = _callers(request)
                for caller in callers:
                    refusal = view_refusal(request, match.view_name, match.kwargs, caller)
                    if refusal:
                        raise Refused(refusal)
                if not callers and rule is None:
                    raise Refused(f"{request.path_info} is not a route Hubforge lets accounts use")
                if not callers and rule.kind == "signed-in":
                    raise Refused(f"{request.path_info} is for signed-in accounts")
            except Refused as e:
                return JsonResponse({"detail": str(e)}, status=403)
            if rule is not None and rule.kind == "local-files":
                return local_file(request, callers)
            saved = request.META.get("hubforge.saved_annotation")
            if (
                saved is not None
                and match.view_name == "tasks:api:task-annotations"
                and request.method == "POST"
                and str(match.kwargs.get("pk")) == str(saved[0])
            ):
                return _saved_annotation(saved[1])
            return None  # no account: Label Studio answers 401 or its login page itself
        finally:
            request.hubforge_policy_ms = (time.perf_counter() - started) * 1e3


def _enforce_organisations() -> None:
    """Label Studio's own object checks (Project.has_permission, used by tasks, annotations,
    exports...) keep accounts to their organisation, staff excepted."""
    from projects.mixins import ProjectMixin

    own = ProjectMixin.has_permission

    def has_permission(self, user):
        if not own(self, user):
            return False
        if getattr(user, "is_staff", False) or getattr(user, "is_superuser", False):
            return True
        return self.organization_id == getattr(user, "active_organization_id", None)

    ProjectMixin.has_permission = has_permission


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
        self.damaged: str | None = None  # why Label Studio will not start, and the fix

    def __call__(self, environ, start_response):
        if self.app is not None:
            return self.app(environ, start_response)
        headers = [("Retry-After", "5"), ("Cache-Control", "no-store")]
        # the prefix as the hub writes it (a base URL may be quoted: /hub%20x/) or decoded
        path = unquote(environ.get("PATH_INFO", "/")).rstrip("/")
        if self.damaged:
            return self._damaged(path, start_response)
        if path == unquote(self.prefix):
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

    def _damaged(self, path: str, start_response):
        """The front page says what is wrong and what to do; everything else answers 503
        with the same message as JSON (the labeling API shows it as it is)."""
        headers = [("Cache-Control", "no-store")]
        if path == unquote(self.prefix):
            text = html.escape(self.damaged or "")
            body = f"<!doctype html><title>Label Studio cannot start</title><p>{text}</p>"
            start_response("200 OK", [("Content-Type", "text/html"), *headers])
            return [body.encode()]
        body = json.dumps({"status": "damaged", "error": self.damaged}).encode()
        start_response("503 Service Unavailable", [("Content-Type", "application/json"), *headers])
        return [body]


def _sqlite_backup():
    """hubforge/sqlite_backup.py, loaded by its path (Hubforge is not installed in Label
    Studio's environment; the file uses the standard library only)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "sqlite_backup.py"
    spec = importlib.util.spec_from_file_location("hubforge_sqlite_backup", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _database() -> Path:
    base = Path(os.environ.get("LABEL_STUDIO_BASE_DATA_DIR", "."))
    return Path(os.environ.get("DATABASE_NAME") or base / "label_studio.sqlite3")


def back_up_and_exit(signum: int, frame: object) -> None:
    """A clean stop (SIGTERM from its keeper): the database backed up as it is now."""
    with contextlib.suppress(Exception):  # stopping matters more than the copy
        health = _sqlite_backup()
        if health.check(_database()) is None:
            health.backup(_database())
    sys.exit(0)


def database_problem() -> str | None:
    """Label Studio's database checked before Django opens it: None (and a backup made)
    when it is sound, else what is wrong with it and what to do."""
    health = _sqlite_backup()
    path = _database()
    problem = health.check(path)
    if problem is None:
        with contextlib.suppress(OSError, sqlite3.Error):  # a full disk: start anyway
            health.backup(path)
        return None
    newest = next((b for b in health.backups(path) if health.check(b) is None), None)
    fix = (
        "stop the workbench and run `hubforge restore-database --label-studio`: it puts "
        f"back its backup of {health.when(newest)} (projects and labels as they were then)"
        if newest
        else "there is no backup of it: stop the workbench and move it aside (a new, empty "
        "one is made at the next start; projects and labels in it are lost)"
    )
    return f"Label Studio's database {path} is damaged ({problem}): {fix}"


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
    sys.modules.setdefault("hubforge_ls_policy", sys.modules[__name__])
    if POLICY not in settings.MIDDLEWARE:
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, POLICY]
    # its cookies go to Label Studio only, never to users' servers on the same origin
    settings.SESSION_COOKIE_PATH = settings.CSRF_COOKIE_PATH = cookie_path(args.prefix)
    gate.app = StripPrefix(get_wsgi_application(), args.prefix)
    print(f"label studio: ready on {args.host}:{args.port}{args.prefix}/", flush=True)


def template_path() -> Path:
    """Label Studio's database, migrated once at set-up (`make setup`), beside its
    environment; named by its version, so an upgraded Label Studio never uses an old one."""
    import label_studio

    return Path(sys.prefix) / f"hubforge-label-studio-{label_studio.__version__}.sqlite3"


def make_template() -> Path:
    """Migrate a fresh database in a scratch folder and keep it as the template every
    workbench's first start copies (a first start then takes seconds, not a minute)."""
    import shutil
    import tempfile

    target = template_path()
    with tempfile.TemporaryDirectory(prefix="hubforge-ls-template-") as scratch:
        os.environ["LABEL_STUDIO_BASE_DATA_DIR"] = scratch
        os.environ.pop("DATABASE_NAME", None)
        # as when it serves: Label Studio asks git for its version around its package and
        # would write the clone's commit into its own version file (shown on /version)
        os.environ["GIT_DIR"] = os.devnull
        _setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", "--no-color", verbosity=0)
        connections.close_all()
        partial = target.with_suffix(".partial")
        shutil.copyfile(Path(scratch) / "label_studio.sqlite3", partial)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    return target


def seed_from_template() -> bool:
    """A workbench's first start: its database begins as the migrated template (if set-up
    made one for this version), so `migrate` has nothing left to do."""
    path = _database()
    try:
        template = template_path()
    except ImportError:
        return False
    if path.exists() or not template.is_file():
        return False
    import shutil

    partial = path.with_name(path.name + ".seeding")
    shutil.copyfile(template, partial)
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return True


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
