"""Per-user channels without a hub: the private folder (TMPDIR, kernels' Unix sockets) and
the proxy guard, in a real Jupyter server started the way the local spawner starts one."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from hubforge import channels, proxy_guard


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process without a private folder yet, its temp folder a short one of its own (as
    /tmp is: sockets' paths must fit)."""
    base = Path(tempfile.mkdtemp(prefix="hf-t-", dir="/tmp"))
    monkeypatch.setattr(channels, "_private", None)
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv("TMPDIR", str(base))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_activate_points_tmpdir_into_a_new_0700_folder(fresh, monkeypatch):
    monkeypatch.delenv(channels.ENV, raising=False)
    assert channels.activate() is None and os.environ["TMPDIR"] == str(fresh)
    monkeypatch.setenv(channels.ENV, "1")
    temp = channels.activate()
    assert os.environ["TMPDIR"] == str(temp) == tempfile.gettempdir()
    private = temp.parent
    assert private.parent == fresh and private.name.startswith("hubforge-")
    # its name tells other accounts neither the account nor the server's pid (review N17):
    # eight random characters and nothing else (a digit of them may match the uid by chance)
    assert re.fullmatch(r"hubforge-[a-z0-9_]{8}", private.name), private.name
    assert not private.name.endswith((f"-{os.getuid()}", f"-{os.getpid()}"))
    assert (private / channels.PID_FILE).read_text().strip() == str(os.getpid())
    for folder in (private, temp, private / channels.KERNELS):
        info = folder.lstat()
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700, folder
    assert channels.private_dir() == private  # one per process
    channels._remove(private, os.getpid())
    assert not private.exists()


def test_folders_of_dead_servers_are_removed_live_ones_kept(fresh):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live, linked = (fresh / f"hubforge-{n}" for n in ("stale123", "live1234", "link1234"))
    for folder, pid in ((stale, dead.pid), (live, os.getppid())):
        (folder / "k").mkdir(parents=True)
        (folder / channels.PID_FILE).write_text(f"{pid}\n")
    (linked / "k").mkdir(parents=True)  # its pid file a link to a dead server's: kept
    (linked / channels.PID_FILE).symlink_to(stale / channels.PID_FILE)
    made = channels.private_dir()
    assert not stale.exists() and live.exists() and linked.exists() and made.exists()


def test_a_temp_folder_anyone_can_rename_in_is_not_used(fresh, tmp_path, monkeypatch):
    shared = fresh / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # world-writable, not sticky
    monkeypatch.setenv("TMPDIR", str(shared))
    made = channels.private_dir()
    channels._remove(made, os.getpid())
    assert made.parent == Path("/tmp")  # sticky: only an entry's owner may rename it
    # with no safe temp folder at all: the user's own ~/.cache
    monkeypatch.setattr(channels, "_private", None)
    monkeypatch.setattr(channels, "_safe_base", lambda base: False)
    made = channels.private_dir()
    assert made.parent == tmp_path / "home" / ".cache"


def test_kernel_ipc_paths_are_short_and_in_the_private_folder(fresh):
    km = channels.PrivateKernelManager(
        transport="ipc", connection_file=str(Path("/x" * 60) / "kernel-1234-abcd.json")
    )
    assert km.ip == str(channels.private_dir() / channels.KERNELS / "1234abcd")
    long_id = channels.PrivateKernelManager(
        transport="ipc", connection_file="/x/kernel-6c8a0a44-0950-4835-a697-89b62e0fc370.json"
    )
    assert long_id.ip == str(channels.private_dir() / channels.KERNELS / "6c8a0a440950")


def test_a_temp_folder_too_deep_for_sockets_gives_way_to_tmp(fresh, monkeypatch):
    deep = fresh / ("deep-folder-" * 6)
    deep.mkdir()
    monkeypatch.setenv("TMPDIR", str(deep))
    made = channels.private_dir()
    channels._remove(made, os.getpid())
    assert made.parent == Path("/tmp")
    socket = made / channels.KERNELS / ("f" * channels.SOCKET_NAME + "-pipe")
    assert len(str(socket)) <= 107
    assert channels.PrivateKernelManager().ip in ("127.0.0.1", "localhost")  # tcp: unchanged


