"""Hubforge's own routes in front of Label Studio (runs in Label Studio's environment, see
ls_main.py): ``POST /hubforge/provision`` (a hub user's account and organisation),
``POST /hubforge/storage`` (a project's local-files storage) and ``GET /hubforge/login``
(signed one-minute links into the UI), and the accounts they make.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading

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
    from django.db import transaction
    from rest_framework.authtoken.models import Token

    with transaction.atomic():
        user, owner = _account(email, password, staff, organization_of, adopt)
        _give_organization(user, owner)
        if token:
            Token.objects.filter(user=user).exclude(key=token).delete()
            Token.objects.get_or_create(user=user, key=token)
        key = Token.objects.get_or_create(user=user)[0].key
    return {"id": user.id, "email": user.email, "token": key}


def _account(
    email: str, password: str | None, staff: bool, organization_of: str | None, adopt: bool
) -> tuple:
    """The account ``email``, made (or its password set, or re-activated) in the
    MADE_BY_HUBFORGE group, and ``organization_of``'s account (None without one)."""
    from django.contrib.auth.models import Group
    from users.models import User

    made_here = Group.objects.get_or_create(name=MADE_BY_HUBFORGE)[0]
    user = User.objects.filter(email=email).first()
    if user is not None and not adopt and not user.groups.filter(pk=made_here.pk).exists():
        raise NotHubforges(
            f"a Label Studio account {email} exists that Hubforge did not make: an "
            "administrator must remove it before this hub user can label"
        )
    owner = None
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
    return user, owner


def _give_organization(user, owner) -> None:
    """``user`` joins ``owner``'s organisation (a teammate's account), or gets one of its own
    (legacy tokens on) when it has none."""
    from organizations.functions import create_organization

    if owner is not None and user.active_organization_id is None:
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
