"""Which hubforge service starts scheduled runs when several run at once on Kubernetes
(#35): the holder of a ``coordination.k8s.io/v1`` Lease, as Kubernetes' own controllers
elect theirs. A replica takes the Lease when it is free or its holder stopped renewing it
for ``duration`` seconds, and renews it while it holds it; the API server's
``resourceVersion`` check lets only one of two replicas taking it at once succeed. Only the
holder's pass plans and submits runs, so two replicas never start one run twice (a run's
job id is fixed besides: a second submit would find the first)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger("hubforge.schedules")
LEASE = "hubforge-schedules"
DURATION = 15  # seconds a holder that stopped renewing keeps the Lease


def _micro(when: float) -> str:
    """A Lease's MicroTime: 2026-12-06T01:50:02.123456Z."""
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class LeaseElection:
    """``kube``: a ``hubforge.kube.KubeAPI``; ``is_leader()`` takes or renews the Lease
    and says whether this replica holds it now."""

    def __init__(
        self,
        kube: Any,
        namespace: str,
        name: str = LEASE,
        identity: str | None = None,
        duration: int = DURATION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.identity = (
            identity or f"{os.environ.get('HOSTNAME', 'service')}-{uuid.uuid4().hex[:8]}"
        )
        self.duration, self.clock = duration, clock
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self._sure_until = 0.0  # held until then for sure: renewed a third of duration ago

    def _spec(self, now: float, transitions: int, acquired: float | None = None) -> dict:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": _micro(acquired if acquired is not None else now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    def is_leader(self) -> bool:
        """Asks the API server at most every third of ``duration`` while this replica holds
        the Lease (renewed then), every time while another does."""
        now = self.clock()
        if now < self._sure_until:
            return True
        try:
            held = self.kube.run(self._take_or_renew())
            self._sure_until = now + self.duration / 3 if held else 0.0
            return held
        except ApiException as e:
            if e.status != 409:  # 409: another replica wrote it first
                log.warning("Lease %s: %s", self.name, e)
            return False
        except Exception as e:  # the API server unreachable: no runs started meanwhile
            log.warning("Lease %s: %s", self.name, e)
            return False

    async def _take_or_renew(self) -> bool:
        now = self.clock()
        try:
            lease = await self.kube.call("GET", f"{self.path}/{self.name}")
        except ApiException as e:
            if e.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, 0),
            }
            await self.kube.call("POST", self.path, body)
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _seconds(spec.get("renewTime")) or 0.0
        expired = now - renewed > (spec.get("leaseDurationSeconds") or self.duration)
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (holder != self.identity)
        acquired = _seconds(spec.get("acquireTime")) if holder == self.identity else None
        lease["spec"] = self._spec(now, transitions, acquired)
        await self.kube.call("PUT", f"{self.path}/{self.name}", lease)  # resourceVersion kept
        return True
