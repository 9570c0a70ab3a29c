"""A damaged hub database (#30): the review overwrote 16 pages of jupyterhub.sqlite; the next
`up` printed raw SQLAlchemy tracebacks, restarted the hub 5 times and gave up without naming
the file, and moving the file aside lost every API token. Now `up` stops at once, names the
file and the backup to restore, and `hubforge restore-database` brings the tokens back."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from hubforge.hub import database
from tests.faults import damage_sqlite
from tests.workbench import hubforge, isolated, start_workbench

pytestmark = [pytest.mark.hub, pytest.mark.timeout(900)]
CONFIG = 'c.Workbench.label_studio_python = ""\n'


def test_a_damaged_hub_database_is_named_and_restored_with_its_tokens(tmp_path):
    data = tmp_path / "wb"
    wb = start_workbench(data, config=CONFIG)
    try:
        token = wb.create_user("dana")
        assert wb.api("GET", "hub/api/user", token).json()["name"] == "dana"
    finally:
        wb.down()
    db = data / "state" / ("hub" if isolated() else "") / "jupyterhub.sqlite"
    assert database.check(db) is None
    saved = database.backups(db)
    assert saved and database.check(saved[0]) is None  # made as the hub stopped
    damage_sqlite(db)
    assert database.check(db) is not None

    with pytest.raises(RuntimeError) as failed:
        start_workbench(data, config=CONFIG, timeout=300)
    said = str(failed.value)
    assert f"The hub's database {db} is damaged" in said, said
    assert "hubforge restore-database" in said and "Traceback" not in said, said
    assert "restarting it" not in said, said  # no crash loop: it stopped at the first start

    done = hubforge("restore-database", data_dir=data)
    assert done.returncode == 0 and f"Restored {db}" in done.stdout, done
    assert list(db.parent.glob("jupyterhub.sqlite.damaged-*"))  # kept aside, not deleted
    if isolated():  # restored by the hub's account: still the hub's own file
        assert db.stat().st_uid == db.parent.stat().st_uid != 0

    wb = start_workbench(data, config=CONFIG)
    try:
        answer = wb.api("GET", "hub/api/user", token)
        assert answer.status_code == 200 and answer.json()["name"] == "dana", answer.text
    finally:
        wb.down()
        if isolated():
            from hubforge import accounts

            for role in ("hub", "proxy"):
                name = accounts.service_account_name(role, data / "state")
                subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_restore_without_a_sound_backup_moves_nothing(tmp_path):
    db = tmp_path / "jupyterhub.sqlite"
    db.write_bytes(b"not a database at all" * 300)
    assert "not a database" in (database.check(db) or "")
    with pytest.raises(FileNotFoundError, match="no sound backup"):
        database.restore(db)
    assert db.read_bytes().startswith(b"not a database")  # nothing moved or lost
