"""Per-user channels with Workbench.isolation='accounts' (run as root, real OS accounts):
what every account on one machine shares (loopback, /tmp) carries nothing of another user's.
Bob, from his own kernel, listens for Ana's kernel on loopback, looks for her TensorBoard's
key in /tmp, and gets her server to serve his loopback page in her origin; each is refused.
(Security review 2026-12-04, N7, N6, N3.)"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import signal
import stat
from pathlib import Path

import psutil
import pytest
import requests

from tests.accounts_workbench import accounts_workbench, why_no_accounts
from tests.kernel import execute

pytestmark = [
    pytest.mark.hub,
    pytest.mark.timeout(900),
    pytest.mark.skipif(why_no_accounts() is not None, reason=str(why_no_accounts())),
]
ANA, BO = USERS = ("chan-ana", "chan-bo")


def server_process(user: str) -> psutil.Process:
    """The user's Jupyter server (it runs as the user's OS account)."""
    for proc in psutil.process_iter(["environ", "cmdline"]):
        if (proc.info["environ"] or {}).get("JUPYTERHUB_USER") == user and (
            "jupyterhub.singleuser" in " ".join(proc.info["cmdline"] or [])
        ):
            return proc
    raise AssertionError(f"no server process of {user}")


@pytest.fixture(scope="module")
def chan():
    with accounts_workbench("chan", USERS) as (wb, tokens):
        yield wb, tokens


def run(wb, tokens, user: str, code: str):
    """Run ``code`` in ``user``'s kernel; it prints one JSON line, returned parsed."""
    outputs = execute(wb, user, tokens[user], code)
    text = "".join(o.get("text", "") for o in outputs if o["type"] == "stream")
    errors = [o for o in outputs if o["type"] == "error"]
    assert not errors, errors
    return json.loads(text.strip().splitlines()[-1])


def host_relative(wb, url: str, token: str) -> requests.Response:
    """GET a host-relative URL (as a browser would from the page) through the hub."""
    origin = re.match(r"https?://[^/]+", wb.url).group(0)
    return requests.get(origin + url, headers={"Authorization": f"token {token}"}, timeout=60)


# --- N7: kernels over IPC in the user's private folder --------------------------------------

CHATTER = """
import threading, time
def chatter():
    for i in range(900):
        print("ANA-KERNEL-SECRET db_password=hunter2", i, flush=True)
        time.sleep(0.1)
threading.Thread(target=chatter, daemon=True).start()
"""

LISTEN_IN = """
import json, os, socket, time, zmq
ports = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and int(f[7]) == %(uid)d:
            ports.add(int(f[1].rsplit(":", 1)[1], 16))
ctx = zmq.Context()
poller, heard = zmq.Poller(), []
for port in sorted(ports):
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(f"tcp://127.0.0.1:{port}")
    poller.register(sub, zmq.POLLIN)
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    for sub, _ in poller.poll(200):
        heard.append(b" | ".join(sub.recv_multipart())[:1000].decode(errors="replace"))
sockets = {}
for path in %(sockets)r:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        unix.connect(path)
        sockets[path] = "connected"
    except PermissionError:
        sockets[path] = "denied"
    except OSError as e:
        sockets[path] = f"{type(e).__name__}: {e}"
    finally:
        unix.close()
try:
    os.listdir(%(folder)r)
    listed = "done"
except PermissionError:
    listed = "denied"
except OSError as e:
    listed = f"{type(e).__name__}: {e}"
print(json.dumps({"ports": sorted(ports), "heard": heard[:5], "sockets": sockets,
                  "listed": listed}))
"""


