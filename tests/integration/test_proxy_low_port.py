"""A workbench on a port below 1024 (80, 443 on a team's machine) binds it without running
its proxy as root: the proxy is its own account with the one capability that binding needs
(security review 2026-12-04: the proxy kept root below port 1024)."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import psutil
import pytest
import requests

from hubforge import accounts
from tests.workbench import isolated, start_workbench

pytestmark = [
    pytest.mark.hub,
    pytest.mark.skipif(not isolated(), reason="per-user accounts (root) bind low ports"),
]
CAP_NET_BIND_SERVICE = 10


def _free_low_port() -> int:
    for port in range(1023, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024 on this machine")


def _capabilities(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cap"):
            name, value = line.split(":")
            fields[name] = int(value.strip(), 16)
    return fields


def test_the_proxy_binds_a_low_port_as_its_own_account_with_one_capability():
    data = Path(tempfile.mkdtemp(prefix="hubforge-lowport-", dir="/tmp"))
    data.chmod(0o755)
    port = _free_low_port()
    wb = start_workbench(data / "wb", config='c.Workbench.label_studio_python = ""\n', port=port)
    try:
        r = requests.get(wb.url + "hub/login", timeout=30)
        assert r.status_code == 200 and "Sign in" in r.text
        proxies = [
            p
            for p in psutil.process_iter(["cmdline", "username"])
            if any("configurable-http-proxy" in a for a in p.info["cmdline"] or [])
            and str(port) in (p.info["cmdline"] or [])
        ]
        assert proxies, "no proxy process found"
        for proxy in proxies:
            assert proxy.info["username"] == accounts.service_account_name("proxy", wb.state_dir)
            caps = _capabilities(proxy.pid)
            assert caps["CapEff"] == 1 << CAP_NET_BIND_SERVICE, caps
            assert caps["CapBnd"] == 1 << CAP_NET_BIND_SERVICE, caps
    finally:
        wb.down()
        shutil.rmtree(data, ignore_errors=True)
