"""The JupyterHub configuration of the local workbench, as code.

``jupyterhub_config.py`` only calls :func:`configure`. Settings for JupyterHub's own classes in
the user's hubforge_config.py are merged last, so they win over these defaults.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from hubforge.accounts import service_account_name, state_file_mode
from hubforge.atomic import write_text
from hubforge.data_path import KEPT_BY_UP
from hubforge.labeling import server as label_studio
from hubforge.processes import MARKER as WORKBENCH_MARKER
from hubforge.processes import free_port
from hubforge.service.names import CALL_ENDPOINTS_SCOPE, SERVICE_NAME
from hubforge.workbench import SOURCE_TREE, Workbench, load_config, load_workbench

from . import database
from .home import overview_var, team_var


def find_proxy() -> str:
    """configurable-http-proxy installed into the project by npm, else one on PATH."""
    candidates = [
        os.environ.get("HUBFORGE_CHP", ""),
        str(SOURCE_TREE / "node_modules" / ".bin" / "configurable-http-proxy"),
        # beside the environment Hubforge runs in (/opt/hubforge for a clone closed to others)
        str(Path(sys.prefix).parent / "node_modules" / ".bin" / "configurable-http-proxy"),
        shutil.which("configurable-http-proxy") or "",
    ]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError(
        "configurable-http-proxy not found: run `npm ci` in the Hubforge folder "
        "(the README's first command does it) or set HUBFORGE_CHP"
    )


def proxy_command(workbench: Workbench) -> list[str]:
    """configurable-http-proxy; with per-user accounts started by the privileged helper as
    the workbench's own ``hf<wb>_proxy`` account (made by `hubforge up`) through a relay of
    the hub's (see :func:`proxy_entry`): no shared component keeps root it does not need.
    A port below 1024 is bound with that one capability (CAP_NET_BIND_SERVICE), never as
    root (see :func:`hubforge.hub_services.low_port_prefix`)."""
    if workbench.isolation != "accounts":
        return [find_proxy()]
    return [*relay_command(workbench), "proxy", "--"]


def proxy_entry(workbench: Workbench) -> dict[str, Any]:
    """How the helper starts the proxy: its command and account (args come from the hub)."""
    from hubforge.accounts import service_account_name

    name = service_account_name("proxy", workbench.state_dir)
    entry = {"name": "proxy", "command": [find_proxy()], "user": name}
    if workbench.port < 1024:
        entry["bind_below_1024"] = True
    return entry


def service_token(workbench: Workbench) -> str:
    """The hub<->service token, generated once and kept 0600 in the state folder."""
    path = workbench.state_dir / "service-token"
    if not path.exists():
        write_text(path, secrets.token_hex(32), mode=state_file_mode(path))
    return path.read_text().strip()


def custom_scopes() -> dict[str, dict[str, str]]:
    return {
        CALL_ENDPOINTS_SCOPE: {
            "description": "Call Hubforge model endpoints (TF Serving REST API). Filter with "
            "!user=<owner> for all of an owner's endpoints, or !server=<owner>/<endpoint>."
        }
    }


def roles(password_users: bool = True) -> list[dict[str, Any]]:
    """Roles of users, servers and the hubforge service (local and Kubernetes; with
    ``password_users`` the service adds the users made with a password to the hub)."""
    access = f"access:services!service={SERVICE_NAME}"
    # Label Studio in every user's Services menu (the link signs them in: templates/page.html);
    # Label Studio checks its own sessions, this scope opens nothing else
    labeling = f"access:services!service={label_studio.SERVICE}"
    return [
        # users may call their own endpoints, and mint tokens that only do that
        {"name": "user", "scopes": ["self", access, labeling, f"{CALL_ENDPOINTS_SCOPE}!user"]},
        {"name": "server", "scopes": ["users:activity!user", "access:servers!server", access]},
        {
            "name": "hubforge-service",
            # read servers' activity and profile; stop idle ones (culling per profile); add
            # the users made with a password to the hub (its password file is the service's)
            "scopes": ["read:users", "list:users", "read:servers", "servers", access]
            + (["admin:users"] if password_users else []),
            "services": [SERVICE_NAME],
        },
    ]


def keeper() -> list[str]:
    """The prefix that keeps a managed service running (restarted within a second)."""
    return [sys.executable, "-m", "hubforge.keeper"]


def fixed_port(name: str) -> int:
    """A loopback port that stays the same while one `hubforge up` runs: it sets
    HUBFORGE_<NAME>_PORT once, so a restarted hub and its services come back where running
    servers and endpoints expect them. Without it (the hub run by hand): a free port."""
    value = os.environ.get(f"HUBFORGE_{name.upper()}_PORT", "")
    return int(value) if value.isdigit() else free_port()


FIXED_PORTS = ("hub", "proxy_api", "service", "label_studio")
SERVICE_MODULE = "hubforge.service.app"  # started through hubforge.fast_start


def marker_env(workbench: Workbench) -> dict[str, str]:
    """What marks a process as this workbench's (and tells it which one it is)."""
    marker = {WORKBENCH_MARKER: workbench.data_dir, "HUBFORGE_DIR": workbench.data_dir}
    if os.environ.get("HUBFORGE_CONFIG"):
        marker["HUBFORGE_CONFIG"] = os.environ["HUBFORGE_CONFIG"]
    return marker


