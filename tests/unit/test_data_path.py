"""The proxy `hubforge up` keeps (hubforge.data_path): a real configurable-http-proxy killed
-9 is started again with every route it had, and stopping stops it."""

from __future__ import annotations

import os
import signal
import time

import requests

from hubforge.data_path import DataPath, Part, new_proxy_token, proxy_args
from hubforge.hub.config import find_proxy
from hubforge.processes import free_port


class FakeWorkbench:
    ip = "127.0.0.1"
    base_url = "/hub@forge%20space/"  # as the hub escapes it

    def __init__(self) -> None:
        self.port = free_port()


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_killed_proxy_comes_back_with_its_routes_and_stop_stops_it(tmp_path):
    workbench = FakeWorkbench()
    ports = {
        "HUBFORGE_HUB_PORT": str(free_port()),
        "HUBFORGE_PROXY_API_PORT": str(free_port()),
        "HUBFORGE_SERVICE_PORT": str(free_port()),
    }
    token = new_proxy_token()
    args = proxy_args(workbench, ports)
    # its error pages are the service's (JSON for endpoint calls), not the hub's
    target = args[args.index("--error-target") + 1]
    service = f"http://127.0.0.1:{ports['HUBFORGE_SERVICE_PORT']}"
    assert target == f"{service}{workbench.base_url}services/hubforge/proxy-error"
    env = {"PATH": os.environ["PATH"], "CONFIGPROXY_AUTH_TOKEN": token}
    proxy = Part("proxy", [find_proxy(), *args], env, str(tmp_path))
    api = f"http://127.0.0.1:{ports['HUBFORGE_PROXY_API_PORT']}"
    path = DataPath([proxy], api, token)
    path.start()
    try:
        routes = api + "/api/routes"
        auth = {"Authorization": f"token {token}"}
        body = {"target": "http://127.0.0.1:9", "service": "hubforge"}
        spec = "/hub@forge%20space/services/hubforge"  # listed unescaped by the proxy
        r = requests.post(routes + spec, json=body, headers=auth, timeout=10)
        assert r.status_code == 201, r.text
        odd = "/hub@forge%20space/user/a%25b%3Fc/"  # a path with % and ? in it, escaped
        r = requests.post(routes + odd, json={"target": "http://127.0.0.1:9"}, headers=auth)
        assert r.status_code == 201, r.text
        listed = "/hub@forge space/services/hubforge"
        wait_for(lambda: len(path.routes) == 2)  # copied
        first = proxy.proc.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: proxy.proc.pid != first)

        def route_back():
            try:
                return requests.get(routes, headers=auth, timeout=5).json()
            except (requests.RequestException, ValueError):
                return None

        both = [listed, "/hub@forge space/user/a%b?c"]
        # put back one after the other: the table once both are back (or the wait times out)
        table = wait_for(lambda: (t := route_back()) and all(r in t for r in both) and t)
        # the same routes, not others made of their unescaped names
        assert sorted(table) == both, table
        back = table[listed]
        assert back["target"] == "http://127.0.0.1:9" and back["service"] == "hubforge"
    finally:
        path.stop(grace=10)
    assert proxy.proc.poll() is not None
    assert path.stopping.is_set()
