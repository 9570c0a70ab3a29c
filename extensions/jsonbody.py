"""Request bodies of Hubforge's REST views: one JSON object, or a 400 that says why."""

from __future__ import annotations

import json
from typing import Any

from tornado import web


def json_object(raw: bytes | None) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPError(400, "The request body is not valid JSON") from None
    except RecursionError:
        raise web.HTTPError(400, "The request body nests too deeply") from None
    if not isinstance(body, dict):
        raise web.HTTPError(400, "The request body must be a JSON object")
    return body
