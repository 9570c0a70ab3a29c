"""Expected failures of the engines as HTTP answers, in one place for every REST view.

A handler that lets one of these escape answers with its status and message, never a 500
with a traceback: a full disk (507, naming the path), and every error that carries its own
``http_status``: a damaged state file (503, naming the file), the engines' own errors, a link
in the user's folder (409), the privileged helper out of reach (503), an owner with too many
requests in flight (429)."""

from __future__ import annotations

import errno

from tornado import web


def as_http_error(error: BaseException) -> web.HTTPError | None:
    """The HTTP answer for an expected failure, or None for a bug (a real 500). Each engine's
    errors say their own status (``http_status``): this module imports none of them."""
    if isinstance(error, web.HTTPError):
        return None
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" ({error.filename})" if error.filename else ""
        return web.HTTPError(
            507,
            f"The disk is full{where}: nothing was changed. Free some space (or ask an admin "
            "to), then try again",
        )
    status = getattr(error, "http_status", None)
    if isinstance(status, int) and 400 <= status < 600:
        return web.HTTPError(status, str(error))
    return None


class ExpectedErrors:
    """Mix into a tornado handler: expected failures answer with their status and message."""

    def _handle_request_exception(self, e: BaseException) -> None:
        mapped = as_http_error(e)
        if mapped is None:
            return super()._handle_request_exception(e)  # type: ignore[misc]
        self.log_exception(type(mapped), mapped, None)  # type: ignore[attr-defined]
        if not self._finished:  # type: ignore[attr-defined]
            exc_info = (type(mapped), mapped, None)
            self.send_error(mapped.status_code, exc_info=exc_info)  # type: ignore[attr-defined]
        return None


MAX_OFFSET = 1 << 50  # a petabyte: no log is longer; larger numbers are mistakes


def parse_offset(text: str) -> int:
    """The ``offset`` query argument: a byte offset from 0 to MAX_OFFSET (HTTP 400 else)."""
    try:
        offset = int(text)
    except ValueError:
        offset = -1
    if not 0 <= offset <= MAX_OFFSET:
        raise web.HTTPError(
            400,
            f"'offset' must be a byte offset from 0 to {MAX_OFFSET}: the offset the "
            "previous call returned, or 0 for the start of the log",
        )
    return offset
