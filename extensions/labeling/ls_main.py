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
    annotation instead of adding a second."""
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
    refusal = policy_refusal(environ)  # a saved annotation is answered only to its project
    if refusal:
        return _reply(start_response, "403 Forbidden", {"detail": refusal})
    with _task_locks_guard:
        lock = _task_locks.setdefault(task_id, threading.Lock())
    with lock:
        from tasks.models import Annotation
        from tasks.serializers import AnnotationSerializer

        for annotation in Annotation.objects.filter(task_id=task_id):
            saved = {r.get("id") for r in annotation.result or [] if isinstance(r, dict)}
            if ids & saved:
                data = json.dumps(AnnotationSerializer(annotation).data, default=str).encode()
                start_response("201 Created", [("Content-Type", "application/json")])
                return [data]
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
    cookie = (
        f"{settings.SESSION_COOKIE_NAME}={request.session.session_key}; Path=/; HttpOnly; "
        "SameSite=Lax"
    )
    location = quote(prefix + next_path, safe="/?=&%@")
    used = f"{BIND_COOKIE}=; Path={quote(prefix, safe='/@%')}/hubforge/login; Max-Age=0"
    start_response(
        "302 Found", [("Location", location), ("Set-Cookie", cookie), ("Set-Cookie", used)]
    )
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
    if real != path or not real.startswith(root + os.sep) or not os.path.isdir(real):
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
        account = _user_and_org(email, None, None, False, body.get("organization_of"))
    except LookupError as e:
        return _reply(start_response, "409 Conflict", {"error": str(e)})
    return _reply(start_response, "200 OK", account)


# -- the policy layer -----------------------------------------------------------------------
# Label Studio Community runs one organisation and lets any account reach any project's tasks,
# annotations and files. Every request passes here first: an account reaches only the projects
# of its own organisation (a hub user's own, or, for a teammate's account, the owner's that
# shared with them); the Hubforge admin (staff: the hubforge service) reaches everything.

PROJECT_ROUTES = [
    (re.compile(r"^/(?:api/)?projects/(\d+)(?:/|$)"), "project"),
    (re.compile(r"^/api/tasks/(\d+)(?:/|$)"), "task"),
    (re.compile(r"^/api/annotations/(\d+)(?:/|$)"), "annotation"),
    (re.compile(r"^/api/predictions/(\d+)(?:/|$)"), "prediction"),
    (re.compile(r"^/api/drafts/(\d+)(?:/|$)"), "draft"),
    (re.compile(r"^/api/dm/views/(\d+)(?:/|$)"), "view"),
    (re.compile(r"^/api/import/file-upload/(\d+)(?:/|$)"), "upload"),
]
QUERY_KEYS = {
    "project": "project",
    "task": "task",
    "view": "view",
    "view_id": "view",
    "annotation": "annotation",
}
BODY_KEYS = {"project": "project", "task": "task", "view": "view"}
# list routes that answer across projects unless narrowed to one
NEEDS_PROJECT = re.compile(
    r"^/api/(?:tasks|annotations|predictions|dm/views|storages(?:/(?!types)[a-z-]+)?)/?$"
)
ANY_ID = re.compile(r"^/api/[a-z_-]+(?:/[a-z_-]+)*/\d+(?:/|$)")
KNOWN_ID_ROUTES = re.compile(r"^/api/(?:users|organizations)/\d+(?:/|$)")


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


def _requester(environ):
    """The Label Studio account a request comes from: (user, None), (None, None) when it
    carries no credentials (Label Studio refuses it itself), or (None, error)."""
    import time
    from http.cookies import CookieError, SimpleCookie
    from importlib import import_module

    from django.conf import settings
    from rest_framework.authtoken.models import Token
    from users.models import User

    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth:
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "token":
            return None, "only legacy tokens (Authorization: Token ...) are accepted here"
        cached = _CALLERS.get("token " + key.strip())
        if cached and cached[0] > time.monotonic():
            return cached[1], None
        token = Token.objects.select_related("user").filter(key=key.strip()).first()
        return _caller("token " + key.strip(), token.user if token else None), None
    try:
        cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    except CookieError:
        return None, None
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    if morsel is None:
        return None, None
    cached = _CALLERS.get("session " + morsel.value)
    if cached and cached[0] > time.monotonic():
        return cached[1], None
    session = import_module(settings.SESSION_ENGINE).SessionStore(morsel.value)
    uid = session.get("_auth_user_id")
    user = User.objects.filter(pk=uid).first() if uid else None
    return _caller("session " + morsel.value, user), None


def _caller(key: str, user) -> Caller | None:
    """The policy's view of ``user`` (None: unknown credentials, not kept)."""
    import time

    if user is None:
        return None
    caller = Caller(user.id, user.active_organization_id, user.is_staff or user.is_superuser)
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


