"""Expected failures of the engines as HTTP answers, in one place for every REST view.

A handler that lets one of these escape answers with its status and message, never a 500
with a traceback: a damaged state file (503, naming the file), a full disk (507, naming the
path), the engines' own errors (their status), a link in the user's folder (409), the
privileged helper out of reach (503)."""

from __future__ import annotations

import errno

from tornado import web

from .atomic import DamagedStateFile


def as_http_error(error: BaseException) -> web.HTTPError | None:
    """The HTTP answer for an expected failure, or None for a bug (a real 500)."""
    from .jobs.errors import JobError
    from .serving.errors import ServingError

    if isinstance(error, web.HTTPError):
        return None
    if isinstance(error, DamagedStateFile):
        return web.HTTPError(503, str(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" ({error.filename})" if error.filename else ""
        return web.HTTPError(
            507,
            f"The disk is full{where}: nothing was changed. Free some space (or ask an admin "
            "to), then try again",
        )
    if isinstance(error, JobError):
        return web.HTTPError(error.status, str(error))
    from .confined import UnsafeEntry
    from .helper_client import HelperError

    if isinstance(error, UnsafeEntry):  # a link in the user's own folder: theirs to remove
        return web.HTTPError(409, str(error))
    from .owner_files import OwnerBusy

    if isinstance(error, OwnerBusy):
        return web.HTTPError(429, str(error))
    if isinstance(error, HelperError):  # the privileged helper is not there (being restarted)
        return web.HTTPError(503, f"{error}. Try again in a moment")
    if isinstance(error, ServingError):
        return web.HTTPError(error.status if error.status != 500 else 502, str(error))
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