def test_kernels_talk_over_private_unix_sockets_and_bob_hears_nothing(chan):
    wb, tokens = chan
    outputs = execute(wb, ANA, tokens[ANA], CHATTER, shutdown=False)
    try:
        ana = server_process(ANA)
        (kernel,) = [
            p
            for p in ana.children(recursive=True)
            if any(outputs.kernel_id in part for part in p.cmdline())
        ]
        assert kernel.uids().real == ana.uids().real
        tcp = kernel.net_connections(kind="tcp")
        sockets = sorted({c.laddr for c in kernel.net_connections(kind="unix") if c.laddr})
        folder = Path(os.path.commonpath(sockets)) if sockets else Path("/nonexistent")
        heard = run(
            wb,
            tokens,
            BO,
            LISTEN_IN % {"uid": ana.uids().real, "sockets": list(sockets), "folder": str(folder)},
        )
        assert heard["ports"], "Bob's scan found not even Ana's server port"
        assert heard["heard"] == [], heard["heard"]
        assert [c for c in tcp if c.status == psutil.CONN_LISTEN] == [], tcp
        # shell, iopub, stdin, control, heartbeat, and ipykernel's pipe for forked children
        assert len(sockets) == 6, sockets
        for path in (folder, folder.parent):  # <private>/k and <private>
            info = path.lstat()
            assert stat.S_ISDIR(info.st_mode) and info.st_uid == ana.uids().real, path
            assert stat.S_IMODE(info.st_mode) == 0o700, (path, oct(info.st_mode))
        assert heard["sockets"] == {path: "denied" for path in sockets}, heard["sockets"]
        assert heard["listed"] == "denied"
    finally:
        wb.api("DELETE", f"user/{ANA}/api/kernels/{outputs.kernel_id}", tokens[ANA])


# --- N6: a private temp folder, TensorBoard's info files in it -------------------------------

TEMP = """
import json, os, tempfile
os.makedirs("runs/private-tmp", exist_ok=True)
print(json.dumps([os.environ.get("TMPDIR"), tempfile.gettempdir()]))
"""

SEARCH = """
import json, os
key, found = %(key)r, []
for folder, dirs, files in os.walk("/tmp"):
    if folder.count(os.sep) > 8:
        dirs[:] = []
    for name in files:
        if name.endswith(".info") or ".tensorboard-info" in folder:
            try:
                with open(os.path.join(folder, name), errors="replace") as f:
                    if key in f.read(1 << 16):
                        found.append(os.path.join(folder, name))
            except OSError:
                pass
tried = {}
for name, action in (
    ("list her temp folder", lambda: os.listdir(%(temp)r)),
    ("list her private folder", lambda: os.listdir(%(private)r)),
    ("read her info file", lambda: open(%(info)r).read()),
):
    try:
        action()
        tried[name] = "done"
    except PermissionError:
        tried[name] = "denied"
    except OSError as e:
        tried[name] = f"{type(e).__name__}: {e}"
print(json.dumps({"found": found, "tried": tried}))
"""


def test_temp_files_are_private_with_tensorboards_key(chan):
    wb, tokens = chan
    temp, gettempdir = run(wb, tokens, ANA, TEMP)
    assert temp and temp == gettempdir, (temp, gettempdir)
    uid = server_process(ANA).uids().real
    for path in (Path(temp), Path(temp).parent):
        info = path.lstat()
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == uid, path
        assert stat.S_IMODE(info.st_mode) == 0o700, (path, oct(info.st_mode))
    api = f"user/{ANA}/hubforge/api/tensorboards"
    r = wb.api("POST", api, tokens[ANA], json={"logdir": "runs/private-tmp", "name": "ptmp"})
    assert r.status_code == 201, r.text
    tb = r.json()
    try:
        key = tb["url"].rstrip("/").rsplit("/", 1)[1]
        infos = [
            p for p in (Path(temp) / ".tensorboard-info").glob("*.info") if key in p.read_text()
        ]
        assert len(infos) == 1, list((Path(temp) / ".tensorboard-info").glob("*"))
        board = psutil.Process(json.loads(infos[0].read_text())["pid"])
        assert board.uids().real == uid and board.environ()["TMPDIR"] == temp
        found = run(
            wb,
            tokens,
            BO,
            SEARCH
            % {
                "key": key,
                "temp": temp,
                "private": str(Path(temp).parent),
                "info": str(infos[0]),
            },
        )
        assert found["found"] == [], found
        assert found["tried"] == {name: "denied" for name in found["tried"]}, found
    finally:
        wb.api("DELETE", f"{api}/ptmp", tokens[ANA])


