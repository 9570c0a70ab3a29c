"""`hubforge up` shows the lines of the hub's log someone should act on, and no others.

The lines below are real ones from a workbench's log (a test session's)."""

from __future__ import annotations

import contextlib
import io

import pytest

from hubforge.terminal import LogEcho, worth_showing

NOISE = [
    "[I 2026-12-03 00:03:41.830 JupyterHub app:3493] Running JupyterHub version 6.1.1",
    "[W 2026-12-03 00:03:42.766 JupyterHub proxy:783] Running JupyterHub without SSL.  I hope "
    "there is SSL termination happening somewhere else...",
    "[W 2026-12-03 00:03:45.919 JupyterHub proxy:449] Adding missing route for hubforge "
    "(Server(url=http://127.0.0.1:52457/hub@forge%20space/services/hubforge/))",
    "[W 2026-12-03 00:09:31.115 JupyterHub spawner:921] Received unhandled user_options for "
    "paula: profile",
    "[W 2026-12-03 00:10:19.362 ServerApp] 404 GET /hub@forge%20space/user/paula/api/contents"
    "?content=1&hash=0&1796256619358 (127.0.0.1): No such file or directory: ",
    "[W 2026-12-03 00:09:35.779 ServerApp] Skipping XSRF check for insecure request GET "
    "/hub@forge%20space/user/paula/api/events/subscribe",
    "[W 2026-12-03 00:12:01.100 JupyterHub log:192] 403 POST /hub@forge%20space/hub/login "
    "(@127.0.0.1) 12.3ms",
    "2026-12-03T00:03:43.011Z [ConfigProxy] \x1b[32minfo\x1b[39m: Proxying http://50015:127.0.0.1 "
    "to (no default)",
    '[2026-12-03 00:03:50,267] [django.server::log_message::213] [ERROR] "GET /hub@forge%20space'
    '/services/label-studio/health HTTP/1.1" 503 152',
    "[2026-12-03 00:09:24,219] [core.utils.common::custom_exception_handler::97] [ERROR] "
    "ac04f414 Invalid page.",
    "Traceback (most recent call last):",
    "[C 2026-12-03 00:34:16.803 JupyterHub app:4035] Received signal SIGTERM, initiating "
    "shutdown...",
    "label studio: listening on 127.0.0.1:59665/hub@forge%20space/services/label-studio/ "
    "(starting)",
    "[HubforgeService] hubforge service listening on http://127.0.0.1:52457/",
]
SHOWN = [
    "[E 2026-12-03 00:09:48.893 ServerApp] 500 GET /hub@forge%20space/user/paula/hubforge/api/"
    "tensorboards?1796256588863 (paula@127.0.0.1) 17.87ms",
    "[E 2026-12-03 00:10:19.411 ServerApp] Exception in callback <bound method Lifecycle.cull>",
    "[W 2026-12-03 00:20:00.000 JupyterHub app:2100] Not a valid admin user name: 'x y'",
    "[C 2026-12-03 00:20:00.000 JupyterHub app:3000] Failed to bind hub to http://127.0.0.1:1",
    "[hubforge keeper] -m hubforge.service.app exited with -9; starting it again in 0.5 s",
    "[hubforge log] 8192 bytes of this log were lost: the disk was full",
    "[HubforgeService] WARNING | Stopped gina's server: the hub did not answer",
]


@pytest.mark.parametrize("line", NOISE)
def test_noise_stays_in_the_log(line):
    assert not worth_showing(line)


@pytest.mark.parametrize("line", SHOWN)
def test_what_to_act_on_is_shown(line):
    assert worth_showing(line)


def test_the_echo_follows_the_file_with_tracebacks_under_what_it_shows(tmp_path):
    log = tmp_path / "jupyterhub.log"
    log.write_text(SHOWN[0] + "\n")  # before `up` started following: not shown again
    out = io.StringIO()
    echo = LogEcho(log, out, interval=3600)
    with log.open("a") as f:
        f.write(NOISE[4] + "\n" + SHOWN[1] + "\n    Traceback (most recent call last):\n")
        f.write('      File "x.py", line 1\n    PermissionError: [Errno 13]\n' + NOISE[0])
        f.flush()
        echo.poll()
        assert out.getvalue().splitlines() == [
            SHOWN[1],
            "    Traceback (most recent call last):",
            '      File "x.py", line 1',
            "    PermissionError: [Errno 13]",
        ]
        f.write("\n  an indented line under noise\n" + SHOWN[4][:30])  # a line half written
        f.flush()
        echo.poll()
        assert len(out.getvalue().splitlines()) == 4
        f.write(SHOWN[4][30:] + "\n")
    echo.poll()
    assert out.getvalue().splitlines()[-1] == SHOWN[4]


def test_the_echo_goes_on_when_the_terminal_output_cannot_be_written(tmp_path):
    log = tmp_path / "jupyterhub.log"
    log.write_text("")
    full = open("/dev/full", "w")  # noqa: SIM115  `up > up.log` on a full disk
    echo = LogEcho(log, full, interval=3600)
    log.write_text(SHOWN[0] + "\n")
    echo.poll()  # no error
    with contextlib.suppress(OSError):  # what is still in its buffer cannot be written
        full.close()
    out = io.StringIO()
    echo.out = out
    with log.open("a") as f:
        f.write(SHOWN[1] + "\n")
    echo.poll()
    assert out.getvalue() == SHOWN[1] + "\n", "later lines still shown, earlier not repeated"
