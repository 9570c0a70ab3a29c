"""One user's jobs, endpoints and labeling projects at a glance (the hub's home page).

GET .../api/users/<name>/overview -> {"jobs": [...], "endpoints": [...], "projects": [...],
"labeling": "ok" | why not}. Only the hub side (this service's own token) and admins may
ask: the hub's home page asks for the user who is signed in, never for a name from the
browser.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..jobs.display import progress_line
from .handlers import ServiceHandler

MAX_JOBS = 20
LABELING_TIMEOUT = 5.0  # the home page waits no longer for Label Studio


def job_summary(record: dict[str, Any], progress: dict[str, Any]) -> dict[str, Any]:
    spec = record.get("spec") or {}
    return {
        "id": record["id"],
        "name": spec.get("name") or "",
        "source": spec.get("source") or "",
        "state": record["state"],
        "workers": spec.get("workers", 1),
        "created": record.get("created"),
        "reason": record.get("reason") or "",
        "progress": progress_line(record["state"], progress),
    }


def project_summaries(credentials: dict[str, Any]) -> list[dict[str, Any]]:
    """The projects of one Label Studio account, with Label Studio's own counts."""
    from label_studio_sdk import LabelStudio

    from ..labeling.api import Project

    ls = LabelStudio(
        base_url=credentials["api_url"], api_key=credentials["token"], timeout=LABELING_TIMEOUT
    )
    return [Project(raw, ls).summary() for raw in ls.projects.list()]


class OverviewHandler(ServiceHandler):
    async def get(self, name: str) -> None:
        self.require_privileged()
        jobs = []
        for record in (await asyncio.to_thread(self.jobs.list, name))[:MAX_JOBS]:
            try:
                progress = await asyncio.to_thread(self.jobs.progress, name, record["id"])
            except Exception:  # a damaged job is listed as such, without progress
                progress = {}
            jobs.append(job_summary(record, progress))
        gateway = f"{self.settings['service_prefix']}endpoints/{name}"
        endpoints = [
            {
                "name": r["name"],
                "running": bool(r.get("running")),
                "versions": r.get("versions") or [],
                "url": f"{gateway}/{r['name']}/v1/models/{r['name']}",
            }
            for r in await asyncio.to_thread(self.endpoints.list, name)
        ]
        projects: list[dict[str, Any]] = []
        labeling = "ok"
        if self.accounts is None:
            labeling = "Label Studio is not installed on this workbench"
        else:
            creds = self.accounts.existing(name)  # looking never makes an account
            try:
                if creds is not None:
                    projects = await asyncio.wait_for(
                        asyncio.to_thread(project_summaries, creds), LABELING_TIMEOUT + 1
                    )
            except Exception as e:  # starting, away, or slow: the rest of the page still shows
                labeling = f"Label Studio did not answer ({type(e).__name__}); try again soon"
        self.write_json(
            {
                "user": name,
                "jobs": jobs,
                "endpoints": endpoints,
                "projects": projects,
                "labeling": labeling,
            }
        )


def routes(api: str, args: dict[str, Any]) -> list[tuple]:
    return [(api + r"/users/([^/]+)/overview", OverviewHandler, args)]
