"""Label Studio's migrated database is kept in the account's cache, named by what it depends
on: a second set-up on the machine copies it instead of migrating again (~35 CPU-s), and
only from a cache folder that is the account's alone, only a database SQLite finds whole."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from hubforge.labeling import ls_start

ROOT = Path(__file__).resolve().parents[2]
LS_PYTHON = ROOT / ".venvs" / "label-studio" / "bin" / "python"


def database(path: Path, migrations: int = 3) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE django_migrations (id INTEGER PRIMARY KEY, app TEXT, name TEXT)")
        for i in range(migrations):
            db.execute("INSERT INTO django_migrations (app, name) VALUES ('tasks', ?)", (str(i),))
    return path


def test_the_key_follows_every_migration_and_the_setup_code(tmp_path):
    site = tmp_path / "site-packages"
    for app in ("tasks", "django/contrib/auth"):
        (site / app / "migrations").mkdir(parents=True)
        (site / app / "migrations" / "0001_initial.py").write_text(f"# {app}\n")
    (site / "tasks" / "models.py").write_text("# not a migration\n")
    setup = tmp_path / "ls_start.py"
    setup.write_text("# set-up\n")
    key = ls_start.migrations_digest(site, setup)
    assert key == ls_start.migrations_digest(site, setup)
    (site / "tasks" / "models.py").write_text("# changed, still not a migration\n")
    assert ls_start.migrations_digest(site, setup) == key
    (site / "django/contrib/auth/migrations/0002_more.py").write_text("# a new one\n")
    newer = ls_start.migrations_digest(site, setup)
    assert newer != key
    setup.write_text("# set-up, changed\n")
    assert ls_start.migrations_digest(site, setup) not in (key, newer)


def test_the_cache_folder_must_be_the_accounts_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    made = ls_start.machine_cache()
    assert made == tmp_path / "cache" / "hubforge"
    assert made.stat().st_mode & 0o777 == 0o700
    made.chmod(0o777)  # others may write (and so plant a database) there: not used
    assert ls_start.machine_cache() is None
    made.chmod(0o700)
    if os.geteuid() == 0:  # (only root can give a folder away)
        os.chown(made, 12345, 12345)  # another account's
        assert ls_start.machine_cache() is None
        os.chown(made, os.geteuid(), os.getegid())
    made.rmdir()
    made.symlink_to(tmp_path)  # a link, wherever it leads
    assert ls_start.machine_cache() is None


def test_only_a_whole_migrated_database_is_taken(tmp_path):
    good = database(tmp_path / "good.sqlite3")
    assert ls_start.sound_template(good)
    assert not ls_start.sound_template(database(tmp_path / "none.sqlite3", migrations=0))
    assert not ls_start.sound_template(tmp_path / "missing.sqlite3")
    (tmp_path / "text.sqlite3").write_text("not a database")
    assert not ls_start.sound_template(tmp_path / "text.sqlite3")
    cut = tmp_path / "cut.sqlite3"
    cut.write_bytes(good.read_bytes()[:1500])  # a copy that stopped half-way
    assert not ls_start.sound_template(cut)
    with sqlite3.connect(tmp_path / "other.sqlite3") as db:
        db.execute("CREATE TABLE t (x)")  # whole, but not Label Studio's
    assert not ls_start.sound_template(tmp_path / "other.sqlite3")


# Label Studio's own environment: its version and migrations name the cached database
HIT = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import label_studio, ls_start
out = Path(sys.argv[2])
ls_start.template_path = lambda: out / "template.sqlite3"  # not the set-up's own
site = Path(label_studio.__file__).resolve().parents[1]
key = ls_start.migrations_digest(site, Path(ls_start.__file__).resolve())
name = f"label-studio-{label_studio.__version__}-{key}.sqlite3"
print(json.dumps({"name": name, "made": str(ls_start.make_template())}))
"""


@pytest.mark.skipif(not LS_PYTHON.exists(), reason="Label Studio's environment: `make setup`")
def test_a_second_set_up_copies_the_cached_database_instead_of_migrating(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))

    def in_label_studio(script: str) -> subprocess.CompletedProcess:
        where = [str(ROOT / "extensions" / "labeling"), str(tmp_path)]
        return subprocess.run(
            [str(LS_PYTHON), "-c", script, *where],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    probe = in_label_studio(HIT.replace("ls_start.make_template()", "None"))
    assert probe.returncode == 0, probe.stderr
    name = json.loads(probe.stdout.strip().splitlines()[-1])["name"]
    (cache / "hubforge").mkdir(mode=0o700, parents=True)
    cached = database(cache / "hubforge" / name, migrations=7)
    run = in_label_studio(HIT)
    assert run.returncode == 0, run.stderr
    assert "from this machine's cache" in run.stdout
    made = Path(json.loads(run.stdout.strip().splitlines()[-1])["made"])
    assert made.read_bytes() == cached.read_bytes()  # the cached one, not a fresh migration
    assert made.stat().st_mode & 0o777 == 0o644