# --- N3: the server proxies only its own account's ports -------------------------------------

SERVE = """
import json, pathlib, socket, subprocess, sys, tempfile, time
page = pathlib.Path(tempfile.mkdtemp())
(page / "index.html").write_text(%(body)r)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
proc = subprocess.Popen(
    [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
     "--directory", str(page)],
    start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            break
    time.sleep(0.1)
print(json.dumps([port, proc.pid]))
"""


def test_a_server_proxies_only_its_own_accounts_ports(chan):
    wb, tokens = chan
    evil = "<script>fetch('../../api/contents')/*BOB-EVIL-PAGE*/</script>"
    bo_port, bo_pid = run(wb, tokens, BO, SERVE % {"body": evil})
    ana_port, ana_pid = run(wb, tokens, ANA, SERVE % {"body": "ANA-OWN-PAGE"})
    api = f"user/{ANA}/hubforge/api/tensorboards"
    try:
        for path in (
            f"proxy/{bo_port}/",
            f"proxy/absolute/{bo_port}/",
            f"proxy/127.0.0.1:{bo_port}/",
            f"proxy/localhost:{bo_port}/",
            f"proxy/absolute/localhost:{bo_port}/",
        ):
            r = wb.api("GET", f"user/{ANA}/{path}", tokens[ANA])
            assert r.status_code == 403, (path, r.status_code, r.text[:300])
            assert "BOB-EVIL-PAGE" not in r.text and "another account" in r.text, path
        # a websocket to his port is refused as well
        r = wb.api(
            "GET",
            f"user/{ANA}/proxy/{bo_port}/ws",
            tokens[ANA],
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert r.status_code == 403, r.status_code
        # her own loopback page: served, sandboxed (an opaque origin, not her server's)
        r = wb.api("GET", f"user/{ANA}/proxy/{ana_port}/", tokens[ANA])
        assert r.status_code == 200 and "ANA-OWN-PAGE" in r.text, r.text[:300]
        csp = r.headers.get("Content-Security-Policy", "")
        assert "sandbox" in csp and "allow-same-origin" not in csp, csp
        # Bob's page is his own server's to serve, to him
        r = wb.api("GET", f"user/{BO}/proxy/{bo_port}/", tokens[BO])
        assert r.status_code == 200 and "BOB-EVIL-PAGE" in r.text
        # her TensorBoard, the usual way, keeps its origin (no sandbox)
        assert run(wb, tokens, ANA, "import os\nos.makedirs('runs/own', exist_ok=True)\nprint(1)")
        r = wb.api("POST", api, tokens[ANA], json={"logdir": "runs/own", "name": "own"})
        assert r.status_code == 201, r.text
        page = host_relative(wb, r.json()["url"], tokens[ANA])
        assert page.status_code == 200 and "<tb-webapp>" in page.text
        assert "sandbox" not in page.headers.get("Content-Security-Policy", "")
        runs = host_relative(wb, r.json()["url"] + "data/runs", tokens[ANA])
        assert runs.status_code == 200 and runs.json() == []
    finally:
        wb.api("DELETE", f"{api}/own", tokens[ANA])
        for pid in (bo_pid, ana_pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_the_spawner_starts_servers_with_private_channels(chan):
    """What the three tests above rest on, as the hub starts every local server."""
    for user in USERS:
        proc = server_process(user)
        assert "--KernelManager.transport=ipc" in proc.cmdline()
        assert proc.environ().get("HUBFORGE_PRIVATE_CHANNELS") == "1"
        assert pwd.getpwuid(proc.uids().real).pw_name == proc.username() != "root"