# --- the proxy guard ------------------------------------------------------------------------


def test_listening_uids_and_refusals():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert proxy_guard.refusal("localhost", port).startswith("Nothing listens")
        s.listen()
        assert proxy_guard.listening_uids(port) == {os.getuid()}
        assert proxy_guard.refusal("localhost", port) is None
        assert proxy_guard.refusal("127.0.0.1", port) is None
        assert "not example.org" in proxy_guard.refusal("example.org", port)


def test_tensorboard_ports_come_from_own_info_files(fresh, tmp_path):
    info = fresh / ".tensorboard-info"
    info.mkdir()
    (info / "pid-1.info").write_text(json.dumps({"port": 6006}))
    (info / "pid-2.info").write_text("not json")
    (tmp_path / "elsewhere.info").write_text(json.dumps({"port": 7007}))
    (info / "pid-3.info").symlink_to(tmp_path / "elsewhere.info")  # a link is not followed
    assert proxy_guard.tensorboard_ports() == {6006}


# --- a real server, as the local spawner starts it ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listener(port: int, body: bytes, user: int | None = None) -> subprocess.Popen:
    code = (
        "import http.server, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200)\n"
        "        self.end_headers()\n"
        "        self.wfile.write(sys.argv[2].encode())\n"
        "    def log_message(self, *a): pass\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(port), body.decode()],
        user=user,
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proxy_guard.listening_uids(port):
            return proc
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"nothing listens on {port}")


def home_of(server: subprocess.Popen) -> Path:
    return Path(server.args[server.args.index("--ServerApp.root_dir") + 1])


def private_of(server: subprocess.Popen) -> Path:
    """The server's private folder (its pid in a file inside): in /tmp, as its TMPDIR is
    too deep for the sockets' paths."""

    def its_pid(folder: Path) -> str:
        pid = folder / "server.pid"
        return (
            pid.read_text().strip() if folder.stat().st_uid == os.getuid() and pid.is_file() else ""
        )

    (folder,) = [f for f in Path("/tmp").glob("hubforge-*") if its_pid(f) == str(server.pid)]
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    port, token = _free_port(), "channels-test-token"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "HUBFORGE_"))}
    # a deep TMPDIR (as a workbench's can be): the sockets' paths must still fit 107 bytes
    deep = home / ("deep-folder-" * 6)
    deep.mkdir()
    env.update(HOME=str(home), TMPDIR=str(deep), **{channels.ENV: "1"})
    args = [
        sys.executable,
        "-m",
        "jupyter_server",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        "--ServerApp.root_dir",
        str(home),
        "--ServerApp.open_browser=False",
        "--KernelManager.transport=ipc",
        "--MultiKernelManager.kernel_manager_class=hubforge.channels.PrivateKernelManager",
    ]
    if os.geteuid() == 0:
        args.append("--allow-root")
    log = open(home / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=home)
    url = f"http://127.0.0.1:{port}/"
    headers = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "api/status", headers=headers, timeout=5).ok:
                break
        except requests.ConnectionError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (
            home / "server.log"
        ).read_text()[-3000:]
        time.sleep(0.2)
    yield url, headers, proc
    proc.terminate()
    proc.wait(30)
    log.close()


FORKED = """
import multiprocessing as mp
def child():
    print("FROM-A-FORKED-CHILD", flush=True)
p = mp.get_context("fork").Process(target=child)
p.start(); p.join()
print("PARENT-DONE", flush=True)
"""