def _local_file_allowed(user, relative: str) -> bool:
    """A file under a storage root of one of the account's projects, also after every
    symlink is resolved (a link out of the root serves nothing)."""
    import posixpath

    from django.conf import settings
    from io_storages.localfiles.models import LocalFilesImportStorage

    root = os.path.realpath(settings.LOCAL_FILES_DOCUMENT_ROOT)
    wanted = os.path.realpath(os.path.join(root, posixpath.normpath(relative).lstrip("/")))
    if not (wanted == root or wanted.startswith(root + os.sep)):
        return False
    roots = LocalFilesImportStorage.objects.filter(project__organization_id=user.org).values_list(
        "path", flat=True
    )
    for storage in roots:
        base = os.path.realpath(storage)
        if wanted.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False


def policy_refusal(environ) -> str | None:
    """Why this request may not pass (None: it may). Reads, and puts back, a JSON body."""
    import io
    from urllib.parse import parse_qs

    path = environ.get("PATH_INFO", "")
    if not (path.startswith(("/api/", "/projects/", "/data/")) or path == "/projects"):
        return None  # pages, static files, login: nothing of a project
    user, error = _requester(environ)
    if error:
        return error
    if user is None:
        return None  # no or bad credentials: Label Studio answers 401 / the login page
    if user.staff:
        return None
    org = user.org

    def mine(project_id) -> bool:
        return project_id is not None and org is not None and _org_of(project_id) == org

    method = environ.get("REQUEST_METHOD", "GET")
    if path.startswith("/api/storages") and method != "GET":
        return "storages are made by Hubforge (labeling.import_items), not by accounts"
    if path.startswith("/data/local-files"):
        d = parse_qs(environ.get("QUERY_STRING", "")).get("d", [""])[0]
        return None if d and _local_file_allowed(user, d) else "no such file in your projects"
    if path.startswith("/data/upload/"):
        from data_import.models import FileUpload

        name = "upload/" + path[len("/data/upload/") :]
        owner = FileUpload.objects.filter(file=name).values_list("project_id", flat=True).first()
        return None if mine(owner) else "no such upload in your projects"
    for pattern, kind in PROJECT_ROUTES:
        match = pattern.match(path)
        if match:
            if not mine(_project_of(kind, int(match.group(1)))):
                return f"{kind} {match.group(1)} is not in your projects"
            break
    else:
        match = KNOWN_ID_ROUTES.match(path)
        if match:
            kind, pk = path.split("/")[2], int(path.split("/")[3])
            if pk != (org if kind == "organizations" else user.id):
                return f"not your {kind[:-1]}"
        elif ANY_ID.match(path):
            return f"{path} is not a route Hubforge lets accounts use"
    query = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        narrowed = False
        for key, kind in QUERY_KEYS.items():
            for pk in _ids(query.get(key, [])):
                narrowed = True
                if not mine(_project_of(kind, pk)):
                    return f"{kind} {pk} is not in your projects"
        if method in ("POST", "PUT", "PATCH") and "json" in environ.get("CONTENT_TYPE", ""):
            size = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(size) if size else b""
            environ["wsgi.input"] = io.BytesIO(raw)
            try:
                body = json.loads(raw) if raw else None
            except (ValueError, RecursionError):
                body = None  # Label Studio answers the bad body itself
            if isinstance(body, dict):
                for key, kind in BODY_KEYS.items():
                    if key in body and body[key] is not None:
                        for pk in _ids(body[key]):
                            narrowed = True
                            if not mine(_project_of(kind, pk)):
                                return f"{kind} {pk} is not in your projects"
    except ValueError:
        return "project, task and view must be numbers"
    if NEEDS_PROJECT.match(path) and not narrowed:
        return "name one of your projects (?project=ID)"
    return None


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


class Policy:
    """WSGI middleware: every request past the policy, or 403 with why."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        import time

        started = time.perf_counter()
        refusal = policy_refusal(environ)
        # what the policy costs this request (tests/bench/bench_labeling.py reads it)
        timing = (
            "Server-Timing",
            f"hubforge-policy;dur={(time.perf_counter() - started) * 1e3:.3f}",
        )

        def respond(status, headers, exc_info=None):
            return start_response(status, [*headers, timing], exc_info)

        if refusal:
            return _reply(respond, "403 Forbidden", {"detail": refusal})
        return self.app(environ, respond)


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
        # the prefix as the hub writes it (a base URL may be quoted: /hub%20x/) or decoded
        path = unquote(environ.get("PATH_INFO", "/")).rstrip("/")
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

    _enforce_organisations()
    gate.app = StripPrefix(Policy(get_wsgi_application()), args.prefix)
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
