"""Endpoint REST views and the gateway of the hubforge service.

    POST/GET /services/hubforge/api/endpoints, GET/DELETE .../endpoints/<name>
    *        /services/hubforge/endpoints/<user>/<name>/v1/...   (the TF Serving API)

The gateway authenticates every call with a JupyterHub token: the owner and admins pass, and
so does any token with the custom scope ``custom:hubforge:endpoints:call`` for the endpoint
(``!user=<owner>`` or ``!server=<owner>/<endpoint>``), e.g. one an application holds.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
from tornado import web

from ..notify import NotifyError
from ..service.handlers import ServiceHandler
from ..service.names import CALL_ENDPOINTS_SCOPE
from ..service.quotas import QuotaExceeded
from .base import NAME
from .errors import BadRequest, ServingError
from .oip import HEADER_LENGTH as BINARY_HEADER
from .rollout import check_canary
from .traffic import parse_window

# The only paths the gateway forwards (TF Serving's REST API of one model), normalised.
GATEWAY_PATH = re.compile(
    r"^(?:v1/models/(?P<model>[a-z0-9-]+)"
    r"(?:/versions/(?P<version>[0-9]{1,19})|/labels/(?P<label>[A-Za-z0-9_-]{1,64}))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?"
    # the Open Inference Protocol (KServe v2) on the same endpoint
    r"|v2/models/(?P<v2model>[a-z0-9-]+)(?:/versions/(?P<v2version>[0-9]{1,19}))?"
    r"(?P<v2verb>/ready|/infer)?"
    r"|v2/health/(?:live|ready)|v2)$"
)


# deploys under way in this service, per (owner, endpoint): whether one is a canary's, and
# how many (plain deploys of one endpoint may overlap: the backend takes them in turn)
_DEPLOYING: dict[tuple[str, Any], bool] = {}
_DEPLOYS: dict[tuple[str, Any], int] = {}


class EndpointsBase(ServiceHandler):
    @property
    def owner(self) -> str:
        if self.identity["kind"] != "user":
            raise web.HTTPError(403, "Endpoints belong to users: call with a user's token")
        return self.identity["name"]

    def serving_error(self, error: ServingError) -> None:
        raise web.HTTPError(
            error.status if error.status <= 503 and error.status != 500 else 502, str(error)
        )

    def public(self, record: dict[str, Any]) -> dict[str, Any]:
        gateway = f"{self.settings['service_prefix']}endpoints/{record['owner']}/{record['name']}"
        keys = ("owner", "name", "versions", "running", "created", "batching", "replicas")
        keys += ("processes",)  # (local endpoints: each copy's pid and port)
        rollout = self.rollouts.get(record["owner"], record["name"]) if self.rollouts else None
        return {k: record.get(k) for k in keys} | {
            "url": f"{gateway}/v1/models/{record['name']}",
            "base_path": record["base_path"],
            "ready": record.get("ready", 1 if record.get("running") else 0),
            "load": (
                self.concurrency.status(record["owner"], record["name"])
                if self.concurrency
                else None
            ),
            "rollout": rollout and {k: v for k, v in rollout.items() if k != "owner"},
            "request_log": (
                self.request_log.public(record["owner"], record["name"])
                if self.request_log
                else None
            ),
        }


class EndpointsHandler(EndpointsBase):
    takes_turns = True  # endpoints' models are in their owners' areas

    def get(self) -> None:
        self.write_json({"endpoints": [self.public(r) for r in self.endpoints.list(self.owner)]})

    async def post(self) -> None:
        owner, body = self.owner, self.json_body()
        for key, kinds, what in (
            ("name", (str,), "an endpoint name"),
            ("model_dir", (str,), "the path of an exported model"),
            ("version", (int, type(None)), "a version number"),
            ("batching", (dict, type(None)), 'an object like {"max_batch_size": 8}'),
            ("gpus", (int,), "a number of GPUs"),
            ("replicas", (int, dict, type(None)), 'a number or {"min": 1, "max": 3}'),
        ):
            value = body.get(key, 0 if key == "gpus" else None if key != "name" else "")
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise web.HTTPError(400, f'"{key}" must be {what}, got {value!r:.60}')
        canary = self.check_rollout(owner, body)
        gpus, copies = body.get("gpus", 0), body.get("replicas")
        most = copies if isinstance(copies, int) else (copies or {}).get("max", 1)
        try:
            if isinstance(gpus, int):
                await self.run_in_thread(
                    self.quotas.check_endpoint,
                    owner,
                    body.get("name"),
                    gpus * (most if isinstance(most, int) and most > 0 else 1),
                    self.jobs,
                    self.endpoints,
                )
        except QuotaExceeded as e:
            raise web.HTTPError(e.status, str(e)) from None
        name = body.get("name")
        key = (owner, name)
        if key in _DEPLOYING and (canary or _DEPLOYING[key]):
            # a canary begins by pinning the version served now: another deploy of the same
            # endpoint meanwhile would pin or replace the wrong one
            raise web.HTTPError(
                409,
                f"Another deploy of {name} is under way (a canary rollout needs it alone): "
                "try again when it has answered",
            )
        _DEPLOYING[key] = bool(canary) or _DEPLOYING.get(key, False)
        _DEPLOYS[key] = _DEPLOYS.get(key, 0) + 1
        try:
            await self.deploy_once(owner, name, body, canary)
        finally:
            _DEPLOYS[key] -= 1
            if not _DEPLOYS[key]:
                del _DEPLOYS[key], _DEPLOYING[key]

    async def deploy_once(
        self, owner: str, name: str, body: dict[str, Any], canary: dict[str, Any] | None
    ) -> None:
        try:
            stable = None
            if canary:  # the version served now stays served beside the new one
                stable = await self.run_in_thread(self.endpoints.begin_canary, owner, name)
            record = await self.deploy_or_undo(owner, body, stable)
            if canary:
                await self.start_rollout(owner, name, stable, record, canary)
            elif self.rollouts is not None:
                self.rollouts.forget(owner, name)
        except ServingError as e:
            self.serving_error(e)
        self.write_json(self.public(record), status=201)

    def check_rollout(self, owner: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The canary settings asked for; 409 while a rollout of the endpoint runs."""
        try:
            canary = check_canary(body.get("canary"))
        except ServingError as e:
            self.serving_error(e)
        if canary and canary["notify"] is not None:
            try:
                canary["notify"] = self.notifications.check(owner, canary["notify"])
            except NotifyError as e:
                raise web.HTTPError(400, f"canary.{e}") from None
        if canary and body.get("batching") is not None:
            raise web.HTTPError(400, "A canary keeps the endpoint's batching: leave out batching")
        name = body.get("name")
        known = isinstance(name, str) and NAME.fullmatch(name)  # (else the deploy refuses it)
        if self.rollouts is not None and known and self.rollouts.running(owner, name):
            rollout = self.rollouts.get(owner, name) or {}
            raise web.HTTPError(
                409,
                f"Version {rollout.get('canary')} of {name} is rolling out "
                f"({rollout.get('percent')}%): wait until it is promoted or rolled back, or "
                f"cancel it (DELETE .../endpoints/{name}/rollout)",
            )
        return canary

    async def deploy_or_undo(self, owner: str, body: dict, stable: int | None) -> dict:
        try:
            return await self.run_in_thread(
                self.endpoints.deploy,
                owner,
                body.get("name"),
                str(body.get("model_dir") or ""),
                body.get("version"),
                body.get("batching"),
                body.get("gpus", 0),
                body.get("replicas"),
            )
        except ServingError:
            if stable is not None:  # no canary after all: the label pinning goes
                await self.run_in_thread(
                    self.endpoints.end_canary, owner, body.get("name"), -1, True
                )
            raise

    async def start_rollout(
        self, owner: str, name: str, stable: int, record: dict, canary: dict
    ) -> None:
        new = max(record["versions"])
        if new == stable:
            await self.run_in_thread(self.endpoints.end_canary, owner, name, -1, True)
            raise web.HTTPError(
                400, f"Version {stable} serves already: a canary needs a newer version"
            )
        try:  # (Kubernetes: until every pod has reloaded its model config)
            await self.run_in_thread(self.endpoints.wait_served, owner, name, new)
        except ServingError:  # no canary after all: its version is kept aside, unserved
            await self.run_in_thread(self.endpoints.end_canary, owner, name, new, False)
            raise
        self.rollouts.start(owner, name, stable, new, canary)

    async def run_in_thread(self, func: Any, *args: Any) -> Any:
        return await asyncio.to_thread(func, *args)


