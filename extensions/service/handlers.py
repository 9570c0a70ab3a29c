"""REST handlers of the hubforge service. Identity comes only from JupyterHub tokens."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyterhub.services.auth import HubAuthenticated
from tornado import web

from .. import __version__
from ..gpus import GpuAllocator, NotEnoughGpus
from ..httperrors import ExpectedErrors
from ..hub.passwords import PasswordStore, UserError
from ..jsonbody import json_object
from .names import SERVICE_NAME

CHANGING = {"requests": 0}  # requests that change something, in flight (see app._serve)


PER_USER = 8  # requests of one user worked on at once by views that reach users' files
PER_USER_WAIT = 60  # seconds a request waits for its turn (without a thread) before 429
_turns: dict[str, asyncio.Semaphore] = {}


class ServiceHandler(ExpectedErrors, HubAuthenticated, web.RequestHandler):
    """JSON handler that refuses any caller without a valid JupyterHub token."""

    _counted = False
    # views whose work reaches the caller's files (through the privileged helper): a user's
    # requests take turns, waiting without holding a thread, so what one user makes slow
    # (a huge folder, their helper children stopped) never holds up everyone else's
    takes_turns = False
    _turn: asyncio.Semaphore | None = None

    def on_finish(self) -> None:
        if self._counted:
            CHANGING["requests"] -= 1
            self._counted = False
        if self._turn is not None:
            self._turn.release()
            self._turn = None

    def initialize(
        self,
        hub_auth: Any,
        allocator: GpuAllocator,
        workbench: Any,
        quotas: Any = None,
        jobs: Any = None,
        endpoints: Any = None,
        accounts: Any = None,
        queue: Any = None,
        tunings: Any = None,
        watch: Any = None,
        schedules: Any = None,
        notifications: Any = None,
        traffic: Any = None,
        rollouts: Any = None,
        request_log: Any = None,
        concurrency: Any = None,
    ) -> None:
        """The service's engines; each route gets the ones its views use."""
        self.concurrency = concurrency  # endpoints' requests in flight (serving.replicas)
        self.request_log = request_log  # endpoints' sampled calls and drift (request_log)
        self.rollouts = rollouts  # endpoints' canary rollouts (serving.rollout)
        self.traffic = traffic  # what the gateway forwarded, per endpoint (serving.traffic)
        self.watch = watch  # jobs whose owners asked to be told when they end
        self.schedules = schedules  # notebooks run on a schedule (hubforge.schedules)
        self.notifications = notifications  # e-mail and webhooks (hubforge.notify)
        self.queue = queue  # the local job queue (None: jobs are never queued here)
        self.tunings = tunings  # tuning runs (hubforge.jobs.tuning)
        self.hub_auth = hub_auth
        self.allocator = allocator
        self.workbench = workbench
        self.quotas = quotas
        self.jobs = jobs
        self.endpoints = endpoints
        self.accounts = accounts

    async def prepare(self) -> None:
        if self.request.method not in ("GET", "HEAD", "OPTIONS") and not self._counted:
            CHANGING["requests"] += 1  # a stopping service lets it finish (a deploy, a submit)
            self._counted = True
        if self.current_user is None:
            raise web.HTTPError(
                403, "A valid JupyterHub token with access to the hubforge service is required"
            )
        if self.takes_turns:
            name = self.current_user["name"]
            turn = _turns.setdefault(name, asyncio.Semaphore(PER_USER))
            try:
                await asyncio.wait_for(turn.acquire(), PER_USER_WAIT)
            except TimeoutError:
                raise web.HTTPError(
                    429,
                    f"{name} has {PER_USER} requests being worked on and more waiting: try "
                    "again when they are done",
                ) from None
            self._turn = turn

    def check_xsrf_cookie(self) -> None:
        # Token-authenticated API: browsers' cookies are not accepted, so no XSRF risk.
        return None

    @property
    def identity(self) -> dict[str, Any]:
        model = self.current_user
        return {
            "kind": model.get("kind", "user"),
            "name": model["name"],
            "admin": bool(model.get("admin", False)),
        }

    @property
    def is_privileged(self) -> bool:
        """Admins and the hub side (which calls with this service's own token)."""
        ident = self.identity
        return ident["admin"] or (ident["kind"] == "service" and ident["name"] == SERVICE_NAME)

    @property
    def passwords(self) -> PasswordStore:
        return PasswordStore(self.workbench.passwords_file, self.workbench.sharing_refusal())

    def require_admin(self) -> None:
        if not self.identity["admin"]:
            raise web.HTTPError(403, "Only hub admins may manage users")

    def require_privileged(self) -> None:
        if not self.is_privileged:
            raise web.HTTPError(403, "Only admins and the hub may do this")

    def json_body(self) -> dict[str, Any]:
        """The request's JSON object; 400 with a clear message otherwise."""
        return json_object(self.request.body)

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        message = reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            # (tornado doubles each % of a message given without args: undone here)
            message = exc.log_message % exc.args
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "reason": reason}))