def services(workbench: Workbench, bare: bool = False) -> list[dict[str, Any]]:
    """The hub's managed services as JupyterHub service entries (command, environment and
    the account each runs as). With per-user accounts the hub runs none of them itself: the
    privileged helper builds the very same entries and starts them (hubforge.privileged);
    the hub's own (``bare``) then leaves out what only the helper may read."""
    marker = marker_env(workbench)
    service_url = f"http://127.0.0.1:{fixed_port('service')}"
    # the hub starts services with this environment only: settings that may come from the
    # hub's own environment travel explicitly (the service runs jobs and endpoints as owners)
    service_env = {**marker, "HUBFORGE_ISOLATION": workbench.isolation}
    entries = [
        {
            "name": SERVICE_NAME,
            "url": service_url,
            "api_token": service_token(workbench),
            # the keeper restarts a crashed service within a second (gateway back in seconds)
            "command": [*keeper(), sys.executable, "-m", "hubforge.fast_start", SERVICE_MODULE],
            "environment": service_env,
            "display": False,
            "timeout": 120,  # a busy machine imports slowly; the hub routes nothing until then
        }
    ]
    if workbench.isolation == "accounts":
        # its own system account, never root: users' files and workloads through the helper
        entries[0]["user"] = service_account_name("svc", workbench.state_dir)
        entries[0]["cwd"] = str(workbench.service_dir)
    if workbench.label_studio_python:
        port = fixed_port("label_studio")
        ls = label_studio.hub_service(workbench, port, marker, environment_too=not bare)
        ls["command"] = [*keeper(), *ls["command"]]
        entries.append(ls)
        # the hubforge service provisions accounts and talks to it on loopback
        service_env["HUBFORGE_LABEL_STUDIO_URL"] = ls["url"] + label_studio.prefix(
            workbench.base_url
        )
        if workbench.isolation == "accounts" and not bare:
            # the service may not read state/ (root's): the helper hands it the key it needs
            key = label_studio.admin_credentials(workbench.state_dir)["service_key"]
            service_env["HUBFORGE_LS_SERVICE_KEY"] = key
    return entries


def through_helper(workbench: Workbench, entry: dict[str, Any]) -> dict[str, Any]:
    """The hub's entry for a service the helper starts: a relay of the hub's own account
    (``python -m hubforge.helper_client service NAME``) that lives as long as the service."""
    hidden = {"command", "environment", "cwd", "user"}
    relay = [*relay_command(workbench), entry["name"]]
    return {**{k: v for k, v in entry.items() if k not in hidden}, "command": relay}