class EndpointHandler(EndpointsBase):
    takes_turns = True  # endpoints' models are in their owners' areas

    def get(self, name: str) -> None:
        try:
            self.write_json(self.public(self.endpoints.get(self.owner, name)))
        except ServingError as e:
            self.serving_error(e)

    async def delete(self, name: str) -> None:
        # stopping the endpoint's process takes seconds: never on the shared loop
        try:
            record = await asyncio.to_thread(self.endpoints.undeploy, self.owner, name)
        except ServingError as e:
            self.serving_error(e)
        if self.rollouts is not None:
            self.rollouts.forget(self.owner, name)
        if self.request_log is not None:
            self.request_log.forget(self.owner, name)
        self.write_json(self.public({**record, "versions": []}))


class RequestLogHandler(EndpointsBase):
    """GET/PUT .../endpoints/<name>/request-log: {"rate": 0.1, "max_body_bytes": 65536}
    (serving.request_log); the owner's endpoints only."""

    takes_turns = True  # the endpoint is looked up in its owner's area

    async def get(self, name: str) -> None:
        await self._endpoint(name)
        self.write_json(self.request_log.public(self.owner, name) or {"rate": 0.0})

    async def put(self, name: str) -> None:
        await self._endpoint(name)
        try:
            self.write_json(self.request_log.configure(self.owner, name, self.json_body()))
        except ServingError as e:
            self.serving_error(e)

    async def _endpoint(self, name: str) -> None:
        try:
            await asyncio.to_thread(self.endpoints.get, self.owner, name)
        except ServingError as e:
            self.serving_error(e)


