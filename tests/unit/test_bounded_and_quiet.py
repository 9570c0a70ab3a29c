"""Small guards from the security review 2026-12-04: job logs are read in bounded pages
(N13), offsets out of range are a 400 (F15), no token reaches the service's log and no
control character reaches the admin's terminal (N15, N17), and an OS account of another
workbench is never adopted (N8)."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado import web

from hubforge import accounts
from hubforge.httperrors import MAX_OFFSET, parse_offset
from hubforge.jobs.base import LOG_PAGE, whole_characters
from hubforge.jobs.local import LocalJobBackend
from hubforge.jobs.store import JobStore
from hubforge.service.accesslog import log_request, redact
from hubforge.terminal import LogEcho


def test_a_huge_log_is_read_in_pages_that_add_up_to_the_file(tmp_path: Path):
    backend = LocalJobBackend(tmp_path)
    store = JobStore(backend.jobs_dir("ana") / "big-1")
    store.create({"id": "big-1", "state": "running", "spec": {"workers": 1}}, "print(1)")
    # 2.4 pages, with 3-byte characters across every page boundary
    text = ("line é € 漢字 " * 9000 + "\n") * 15
    data = text.encode()
    assert len(data) > 2 * LOG_PAGE
    store.replica_log("worker-0").write_bytes(data)
    pages, offset = [], 0
    while True:
        page, offset = backend.logs("ana", "big-1", "worker-0", offset)
        if not page:
            break
        assert len(page.encode()) <= LOG_PAGE
        pages.append(page)
    assert len(pages) == 3 and "".join(pages) == text and offset == len(data)


def test_a_page_never_ends_inside_a_character():
    for cut in range(1, 5):
        data = ("€" * 10).encode()[: 3 * 3 + cut - 1]
        kept = whole_characters(data, len(data))
        kept.decode()  # no partial character left
        assert data.startswith(kept) and len(data) - len(kept) < 3
    assert whole_characters(b"abc", 10) == b"abc"


@pytest.mark.parametrize("text", ["-1", "x", "1.5", str(2**62), str(MAX_OFFSET + 1), ""])
def test_offsets_out_of_range_are_a_400_saying_what_to_send(text: str):
    with pytest.raises(web.HTTPError) as e:
        parse_offset(text)
    assert e.value.status_code == 400 and "previous call returned" in e.value.log_message
    assert parse_offset("0") == 0 and parse_offset(str(MAX_OFFSET)) == MAX_OFFSET


def test_the_access_log_keeps_tokens_out(caplog):
    uri = "/services/hubforge/api/status?token=1e9eb5b9730b&x=1&_xsrf=abc;key=k\x1b[31m"
    assert "1e9eb5b9730b" not in redact(uri) and "x=1" in redact(uri)
    request = SimpleNamespace(
        method="GET", uri=uri, remote_ip="127.0.0.1", request_time=lambda: 0.01
    )
    handler = SimpleNamespace(get_status=lambda: 403, request=request)
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        log_request(handler)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "403 GET" in line and "token=[secret]" in line
    assert "1e9eb5b9730b" not in line and "abc" not in line and "\x1b" not in line


def test_the_terminal_shows_a_users_escape_sequences_as_text(tmp_path: Path):
    log = tmp_path / "jupyterhub.log"
    log.write_text("")
    out = io.StringIO()
    echo = LogEcho(log, out)
    with log.open("a") as f:
        f.write("[E 2026-12-04 17:45:00.000 JupyterHub app:1] leaked \x1b]2;pwned\x07\x1b[31mRED\n")
    echo.poll()
    shown = out.getvalue()
    assert "leaked" in shown and "RED" in shown
    assert "\x1b" not in shown and "\x07" not in shown


@pytest.mark.skipif(os.geteuid() != 0, reason="making OS accounts needs root")
def test_an_account_of_that_name_with_another_home_is_refused_not_adopted():
    state = Path(tempfile.mkdtemp(prefix="hubforge-acct-", dir="/tmp")) / "state"
    state.mkdir()
    name = accounts.account_name("rev", state)
    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["useradd", "--system", "--home-dir", "/srv/elsewhere", name], check=True)
    try:
        with pytest.raises(accounts.AccountError, match=r"not this\s+workbench's"):
            accounts.ensure_account("rev", state.parent / "homes" / "rev", state)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", accounts.group_name(state)], capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="making OS accounts needs root")
def test_an_upgraded_workbench_keeps_the_accounts_an_earlier_version_made_for_it():
    """Accounts were `hubforge-<name>` before they were named per workbench. The one whose
    home is this workbench's is kept (its files stay its own, it joins the workbench's
    group); one whose home is elsewhere is another workbench's and is never used."""
    base = Path(tempfile.mkdtemp(prefix="hubforge-upgrade-", dir="/tmp"))
    state, home = base / "state", base / "homes" / "legacy-u"
    state.mkdir()
    home.mkdir(parents=True)
    old = "hubforge-legacy-u"
    subprocess.run(["userdel", old], capture_output=True)
    subprocess.run(["useradd", "--system", "--home-dir", str(home), old], check=True)
    try:
        account = accounts.ensure_account("legacy-u", home, state)
        assert account.name == old
        assert account.shared_gid in os.getgrouplist(old, account.gid)
        accounts.own_folder(home, account)  # no "belongs to another account" after an upgrade
        assert accounts.existing_account("legacy-u", home, state).name == old
        elsewhere = accounts.ensure_account("legacy-u", base / "homes" / "other", state / "x")
        assert elsewhere.name != old  # (state/x: another workbench, another home)
    finally:
        for name in (old, accounts.account_name("legacy-u", state / "x")):
            subprocess.run(["userdel", name], capture_output=True)
        for folder in (state, state / "x"):
            subprocess.run(["groupdel", accounts.group_name(folder)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
