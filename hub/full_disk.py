"""Token checks that do not depend on free disk space.

JupyterHub records a token's (and its user's) last activity when the token is used, and
commits that to its database before it answers. On a full disk the commit fails, JupyterHub
logs the error and treats the request as unauthenticated: a token the hub had not seen for a
while answered 403 "valid token required" everywhere, the endpoint gateway included, while
recently used tokens worked (#30). With :func:`install` (called by the hub's configuration) a
commit that fails because the disk is full is rolled back and the token is checked again
without recording activity: the caller is who the token says, and only requests that really
need the disk answer 507.
"""

from __future__ import annotations

from typing import Any

_installed = False


def disk_full(error: BaseException) -> bool:
    """Whether a database error is SQLite's full disk (or a write that failed for it)."""
    text = str(getattr(error, "orig", error)).lower()
    return "database or disk is full" in text or "disk i/o error" in text


def install() -> None:
    """Patch JupyterHub's BaseHandler once (its token check and activity recording)."""
    global _installed
    if _installed:
        return
    from jupyterhub.handlers.base import BaseHandler
    from sqlalchemy.exc import OperationalError

    check = BaseHandler.get_current_user_token
    record = BaseHandler._record_activity

    def get_current_user_token(self: Any) -> Any:
        try:
            return check(self)
        except OperationalError as e:
            if not disk_full(e):
                raise
            self.db.rollback()
            self.log.warning("The disk is full: a token's activity was not recorded (%s)", e)
            self._hubforge_no_activity = True
            try:
                return check(self)
            finally:
                self._hubforge_no_activity = False

    def _record_activity(self: Any, obj: Any, timestamp: Any = None) -> bool:
        if getattr(self, "_hubforge_no_activity", False):
            return False
        return record(self, obj, timestamp)

    BaseHandler.get_current_user_token = get_current_user_token  # type: ignore[method-assign]
    BaseHandler._record_activity = _record_activity  # type: ignore[method-assign]
    _installed = True
