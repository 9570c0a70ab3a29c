"""The policy's rules (runs in Label Studio's environment, see ls_main.py): for every view
Label Studio resolves, what an account may do with it (``rule_for``). ls_policy.py applies
them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

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


def _page_rules() -> dict[str, Rule]:
    """Pages, files and lists that hold nothing of a project."""
    public = Rule("public")
    account = Rule("account")
    return {
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
    }


def _account_rules() -> dict[str, Rule]:
    """The account itself and its organisation."""
    account = Rule("account")
    read_only = Rule("account", READ)
    return {
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
    }


def _project_rules() -> dict[str, Rule]:
    """One project, named by the URL."""
    project = Rule("objects", objects=(("pk", "project"),))
    return {
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
    }


def _object_rules() -> dict[str, Rule]:
    """Objects of a project, lists across projects, and files."""
    account = Rule("account")
    task = Rule("objects", objects=(("pk", "task"),))
    return {
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


def _rules() -> dict[str, Rule]:
    return {**_page_rules(), **_account_rules(), **_project_rules(), **_object_rules()}


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