def external(entry: dict[str, Any]) -> dict[str, Any]:
    """The hub's entry for a service `hubforge up` runs: where it listens, no command."""
    hidden = {"command", "environment", "cwd", "user"}
    return {k: v for k, v in entry.items() if k not in hidden}


def relay_command(workbench: Workbench) -> list[str]:
    from hubforge.helper_client import hub_socket

    socket = str(hub_socket(workbench.root))
    return [sys.executable, "-m", "hubforge.helper_client", "service", "--socket", socket]


def configure(c: Any, config_path: str | None = None) -> Workbench:
    """Fill JupyterHub config ``c`` for the local workbench."""
    from hubforge.hub import full_disk

    full_disk.install()  # a full disk never turns a valid token away
    workbench = load_workbench(config_path)
    workbench.prepare()
    token = service_token(workbench)
    service_url = f"http://127.0.0.1:{fixed_port('service')}"

    c.JupyterHub.ip = workbench.ip
    c.JupyterHub.port = workbench.port
    c.JupyterHub.base_url = workbench.base_url
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = fixed_port("hub")
    own = workbench.hub_dir  # state/hub with per-user accounts: the hub account's
    c.JupyterHub.db_url = f"sqlite:///{own / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(own / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(own / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.authenticator_class = "hubforge-password"
    c.JupyterHub.spawner_class = "hubforge-local"
    c.JupyterHub.custom_scopes = custom_scopes()
    # Hubforge's name and logo on JupyterHub's pages (template overrides, no fork)
    here = Path(__file__).resolve().parent
    c.JupyterHub.template_paths = [str(here / "templates")]
    c.JupyterHub.logo_file = str(here / "static" / "hubforge-logo.svg")
    c.JupyterHub.load_roles = roles()
    _services_and_proxy(c, workbench)
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 60
    c.Spawner.env_keep = ["PATH", "PYTHONPATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "TZ"]
    service_api = f"{service_url}{workbench.base_url}services/{SERVICE_NAME}/api"
    c.HubforgeLocalSpawner.service_url = service_api
    # the home page lists the signed-in user's jobs, endpoints and labeling projects
    c.JupyterHub.template_vars = {
        "hubforge_overview": overview_var(service_api, token),
        "hubforge_team": team_var(service_api, token),  # admins: everyone's jobs and GPUs
        "hubforge_change_password": True,  # the navigation bar links the page
    }
    c.PasswordAuthenticator.service_url = service_api
    c.HubforgeLocalSpawner.service_token = token
    c.PasswordAuthenticator.password_file = str(workbench.passwords_file)

    c.merge(load_config(config_path))
    # a damaged database stops the hub here, named, with what to do (no traceback loop);
    # a sound one is backed up now and when the hub stops cleanly (with the tokens of today)
    database.at_start(own / "jupyterhub.sqlite")
    atexit.register(database.at_exit, own / "jupyterhub.sqlite")
    return workbench


def _services_and_proxy(c: Any, workbench: Workbench) -> None:
    """The hub's services and proxy: under `hubforge up` it only routes to them (`up` runs
    them, see hubforge.data_path); a hub run by hand starts them itself."""
    kept = os.environ.get(KEPT_BY_UP) == "1"
    if kept:
        entries = [external(e) for e in services(workbench, bare=True)]
    elif workbench.isolation == "accounts":
        entries = [through_helper(workbench, e) for e in services(workbench, bare=True)]
    else:
        entries = services(workbench)
    c.JupyterHub.services = entries
    c.ConfigurableHTTPProxy.command = proxy_command(workbench)
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{fixed_port('proxy_api')}"
    c.ConfigurableHTTPProxy.pid_file = str(workbench.hub_dir / "proxy.pid")
    c.ConfigurableHTTPProxy.should_start = not kept  # its token: CONFIGPROXY_AUTH_TOKEN
    c.ConfigurableHTTPProxy.debug = False


def config_file_path() -> Path:
    return Path(__file__).with_name("jupyterhub_config.py")
