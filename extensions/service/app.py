"""Entry point of the hubforge service process (``python -m hubforge.service.app``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import HubAuth
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.ioloop import PeriodicCallback
from traitlets import Unicode, default
from traitlets.config import Application

from ..gpus import GpuAllocator
from ..jobs.handlers import release_finished
from ..jobs.handlers import routes as jobs_routes
from ..jobs.queue import LocalQueue
from ..jobs.tuning import Tunings
from ..jobs.tuning_handlers import ServiceTrialJobs
from ..jobs.tuning_handlers import routes as tuning_routes
from ..jobs.watch import JobWatch
from ..labeling import server as label_studio
from ..labeling.handlers import routes as labeling_routes
from ..notify import Notifications
from ..schedules.handlers import routes as schedule_routes
from ..schedules.runs import ScheduledRuns
from ..schedules.store import Schedules, file_clock
from ..serving.batch_sizes import BatchSizes
from ..serving.handlers import routes as serving_routes
from ..serving.replicas import Concurrency
from ..serving.request_log import RequestLog
from ..serving.rollout import Rollouts, rollout_message
from ..serving.traffic import BIN as TRAFFIC_BIN
from ..serving.traffic import Traffic
from ..workbench import Workbench, load_workbench
from .accesslog import log_request
from .culler import IdleCuller
from .handlers import (
    CHANGING,
    GpuHandler,
    PasswordHandler,
    RootHandler,
    StatusHandler,
    UserHandler,
    UsersHandler,
)
from .names import SERVICE_NAME
from .overview import routes as overview_routes
from .proxy_errors import ProxyErrorHandler
from .quotas import Quotas
from .team import routes as team_routes
from .user_sync import INTERVAL as USER_SYNC_INTERVAL
from .user_sync import UserSync

STOP_GRACE = 25  # seconds a stopping service gives requests in flight (its keeper: 30)


class FreshRefusals(HubAuth):
    """Remembers a token the hub accepted for a minute, never a refusal: a token the hub could
    not confirm for a moment (a full disk, a hub restart) works as soon as it answers again."""

    async def _check_hub_authorization(
        self, url: str, api_token: str, cache_key: str | None = None, use_cache: bool = True
    ) -> dict | None:
        data = await super()._check_hub_authorization(url, api_token, cache_key, use_cache)
        if data is None and use_cache and cache_key is not None:
            self.cache.pop(cache_key, None)
        return data

    async def _api_request(self, method: str, url: str, /, **kwargs: Any) -> Any:
        """A hub that does not answer (restarting, see hubforge.data_path) is a 503 to retry,
        not a 500: tokens checked within the last minute keep working meanwhile."""
        try:
            return await super()._api_request(method, url, **kwargs)
        except web.HTTPError as e:
            if e.status_code != 500 or "Failed to connect" not in (e.log_message or ""):
                raise
            raise web.HTTPError(
                503, "The hub is not answering (restarting?): try again in a few seconds"
            ) from None


def backend_class(group: str, name: str) -> type:
    """The backend registered under ``name`` in the entry points ``group``
    ('hubforge.job_backends', 'hubforge.endpoint_backends')."""
    (ep,) = entry_points(group=group, name=name)
    return ep.load()


class HubforgeService(Application):
    """Runs behind JupyterHub at /services/hubforge/ and authenticates with its tokens."""

    name = "hubforge-service"
    description = __doc__

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO  # culled servers and restarted endpoints belong in the hub's log

    config_file = Unicode(config=True, help="Hubforge config file (default: $HUBFORGE_CONFIG).")

    @default("config_file")
    def _default_config_file(self) -> str:
        return os.environ.get("HUBFORGE_CONFIG", "")

    service_url = Unicode(config=True, help="Where to listen (default: $JUPYTERHUB_SERVICE_URL).")

    @default("service_url")
    def _default_service_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8002")

    prefix = Unicode(config=True, help="URL prefix (default: $JUPYTERHUB_SERVICE_PREFIX).")

    @default("prefix")
    def _default_prefix(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")

    def make_app(self, workbench: Workbench) -> web.Application:
        hub_auth = FreshRefusals(
            api_token=os.environ["JUPYTERHUB_API_TOKEN"],
            api_url=os.environ["JUPYTERHUB_API_URL"],
            access_scopes={f"access:services!service={SERVICE_NAME}"},
            cache_max_age=60,
        )
        allocator = GpuAllocator(workbench.gpus, workbench.service_dir / "gpus.json")
        args = {
            "hub_auth": hub_auth,
            "allocator": allocator,
            "workbench": workbench,
            "quotas": Quotas.from_workbench(workbench),
        }
        jobs = backend_class("hubforge.job_backends", workbench.job_backend).from_workbench(
            workbench
        )
        args["queue"] = self.queue = LocalQueue.from_workbench(workbench, jobs, allocator)
        self.endpoints = backend_class(
            "hubforge.endpoint_backends", workbench.endpoint_backend
        ).from_workbench(workbench)
        self.jobs = jobs
        self.traffic = Traffic(workbench.service_dir / "endpoint-traffic")
        self.rollouts = Rollouts(workbench.service_dir / "rollouts")
        self.batch_sizes = BatchSizes(self.traffic)
        self._following: dict[tuple[str, str], tuple[int, float]] = {}  # (tries, next)
        self.concurrency = Concurrency(
            up_window=workbench.endpoint_scale_up_window,
            down_window=workbench.endpoint_scale_down_delay,
        )
        self.request_log = RequestLog(
            workbench.service_dir / "request-logs", self.endpoints.keep_requests
        )
        submitter = ServiceTrialJobs(jobs, self.queue, args["quotas"], self.endpoints)
        args["tunings"] = self.tunings = Tunings(workbench.service_dir / "tunings", submitter)
        self._schedules(workbench, submitter)
        self._periodic_work(workbench, jobs, allocator)
        api = url_path_join(self.prefix, "api")
        accounts = self._label_studio_accounts(workbench)
        hub_prefix = os.environ.get("JUPYTERHUB_BASE_URL", workbench.base_url)
        return web.Application(
            log_function=log_request,
            service_prefix=self.prefix,
            hub_prefix=hub_prefix,
            handlers=self._routes(api, args, jobs, accounts),
        )

    def _routes(self, api: str, args: dict, jobs: object, accounts: object) -> list[tuple]:
        """Each capability's REST views, given the engines they use."""
        return (
            jobs_routes(
                api, {**args, "jobs": jobs, "endpoints": self.endpoints, "watch": self.watch}
            )
            + tuning_routes(api, args)
            + schedule_routes(
                api, {**args, "schedules": self.schedules, "notifications": self.notifications}
            )
            + serving_routes(
                self.prefix,
                api,
                {
                    **args,
                    "endpoints": self.endpoints,
                    "jobs": jobs,
                    "traffic": self.traffic,
                    "rollouts": self.rollouts,
                    "notifications": self.notifications,
                    "request_log": self.request_log,
                    "concurrency": self.concurrency,
                },
            )
            + labeling_routes(api, {**args, "accounts": accounts})
            + overview_routes(
                api, {**args, "jobs": jobs, "endpoints": self.endpoints, "accounts": accounts}
            )
            + team_routes(
                api,
                {
                    **args,
                    "jobs": jobs,
                    "endpoints": self.endpoints,
                    "schedules": self.schedules,
                    "traffic": self.traffic,
                    "rollouts": self.rollouts,
                },
            )
            + [
                (self.prefix, RootHandler),
                (self.prefix + r"proxy-error/(\d+)", ProxyErrorHandler),
                (api + "/status", StatusHandler, args),
                (api + "/gpus", GpuHandler, args),
                (api + r"/gpus/(.+)", GpuHandler, args),
                (api + "/users", UsersHandler, args),
                (api + r"/users/([^/]+)", UserHandler, args),
                (api + r"/users/([^/]+)/password", PasswordHandler, args),
            ]
        )

    def _rollout_ended(self, rollout: dict) -> None:
        """A canary promoted or rolled back: the endpoint's folder follows (as its owner),
        and the owner is told when they asked (canary.notify)."""
        owner, name = rollout["owner"], rollout["name"]
        self._follow(rollout)
        self.log.info("Rollout of %s/%s: %s", owner, name, rollout["history"][-1]["event"])
        settings = rollout["settings"].get("notify")
        if settings:
            self.notifications.send_later(
                owner,
                settings,
                rollout_message(rollout, self.notifications.public_url),
                lambda told: self.log.info("Rollout of %s/%s told: %s", owner, name, told),
            )

    def _follow(self, rollout: dict) -> None:
        """The endpoint's model folder follows an ended rollout: as the owner, in a thread of
        its own (a slow copy of one owner's model holds up nobody else's rollout; the
        gateway already sends calls where the rollout says). Tried again by the rollout
        pass until it is done (a service that died meanwhile, a folder that refused), at
        most every 5 s doubling to 5 min."""
        key = (rollout["owner"], rollout["name"])
        tries, next_try = self._following.get(key, (0, 0.0))
        if tries < 0 or time.monotonic() < next_try:
            return  # under way, or not yet time to try again
        self._following[key] = (-1, 0.0)
        threading.Thread(target=self._end_canary, args=(rollout, tries), daemon=True).start()

    def _end_canary(self, rollout: dict, tries: int) -> None:
        owner, name, key = rollout["owner"], rollout["name"], (rollout["owner"], rollout["name"])
        try:
            self.endpoints.end_canary(
                owner, name, rollout["canary"], rollout["state"] == "promoted"
            )
        except Exception as e:  # e.g. the owner's labels.json is damaged: said, not lost
            delay = min(300.0, 5.0 * 2**tries)
            self._following[key] = (tries + 1, time.monotonic() + delay)
            self.log.error(
                "Rollout of %s/%s: the endpoint's folder not updated (%s); trying again in %.0f s",
                owner,
                name,
                e,
                delay,
            )
            return
        self._following.pop(key, None)
        self.rollouts.folder_done(owner, name, rollout["ended"])

    def _drift_alert(self, owner: str, name: str, state: dict) -> None:
        """An endpoint's inputs drifted from its baseline: logged, and its owner told."""
        text = (
            f"Endpoint {name}: its callers' inputs drifted from the training data (feature "
            f"{state.get('worst_feature')}: PSI {state.get('psi_max')}, "
            f"over {state.get('threshold')})"
        )
        self.log.warning("%s/%s: %s", owner, name, text)
        settings = (self.request_log.get(owner, name) or {}).get("notify")
        if settings:
            message = {
                "subject": f"Hubforge: the inputs of {name} drifted",
                "text": text,
                "state": "failed",
                "data": {"endpoint": name, "drift": state},
            }
            self.notifications.send_later(owner, settings, message, lambda told: None)

    def _schedules(self, workbench: Workbench, submitter: ServiceTrialJobs) -> None:
        """Schedules' store and the pass that submits and follows their runs."""
        given = workbench.schedule_clock_file  # (relative: in the service's folder)
        clock = [file_clock(workbench.service_dir / given)] if given else []
        self.schedules = Schedules(
            workbench.service_dir / "schedules",
            *clock,
            max_per_owner=workbench.max_schedules_per_user,
        )
        self.notifications = Notifications(config=workbench.config)
        self.watch = JobWatch(workbench.service_dir / "job-watch", self.jobs, self.notifications)
        kube = getattr(self.jobs, "kube", None)  # Kubernetes: maybe several services
        leader = None
        if kube:  # (its Kubernetes client is not imported on one machine: a quicker start)
            from ..schedules.leader import LeaseElection

            leader = LeaseElection(kube, self.jobs.settings.namespace).is_leader
        self.scheduled = ScheduledRuns(self.schedules, submitter, self.notifications, leader=leader)

    def _periodic_work(self, workbench: Workbench, jobs: object, allocator: GpuAllocator) -> None:
        """GPU release of finished jobs, the idle culler, and the hub's users in step with
        the password file (started with the service)."""
        hub_api, token = os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"]
        # every second: a GPU a job gave back goes to the next queued job soon after
        self.reconcile = PeriodicCallback(self._releasing(jobs, allocator, self.queue), 1000)
        # tuning runs collect ended trials and start new ones (their search process may
        # take seconds to start: a thread of their own, never holding up the GPU release)
        self.tuning_pass = PeriodicCallback(_in_turn(self.tunings.run_pass), 1000)

        # schedules' runs due now are submitted, and submitted ones followed to their end;
        # owners who asked are told of their ended jobs
        def schedules_and_watched_jobs() -> None:
            self.scheduled.run_pass()
            self.watch.run_pass()

        self.schedule_pass = PeriodicCallback(_in_turn(schedules_and_watched_jobs), 1000)

        self._endpoint_passes()
        # the sampled calls of endpoints with a baseline, against it, every minute
        self.drift_check = PeriodicCallback(
            _in_turn(lambda: self.request_log.check_drift(self._drift_alert)),
            workbench.drift_check_interval * 1000,
        )
        # GPUs that waiting work asks for: the local queue's, or on Kubernetes Kueue's pending
        # Workloads' (read in a thread: an API call)
        kueue = getattr(jobs, "gpus_waiting", None)
        wanted = (lambda: asyncio.to_thread(kueue)) if kueue else self.queue.gpus_wanted
        self.culler = IdleCuller.from_workbench(
            workbench, hub_api, token, self.log, gpus_wanted=wanted
        )
        self.cull = PeriodicCallback(self.culler.cull_safely, workbench.cull_interval * 1000)
        sync = UserSync(workbench.passwords_file, hub_api, token, self.log)
        self.user_sync = PeriodicCallback(sync.tick, USER_SYNC_INTERVAL * 1000)

    def _endpoint_passes(self) -> None:
        """Endpoints' periodic work: rollouts, copies, traffic and batch sizes."""

        # canary rollouts judged every second: stepped up, promoted or rolled back
        def rollouts() -> None:
            self.rollouts.run_pass(self.traffic.version_stats, self._rollout_ended)
            for rollout in self.rollouts.unfinished():  # folders that did not follow yet
                self._follow(rollout)

        self.rollout_pass = PeriodicCallback(_in_turn(rollouts), 1000)

        # local endpoints' copies: those that died restarted, the number scaled on the
        # gateway's requests in flight (on Kubernetes the Deployment and its HPA do it)
        def replicas() -> None:
            for line in self.endpoints.supervise(self.concurrency.wanted):
                self.log.info("%s", line)

        self.replica_pass = PeriodicCallback(_in_turn(replicas), 1000)
        # the calls in flight, sampled on the loop (a little arithmetic): never held up
        self.concurrency_sample = PeriodicCallback(self.concurrency.sample, 1000)

        # the gateway's counts of the endpoints' requests, on disk every 10 s
        def save_traffic_and_requests() -> None:
            self.traffic.save()
            self.request_log.flush()  # the sampled calls, to their owners' areas

        self.traffic_save = PeriodicCallback(
            _in_turn(save_traffic_and_requests), TRAFFIC_BIN * 1000
        )
        # rows per model call, read from each endpoint process (its owner's program: a pass
        # of its own, so a page that takes long or says nonsense holds up no save)
        self.batch_pass = PeriodicCallback(
            _in_turn(lambda: self.batch_sizes.run_pass(self.endpoints)), TRAFFIC_BIN * 1000
        )

    @staticmethod
    def _label_studio_accounts(workbench: Workbench) -> label_studio.Accounts | None:
        """Label Studio's accounts of hub users, when there is a Label Studio."""
        if not os.environ.get("HUBFORGE_LABEL_STUDIO_URL"):
            return None
        # on Kubernetes the chart passes the service key from its Secret
        service_key = (
            os.environ.get("HUBFORGE_LS_SERVICE_KEY")
            or label_studio.admin_credentials(workbench.state_dir)["service_key"]
        )
        return label_studio.Accounts(
            workbench.service_dir, os.environ["HUBFORGE_LABEL_STUDIO_URL"], service_key
        )

    @staticmethod
    def _releasing(jobs: object, allocator: GpuAllocator, queue: LocalQueue) -> object:
        """The periodic GPU release of ended jobs, then the queue's pass (jobs whose turn has
        come start), in a thread (they read jobs' records, through the helper with per-user
        accounts: never on the loop); one at a time."""

        def release_and_start() -> None:
            release_finished(jobs, allocator)
            queue.run_pass()

        return _in_turn(release_and_start)

    def start(self) -> None:
        workbench = load_workbench(self.config_file or None)
        asyncio.run(self._serve(workbench))

    async def _serve(self, workbench: Workbench) -> None:
        from concurrent.futures import ThreadPoolExecutor

        # engines run in threads (asyncio.to_thread): enough that a few slow calls of one
        # user (each owner has at most 4 at the helper) leave room for everyone else's
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=32, thread_name_prefix="engine")
        )
        app = self.make_app(workbench)
        # jobs a crash of the whole workbench interrupted resume before anyone asks for them
        # (a job asked about with no supervisor running is reported killed)
        resume = getattr(self.jobs, "resume_interrupted", None)
        resumed = await asyncio.to_thread(resume) if resume else []
        if resumed:
            self.log.info("Resumed jobs the workbench's stop interrupted: %s", ", ".join(resumed))
        url = urlparse(self.service_url)
        server = app.listen(url.port or 80, url.hostname or "127.0.0.1", xheaders=True)
        self.reconcile.start()
        self.tuning_pass.start()
        self.schedule_pass.start()
        self.traffic_save.start()
        self.batch_pass.start()
        self.rollout_pass.start()
        self.replica_pass.start()
        self.concurrency_sample.start()
        self.drift_check.start()
        self.cull.start()
        self.user_sync.start()
        restarted = await asyncio.to_thread(self.endpoints.restore)
        if restarted:
            self.log.info("Restarted endpoints: %s", ", ".join(restarted))
        self.log.info("hubforge service listening on %s%s", self.service_url, self.prefix)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        # stopping (`hubforge down`, a restart): no new requests; those that change something
        # (a deploy, a submit) finish and answer what they did, within the keeper's 30 s
        server.stop()
        deadline = loop.time() + STOP_GRACE
        while CHANGING["requests"] > 0 and loop.time() < deadline:
            await asyncio.sleep(0.1)
        self.tunings.oracle.close()
        await asyncio.to_thread(self.traffic.save)  # the last seconds' counts too
        await asyncio.to_thread(self.request_log.flush)


def _in_turn(work: Any) -> Any:
    """A periodic callback that runs ``work`` in a thread, skipped while the last one
    still runs."""
    running: list[asyncio.Future] = []

    def tick() -> None:
        if running and not running[0].done():
            return
        running[:] = [asyncio.ensure_future(asyncio.to_thread(work))]

    return tick


def main() -> None:
    HubforgeService.launch_instance()


if __name__ == "__main__":
    main()
