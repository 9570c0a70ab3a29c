"""AutoML in each user's server, for the sidebar: the base-model store
(``GET /hubforge/api/base-models``, read as the server's user, so another user's private
entries are not there) and classifiers of labeling projects
(``GET/POST /hubforge/api/classifications``, ``GET …/classifications/<name>/report``: the
report page)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..app_base import HubforgeAPIHandler
from ..jobs.extension_handlers import JobsAPIHandler
from .base_models import BaseModel, BaseModelError, base_models
from .classify import (
    ClassifyError,
    NoSuchClassification,
    classify,
    list_classifications,
    open_classification,
)

RUN_NAME = "[a-z0-9][a-z0-9_-]{0,62}"
PRELABEL_TIMEOUT = 600  # seconds: TensorFlow's start and one pass over the unlabeled items
CLASSIFY_FIELDS = {
    "project": str, "owner": (str, type(None)), "base_model": (str, bool, type(None)),
    "max_trials": int, "parallel": int, "epochs": int, "image_size": int,
}  # fmt: skip


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


class AutoMLHandler(JobsAPIHandler):
    """The jobs API's error statuses, and the AutoML refusals as 400 (404: no such run)."""

    async def call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        from ..labeling.errors import LabelingError

        try:
            return await super().call(func, *args, **kwargs)
        except NoSuchClassification as e:
            raise web.HTTPError(404, str(e)) from None
        except (ClassifyError, BaseModelError, LabelingError) as e:
            raise web.HTTPError(400, str(e)) from None


def _checked(body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - set(CLASSIFY_FIELDS)
    if unknown or not isinstance(body.get("project"), str):
        raise web.HTTPError(
            400, f'Send {{"project": "name", ...}}; valid fields: {sorted(CLASSIFY_FIELDS)}'
        )
    for key, value in body.items():
        kinds = CLASSIFY_FIELDS[key]
        if not isinstance(value, kinds) or (kinds is int and isinstance(value, bool)):
            raise web.HTTPError(400, f"{key}: {value!r} is not a {key} to use")
    return body


class ClassificationsHandler(AutoMLHandler):
    """The user's classify() runs, and a new one from a labeling project."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        runs = await self.call(list_classifications)
        self.finish(json.dumps({"classifications": runs}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = _checked(self.json_body())
        run = await self.call(classify, body.pop("project"), **body)
        self.set_status(201)
        self.finish(json.dumps(dict(run.record, tuning=run.tuning.id)))


class ClassificationReportHandler(AutoMLHandler):
    """The report page of a run's best trial (a whole HTML page)."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        run = await self.call(open_classification, name)
        report = await self.call(run.report)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'",
        )
        # APIHandler.finish would label it JSON (the browser then shows it as text)
        super(APIHandler, self).finish(report.html_path.read_bytes())


class ClassificationPrelabelHandler(AutoMLHandler):
    """Pre-label the rest of the project with the run's best model (a process of its own)."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        await self.call(open_classification, name)  # 404 before anything starts
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hubforge.automl.prelabel", name, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), PRELABEL_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise web.HTTPError(504, f"Pre-labeling took over {PRELABEL_TIMEOUT} s") from None
        if proc.returncode != 0:
            said = err.decode(errors="replace").strip().splitlines() or ["it stopped"]
            status = 400 if proc.returncode == 2 else 500
            raise web.HTTPError(status, said[-1][:500])
        self.finish(out.decode().strip().splitlines()[-1])


def routes(prefix: str) -> list[tuple]:
    return [
        (prefix + "/base-models", BaseModelsHandler),
        (prefix + "/classifications", ClassificationsHandler),
        (prefix + rf"/classifications/({RUN_NAME})/report", ClassificationReportHandler),
        (prefix + rf"/classifications/({RUN_NAME})/prelabel", ClassificationPrelabelHandler),
    ]
