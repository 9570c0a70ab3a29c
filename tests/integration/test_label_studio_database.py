"""A damaged Label Studio database (#30): every labeling call failed with a raw `ApiError …
500` carrying all HTTP headers, and after a restart Label Studio crash-looped forever behind a
"starting" page. Now it stays up and says what is wrong and what to do, the labeling API
says the same, and `hubforge restore-database --label-studio` brings the labels back."""

from __future__ import annotations

import shutil
import time

import pytest
import requests

from hubforge import labeling
from hubforge.labeling import api, connection
from tests.faults import damage_sqlite
from tests.integration.test_labeling import label_all, shapes
from tests.workbench import hubforge, start_workbench

pytestmark = [pytest.mark.hub, pytest.mark.timeout(1500)]


def _eventually(check, wb, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, wb.log.read_text()[-3000:]
        time.sleep(0.2)


def _as(wb, name: str, monkeypatch) -> None:
    token = wb.create_user(name)
    monkeypatch.setenv("HUBFORGE_SERVICE_URL", wb.url + "services/hubforge/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    monkeypatch.setenv("HUBFORGE_DATA", str(wb.data_dir / "hdfs"))
    monkeypatch.setenv("HUBFORGE_USER_AREA", str(wb.data_dir / "hdfs/users" / name))
    monkeypatch.delenv("HUBFORGE_LABEL_STUDIO_TOKEN", raising=False)
    monkeypatch.setattr(connection, "_credentials", None)
    api.close_clients()


def test_a_damaged_label_studio_database_says_so_and_is_restored(tmp_path, monkeypatch):
    data = tmp_path / "wb"
    wb = start_workbench(data)
    try:
        # set-up migrated Label Studio's database once: a first start copies it (#31)
        assert "first start, from the migrated template" in wb.hub_log()
        # the terminal says when its API answers, not when its "starting" page does
        _eventually(lambda: "Label Studio   ready" in wb.log.read_text(), wb)
        assert "Label Studio   listening" in wb.log.read_text()
        _as(wb, "lena", monkeypatch)
        shapes(data / "hdfs" / "datasets" / "shapes", n=6)
        label_all(labeling.create_project("shapes", "datasets/shapes", ["circle", "square"]))
    finally:
        wb.down()
    db = data / "label-studio" / "label_studio.sqlite3"
    damage_sqlite(db)

    wb = start_workbench(data, label_studio=False)
    try:
        front = requests.get(wb.url + "services/label-studio/", timeout=60)
        assert "is damaged" in front.text and "restore-database --label-studio" in front.text
        _as(wb, "lena", monkeypatch)
        with pytest.raises(labeling.LabelingError) as refused:
            labeling.open_project("shapes")
        said = str(refused.value)
        assert f"Label Studio's database {db} is damaged" in said, said
        assert "headers" not in said.lower() and "ApiError" not in said, said
        assert "failed 8 times" not in wb.hub_log()  # it stays up: no crash loop
        _eventually(lambda: "Label Studio cannot start: " in wb.log.read_text(), wb)
    finally:
        wb.down()

    done = hubforge("restore-database", "--label-studio", data_dir=data)
    assert done.returncode == 0 and f"Restored {db}" in done.stdout, done
    assert list(db.parent.glob("label_studio.sqlite3.damaged-*"))

    wb = start_workbench(data)
    try:
        _as(wb, "lena", monkeypatch)
        progress = labeling.open_project("shapes").progress
        assert progress["labeled"] == progress["total"] == 6, progress  # the labels are back
    finally:
        api.close_clients()
        wb.down()
        shutil.rmtree(data, ignore_errors=True)