class DriftBaselineHandler(RequestLogHandler):
    """PUT .../endpoints/<name>/drift-baseline {"rows": [[...], ...], "notify": {...}}: the
    training data the logged calls are compared with (a drift alert when they shift)."""

    async def put(self, name: str) -> None:
        await self._endpoint(name)
        body = self.json_body()
        if not isinstance(body, dict) or "rows" not in body or set(body) - {"rows", "notify"}:
            raise web.HTTPError(400, 'Send {"rows": [[...], ...]} (rows of the training data)')
        notify = body.get("notify")
        if notify is not None:
            try:
                notify = self.notifications.check(self.owner, notify)
            except NotifyError as e:
                raise web.HTTPError(400, str(e)) from None
        try:
            await asyncio.to_thread(self.request_log.set_baseline, self.owner, name, body["rows"])
            self.write_json(self.request_log.notify(self.owner, name, notify))
        except ServingError as e:
            self.serving_error(e)


class RolloutHandler(EndpointsBase):
    """DELETE .../endpoints/<name>/rollout: roll a running canary back now (its owner)."""

    takes_turns = True

    async def delete(self, name: str) -> None:
        owner = self.owner
        valid = NAME.fullmatch(name) and self.rollouts is not None
        rollout = self.rollouts.get(owner, name) if valid else None
        if rollout is None or rollout["state"] != "running":
            raise web.HTTPError(404, f"No canary of {name} is rolling out")
        done = self.rollouts.end(owner, name, "rolled_back", "cancelled by its owner")
        if done is not None:
            try:  # (the gateway already sends every call to the stable version)
                await asyncio.to_thread(
                    self.endpoints.end_canary, owner, name, done["canary"], False
                )
                self.rollouts.folder_done(owner, name, done["ended"])
                done = self.rollouts.get(owner, name) or done
            except ServingError as e:  # "folder": "pending": the service's pass tries again
                self.log.error("Rollout of %s/%s: folder not updated: %s", owner, name, e)
        self.write_json({k: v for k, v in (done or rollout).items() if k != "owner"})