class StatusHandler(ServiceHandler):
    def get(self) -> None:
        gpus = self.allocator.summary()
        mine = None if self.is_privileged else self.identity["name"]
        if mine is not None:
            gpus["allocations"] = self.allocator.allocations(mine)
        queue = self.queue.snapshot(mine) if self.queue is not None else []
        # for everyone: GPUs the team's queued jobs wait for (a GPU server's sidebar warns
        # that it stops sooner when idle meanwhile), no names
        wanted = self.queue.gpus_wanted() if self.queue is not None else 0
        waiting = {"gpus": wanted, "idle_limit_s": self.workbench.gpu_idle_timeout_when_queued}
        self.write_json(
            {
                "service": SERVICE_NAME,
                "version": __version__,
                "mode": "local",
                "identity": self.identity,
                "gpus": gpus,
                "queue": queue,
                "waiting_for_gpus": waiting,
            }
        )


class UserHandler(ServiceHandler):
    """What the service holds for one user; only that user, admins and the hub may look."""

    def get(self, name: str) -> None:
        if name != self.identity["name"] and not self.is_privileged:
            raise web.HTTPError(403, f"{self.identity['name']} may not read {name}'s resources")
        self.write_json({"name": name, "gpus": self.allocator.allocations(name)})


class UsersHandler(ServiceHandler):
    """Hub admins add password users: POST {"name", "admin"} -> {"name", "password"}."""

    def post(self) -> None:
        self.require_admin()
        body = self.json_body()
        name, admin = body.get("name"), body.get("admin", False)
        if not isinstance(admin, bool):
            raise web.HTTPError(400, f"'admin' must be true or false, got {admin!r}")
        try:
            password = self.passwords.add(name if isinstance(name, str) else "", admin=admin)
        except UserError as e:
            status = 409 if "exists" in str(e) else 403 if "runs as the ordinary" in str(e) else 400
            raise web.HTTPError(status, str(e)) from None
        self.write_json({"name": name, "admin": admin, "password": password}, status=201)


class PasswordHandler(ServiceHandler):
    """Hub admins reset a user's password: POST -> {"name", "password"}. A user changes their
    own: PUT {"current": ..., "new": ...} with their token (the hub's Change password page)."""

    async def put(self, name: str) -> None:
        ident = self.identity
        if ident["kind"] != "user" or ident["name"] != name:
            raise web.HTTPError(403, "Users change only their own password")
        body = self.json_body()
        current, new = body.get("current"), body.get("new")
        if (
            not isinstance(current, str)
            or not isinstance(new, str)
            or set(body)
            - {
                "current",
                "new",
            }
        ):
            raise web.HTTPError(400, 'Send {"current": "<your password>", "new": "<new one>"}')
        store = self.passwords
        if await asyncio.to_thread(store.verify, name, current) is None:  # scrypt: off the loop
            raise web.HTTPError(403, "The current password is not right; nothing changed")
        try:
            await asyncio.to_thread(store.reset, name, new)
        except UserError as e:
            raise web.HTTPError(400, f"{e}; nothing changed") from None
        self.write_json({"name": name, "changed": True})

    def post(self, name: str) -> None:
        self.require_admin()
        try:
            password = self.passwords.reset(name)
        except UserError as e:
            raise web.HTTPError(404, str(e)) from None
        self.write_json({"name": name, "password": password})


class RootHandler(web.RequestHandler):
    """Unauthenticated liveness answer at the service's prefix (the hub checks it)."""

    def get(self) -> None:
        self.finish({"service": SERVICE_NAME, "version": __version__})


class GpuHandler(ServiceHandler):
    """POST {"owner", "count"} allocates; DELETE /gpus/<owner> releases."""

    def post(self) -> None:
        self.require_privileged()
        body = self.json_body()
        owner, count = body.get("owner"), body.get("count")
        if not isinstance(owner, str) or not owner:
            raise web.HTTPError(400, "'owner' must be a non-empty string like 'alice/'")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise web.HTTPError(400, f"'count' must be an integer >= 0, got {count!r}")
        try:
            devices = self.allocator.allocate(owner, count)
        except NotEnoughGpus as e:
            raise web.HTTPError(409, str(e)) from None
        self.write_json({"owner": owner, "devices": devices}, status=201)

    def delete(self, owner: str) -> None:
        self.require_privileged()
        released = self.allocator.release(owner)
        self.write_json({"owner": owner, "released": released})
