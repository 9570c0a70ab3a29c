"""The policy layer (runs in Label Studio's environment, see ls_main.py): Django middleware
that lets each request's accounts reach only their own organisation's projects.

Label Studio Community runs one organisation and lets any account reach any project's tasks,
annotations and files. The policy is Django middleware (PolicyMiddleware, last in
settings.MIDDLEWARE): it decides in process_view, on the view Django resolved for the
request (never on the path's text) and on every account the view could act as (the
session's user and an `Authorization: Token` header's, authenticated as DRF would). An
account reaches only the projects of its own organisation (a hub user's own, or, for a
teammate's account, the owner's that shared with them); the Hubforge admin (staff: the
hubforge service) reaches everything. A view the policy does not know is refused. What each
view allows is in ls_rules.py.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, NamedTuple

if __package__:  # imported as hubforge.labeling.ls_policy (Hubforge's own tests)
    from .ls_files import local_file
    from .ls_rules import BODY_KEYS, QUERY_KEYS, READ, USER_FIELDS, Rule, rule_for
else:  # in Label Studio's environment, beside ls_main.py (its folder is on sys.path)
    from ls_files import local_file
    from ls_rules import BODY_KEYS, QUERY_KEYS, READ, USER_FIELDS, Rule, rule_for

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
    if rule.kind == "public":
        return None
    if rule.kind == "local-files":
        return None  # served by local_file() (ls_files.py), which checks the file itself
    if rule.kind in ("upload", "storage-data"):
        return _upload_refusal(request, rule.kind, kwargs, caller.org)
    return _account_refusal(request, rule, kwargs, caller) or _objects_refusal(
        request, rule, kwargs, caller.org
    )


def _mine(org: int | None, project_id: int | None) -> bool:
    """Whether ``project_id`` is a project of organisation ``org``."""
    return project_id is not None and org is not None and _org_of(project_id) == org


def _upload_refusal(request, kind: str, kwargs: dict, org: int | None) -> str | None:
    """An uploaded file ("upload": named by the URL; "storage-data": by ?filepath=)."""
    from data_import.models import FileUpload

    if kind == "upload":
        name = "upload/" + str(kwargs.get("filename", ""))
        owner = FileUpload.objects.filter(file=name).values_list("project_id", flat=True).first()
        return None if _mine(org, owner) else "no such upload in your projects"
    from django.conf import settings

    path = request.GET.get("filepath", "")
    if path.startswith(settings.AVATAR_PATH + "/") and ".." not in path.split("/"):
        return None  # Label Studio shows avatars of the account's organisation only
    owner = FileUpload.objects.filter(file=path).values_list("project_id", flat=True).last()
    return None if _mine(org, owner) else "no such upload in your projects"


def _account_refusal(request, rule: Rule, kwargs: dict, caller: Caller) -> str | None:
    """A "user" or "org" view: the URL must name the account itself / its organisation."""
    if rule.kind == "user":
        if str(kwargs.get("pk")) != str(caller.id):
            return "not your user"
        if request.method not in READ:  # not active_organization: would join any organisation
            body = _json_body(request)
            if not isinstance(body, dict) or set(body) - USER_FIELDS:
                return f"send JSON with only {', '.join(sorted(USER_FIELDS))}"
    if rule.kind == "org" and str(kwargs.get("pk")) != str(caller.org):
        return "not your organization"
    return None


def _objects_refusal(request, rule: Rule, kwargs: dict, org: int | None) -> str | None:
    """Every object the URL, the query and the body name must be of the account's projects
    (and a "list" view must be narrowed to one)."""
    for name, kind in rule.objects:
        value = str(kwargs.get(name, ""))
        if not value.isdigit() or not _mine(org, _project_of(kind, int(value))):
            return f"{kind} {value} is not in your projects"
    try:
        narrowed = False
        for key, kind in QUERY_KEYS.items():
            for pk in _ids(request.GET.getlist(key)):
                narrowed = True
                if not _mine(org, _project_of(kind, pk)):
                    return f"{kind} {pk} is not in your projects"
        fields = _body_fields(request)
        if fields is None:
            return "send JSON, a form or multipart form data this policy can read"
        for body in fields:
            for key, kind in BODY_KEYS.items():
                if key in body and body[key] is not None:
                    for pk in _ids(body[key]):
                        narrowed = True
                        if not _mine(org, _project_of(kind, pk)):
                            return f"{kind} {pk} is not in your projects"
    except ValueError:
        return "project, task and view must be numbers"
    if rule.kind == "list" and not narrowed:
        return "name one of your projects (?project=ID)"
    return None


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