class EndpointTrafficHandler(EndpointsBase):
    """GET .../endpoints/<name>/traffic?window=1h&points=60: what the gateway counted
    (serving.traffic.Traffic.summary); admins may add ?owner=<user>."""

    takes_turns = True  # the endpoint is looked up in its owner's area

    async def get(self, name: str) -> None:
        owner = self.get_argument("owner", "") or self.owner
        if owner != self.identity["name"] and not self.identity["admin"]:
            raise web.HTTPError(403, "Only admins see another user's endpoint traffic")
        try:
            window = parse_window(self.get_argument("window", "1h"))
            points = self.get_argument("points", "60")
            if not re.fullmatch(r"[0-9]{1,3}", points):
                raise BadRequest(f"points={points!r:.20}: a number of steps from 1 to 500")
            await asyncio.to_thread(self.endpoints.get, owner, name)  # 404: no such endpoint
            summary = await asyncio.to_thread(
                self.traffic.summary, owner, name, window, int(points)
            )
        except ServingError as e:
            self.serving_error(e)
        self.write_json(summary)


_sessions: dict[int, aiohttp.ClientSession] = {}


def connections() -> aiohttp.ClientSession:
    """One pooled keep-alive HTTP client per event loop: forwarding reuses connections to the
    endpoints instead of opening one per request."""
    import asyncio

    loop = asyncio.get_running_loop()
    session = _sessions.get(id(loop))
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=120),
            auto_decompress=False,
        )
        _sessions[id(loop)] = session
    return session


# calls in flight per endpoint process (its URL), on the service's loop: the gateway sends
# each call to the least busy copy, the first of those equally busy in turn
_IN_FLIGHT: dict[str, int] = {}
_TURN = [0]


def least_busy(copies: list[tuple[str, dict[str, str]]]) -> list[tuple[str, dict[str, str]]]:
    """``copies`` in the order to try them: fewest calls in flight first, ties in turn."""
    if len(copies) < 2:
        return copies
    _TURN[0] = (_TURN[0] + 1) % len(copies)
    turned = copies[_TURN[0] :] + copies[: _TURN[0]]
    return sorted(turned, key=lambda c: _IN_FLIGHT.get(c[0], 0))


def call_scope(user: str, name: str) -> str:
    """The scope that lets a token call one endpoint (``!user=<owner>`` includes it)."""
    return f"{CALL_ENDPOINTS_SCOPE}!server={user}/{name}"


