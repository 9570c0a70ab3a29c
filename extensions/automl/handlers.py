"""The base-model store in each user's server (``GET /hubforge/api/base-models``), for the
sidebar: read as the server's user, so another user's private entries are not there."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..app_base import HubforgeAPIHandler
from .base_models import BaseModel, base_models


def describe(model: BaseModel) -> dict[str, Any]:
    card = model.card
    keys = ("input_size", "preprocessing", "licence", "source", "private", "added_by", "format")
    return {"name": model.name, **{k: card.get(k) for k in keys}}


class BaseModelsHandler(HubforgeAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        found = await asyncio.to_thread(base_models)
        self.finish(json.dumps({"base_models": [describe(m) for m in found]}))


def routes(prefix: str) -> list[tuple]:
    return [(prefix + "/base-models", BaseModelsHandler)]
