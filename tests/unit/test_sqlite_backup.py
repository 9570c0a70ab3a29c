"""The databases' check at start: a writer killed in the middle of a transaction is no
damage (the hub's and Label Studio's databases after a kill -9)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

from hubforge import sqlite_backup

WRITER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size=1")  # pages spill into the file: the journal is hot
db.execute("BEGIN IMMEDIATE")
for i in range(2000):
    db.execute("INSERT INTO labels VALUES (?, ?)", (i, "x" * 200))
print("in the middle", flush=True)
time.sleep(600)
"""


def test_a_writer_killed_in_a_transaction_leaves_a_sound_database(tmp_path):
    path = tmp_path / "label_studio.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE labels (id INTEGER, text TEXT)")
        db.executemany("INSERT INTO labels VALUES (?, 'kept')", [(i,) for i in range(50)])
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "in the middle"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
    journal = path.with_name(path.name + "-journal")
    assert journal.exists() and journal.stat().st_size > 0  # what a kill -9 leaves
    started = time.monotonic()
    assert sqlite_backup.check(path) is None  # was: "attempt to write a readonly database"
    assert time.monotonic() - started < 60
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:  # the transaction undone
        assert db.execute("SELECT count(*), min(text) FROM labels").fetchone() == (50, "kept")


def test_a_damaged_database_is_still_named(tmp_path):
    path = tmp_path / "hub.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [("y" * 500,) for _ in range(500)])
    data = bytearray(path.read_bytes())
    data[4096 : 4096 * 3] = b"\xff" * (4096 * 2)  # two pages overwritten
    path.write_bytes(bytes(data))
    problem = sqlite_backup.check(path)
    assert problem is not None and ("malformed" in problem or "corrupt" in problem), problem
