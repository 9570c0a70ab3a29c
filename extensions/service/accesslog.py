"""The service's access log: one line per request, without secrets or control characters."""

from __future__ import annotations

import re

from tornado import web
from tornado.log import access_log

_SECRET_ARGUMENT = re.compile(r"((?:^|[?&;])(?:token|_xsrf|key|password)=)[^&;]*", re.IGNORECASE)


def redact(uri: str) -> str:
    """``uri`` with the values of token-like query arguments replaced by [secret]."""
    return _SECRET_ARGUMENT.sub(r"\1[secret]", uri)


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access log line without secrets (a ``?token=`` must not land in the log),
    and without control characters a caller put in the URL."""
    status = handler.get_status()
    log = access_log.info if status < 400 else access_log.warning
    if status >= 500:
        log = access_log.error
    request = handler.request
    uri = "".join(c if c.isprintable() else "?" for c in redact(request.uri or ""))
    log(
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        uri,
        request.remote_ip,
        1000.0 * request.request_time(),
    )