class GatewayHandler(EndpointsBase):
    """Forwards TF Serving requests to the endpoint after checking the caller."""

    @property
    def hub_scopes(self) -> set[str]:
        # a token may carry only the call scope: it can call, but not deploy or undeploy
        user, name = self.path_args[:2]
        return {*self.hub_auth.access_scopes, call_scope(user, name)}

    def allowed(self, user: str, name: str) -> bool:
        ident = self.identity
        if ident["admin"]:
            return True
        if self.hub_auth.check_scopes({call_scope(user, name)}, self.current_user):
            return True
        has_access = self.hub_auth.check_scopes(self.hub_auth.access_scopes, self.current_user)
        return bool(has_access) and ident["kind"] == "user" and ident["name"] == user

    async def forward(self, user: str, name: str, rest: str) -> None:
        if not self.allowed(user, name):
            ident = self.identity
            raise web.HTTPError(
                403,
                f"{ident['name']} may not call {user}'s endpoint {name}: it needs the owner's "
                f"token, an admin's, or one with the scope {call_scope(user, name)}",
            )
        path = GATEWAY_PATH.match(rest)
        model = path and (path["model"] or path["v2model"])
        if path is None or model not in (name, None):  # e.g. ..%2F..%2Fmetrics: never forwarded
            raise web.HTTPError(
                404,
                f"No such endpoint path; {name} answers v1/models/{name}[/versions/N|"
                "/labels/L][:predict|:classify|:regress|/metadata] and v2/models/"
                f"{name}[/versions/N][/ready|/infer]",
            )
        try:
            copies = self.endpoints.routes(user, name)
        except ServingError as e:
            self.serving_error(e)
        rest, version = self.pinned(user, name, path, rest)
        body = self.request.body if self.request.method == "POST" else None
        started, status = time.perf_counter(), 502
        if self.concurrency is not None:
            self.concurrency.started(user, name)
        try:
            status, data, response = await self.send(name, copies, rest, body)
        except web.HTTPError as e:
            status = e.status_code
            raise
        finally:
            if self.concurrency is not None:
                self.concurrency.finished(user, name)
            if self.traffic is not None:  # what the endpoint's monitoring view shows
                self.traffic.observe(user, name, status, time.perf_counter() - started, version)
        content_type = response.headers.get("Content-Type", "application/json")
        binary = response.headers.get(BINARY_HEADER)
        if self.request_log is not None and body is not None:  # kept if its owner asked
            self.request_log.offer(user, name, version, status, body, data)
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        if binary is not None:
            self.set_header(BINARY_HEADER, binary)
        self.finish(data)

    async def send(
        self, name: str, copies: list[tuple[str, dict[str, str]]], rest: str, body: bytes | None
    ) -> tuple[int, bytes, aiohttp.ClientResponse]:
        """Forward to the copy with the fewest calls in flight; a connection refused (a copy
        that died or is starting) is tried on the next copy, one cut while answering once
        (a copy killed meanwhile): every call the gateway forwards reads only (metadata,
        predictions), so sending it again is safe; a call that itself kills the copies
        answering it takes two at most."""
        headers = {"Content-Type": "application/json"}
        if BINARY_HEADER in self.request.headers:  # the v2 binary tensor extension
            headers[BINARY_HEADER] = self.request.headers[BINARY_HEADER]
        order, cut = least_busy(copies), False
        for attempt, (target, extra) in enumerate(order):
            last = attempt == len(order) - 1
            _IN_FLIGHT[target] = _IN_FLIGHT.get(target, 0) + 1
            try:
                async with connections().request(
                    self.request.method,
                    f"{target}/{rest}",
                    data=body,
                    headers={**headers, **extra},
                ) as response:
                    return response.status, await response.read(), response
            except aiohttp.ClientConnectorError:  # not listening (yet): just (re)started
                if last:
                    self.set_header("Retry-After", "2")
                    raise web.HTTPError(
                        503, f"Endpoint {name} is starting; retry in a few seconds"
                    ) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
                if last or cut:  # (a copy killed while answering: the next one answers)
                    raise web.HTTPError(502, f"Endpoint {name} did not answer: {e}") from None
                cut = True
            except (aiohttp.ClientError, TimeoutError) as e:
                raise web.HTTPError(502, f"Endpoint {name} did not answer: {e}") from None
            finally:
                _IN_FLIGHT[target] -= 1
                if not _IN_FLIGHT[target]:
                    del _IN_FLIGHT[target]
        raise web.HTTPError(503, f"Endpoint {name} has no copy running; retry in a few seconds")

    def pinned(self, user: str, name: str, path: re.Match, rest: str) -> tuple[str, str]:
        """The path forwarded and the version counted: a call that names no version goes to
        the one a canary rollout picks for it (serving.rollout), if one runs."""
        version = path["version"] or path["label"] or path["v2version"]
        calls = path["verb"] in (":predict", ":classify", ":regress") or path["v2verb"] == "/infer"
        pin = None
        if version is None and calls and self.rollouts is not None:
            pin = self.rollouts.pin(user, name, self.request.headers)
        if pin is None:
            return rest, version or "latest"
        if path["model"]:
            return f"v1/models/{path['model']}/versions/{pin}{path['verb']}", str(pin)
        return f"v2/models/{path['v2model']}/versions/{pin}/infer", str(pin)

    async def get(self, user: str, name: str, rest: str) -> None:
        await self.forward(user, name, rest)

    async def post(self, user: str, name: str, rest: str) -> None:
        await self.forward(user, name, rest)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # TF Serving clients read {"error": ...}
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args  # (tornado doubled each % without args)
        if status_code == 503:
            self.set_header("Retry-After", "2")
        self.set_header("Content-Type", "application/json")
        self.finish({"error": message})


def routes(prefix: str, api: str, args: dict[str, Any]) -> list[tuple]:
    return [
        (api + "/endpoints", EndpointsHandler, args),
        (api + r"/endpoints/([^/]+)", EndpointHandler, args),
        (api + r"/endpoints/([^/]+)/traffic", EndpointTrafficHandler, args),
        (api + r"/endpoints/([^/]+)/rollout", RolloutHandler, args),
        (api + r"/endpoints/([^/]+)/request-log", RequestLogHandler, args),
        (api + r"/endpoints/([^/]+)/drift-baseline", DriftBaselineHandler, args),
        (prefix + r"endpoints/([^/]+)/([^/]+)/(v[12](?:/.*)?)", GatewayHandler, args),
    ]