def cmdline(process) -> str:
    """A child's command line; "" for one that ended meanwhile (CI77: the server's short-lived
    child, a zombie until the server reaped it, failed the test)."""
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def test_the_server_starts_kernels_over_unix_sockets(server):
    import psutil
    from jupyter_client import BlockingKernelClient

    url, headers, proc = server
    r = requests.post(url + "api/kernels", headers=headers, json={"name": "python3"}, timeout=60)
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    try:
        (launched,) = [p for p in psutil.Process(proc.pid).children() if kernel in cmdline(p)]
        assert "hubforge.kernel_launcher" in launched.cmdline()
        short = kernel.replace("-", "")[:12]  # the kernel's id, shortened to fit
        names = {f"{short}-{n}" for n in (1, 2, 3, 4, 5, "pipe")}  # 5 channels, fork pipe
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sockets = {c.laddr for c in launched.net_connections(kind="unix") if c.laddr}
            if {Path(s).name for s in sockets} >= names:
                break
            time.sleep(0.2)
        assert {Path(s).name for s in sockets} == names, sockets
        assert all(len(s) < 107 for s in sockets)
        folder = Path(next(iter(sockets))).parent.parent
        assert folder == private_of(proc)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert launched.environ()["TMPDIR"] == str(folder / channels.TEMP)
        assert launched.net_connections(kind="tcp") == []  # nothing on loopback at all
        # a client reaches it over the sockets; a forked child's output comes through the pipe
        client = BlockingKernelClient()
        (connection,) = home_of(proc).rglob(f"kernel-{kernel}.json")  # Jupyter's runtime dir
        client.load_connection_file(connection)
        assert client.transport == "ipc"
        client.start_channels()
        try:
            for restart in (False, True):  # and again after a restart (same sockets' names)
                if restart:
                    r = requests.post(url + f"api/kernels/{kernel}/restart", headers=headers)
                    assert r.status_code == 200, r.text
                client.wait_for_ready(timeout=60)
                client.execute(FORKED)
                text, deadline = "", time.monotonic() + 60
                while "PARENT-DONE" not in text and time.monotonic() < deadline:
                    msg = client.get_iopub_msg(timeout=60)
                    if msg["msg_type"] == "stream":
                        text += msg["content"]["text"]
                assert "FROM-A-FORKED-CHILD" in text and "PARENT-DONE" in text, (restart, text)
        finally:
            client.stop_channels()
    finally:
        requests.delete(url + f"api/kernels/{kernel}", headers=headers, timeout=60)


def test_the_proxy_serves_own_ports_sandboxed_and_tensorboards_as_they_are(server):
    url, headers, proc = server
    own_port, board_port = _free_port(), _free_port()
    own = _listener(own_port, b"OWN-PAGE")
    board = _listener(board_port, b"A-TENSORBOARD")
    info = private_of(proc) / channels.TEMP / ".tensorboard-info"
    info.mkdir(exist_ok=True)
    (info / f"pid-{board.pid}.info").write_text(json.dumps({"port": board_port}))
    try:
        for path in (
            f"proxy/{own_port}/",
            f"proxy/absolute/{own_port}/",
            f"proxy/localhost:{own_port}/",
        ):
            r = requests.get(url + path, headers=headers, timeout=30)
            assert r.status_code == 200 and r.text == "OWN-PAGE", (path, r.status_code)
            csp = r.headers["Content-Security-Policy"]
            assert "sandbox" in csp and "allow-same-origin" not in csp, csp
        r = requests.get(url + f"proxy/{board_port}/", headers=headers, timeout=30)
        assert r.status_code == 200 and r.text == "A-TENSORBOARD"
        assert "sandbox" not in r.headers.get("Content-Security-Policy", "")
        r = requests.get(url + f"proxy/{_free_port()}/", headers=headers, timeout=30)
        assert r.status_code == 403 and "Nothing listens" in r.text
        r = requests.get(url + f"proxy/{own_port}/", timeout=30, allow_redirects=False)
        assert r.status_code in (302, 403) and "OWN-PAGE" not in r.text  # no token
    finally:
        for listener in (own, board):
            listener.kill()
            listener.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="a listener of another account needs root")
def test_the_proxy_refuses_another_accounts_port(server):
    import pwd

    url, headers, _ = server
    port = _free_port()
    other = _listener(port, b"SOMEONE-ELSES", user=pwd.getpwnam("nobody").pw_uid)
    try:
        for path in (f"proxy/{port}/", f"proxy/absolute/{port}/", f"proxy/127.0.0.1:{port}/"):
            r = requests.get(url + path, headers=headers, timeout=30)
            assert r.status_code == 403, (path, r.status_code)
            assert "another account" in r.text and "SOMEONE-ELSES" not in r.text
    finally:
        other.kill()
        other.wait()
