"""Label Studio's start (runs in Label Studio's environment, see ls_main.py): Django set up,
the gate the port serves until Label Studio is ready, its database checked and backed up,
and the migrated template a first start copies.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import sqlite3
import sys
from pathlib import Path
from urllib.parse import unquote


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "label_studio.core.settings.label_studio")
    os.environ["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] = "true"
    import label_studio

    sys.path.insert(0, os.path.dirname(label_studio.__file__))
    import django

    django.setup()  # LABEL_STUDIO_HOST (the public URL with the prefix) makes its links
    from django.conf import settings

    if settings.FORCE_SCRIPT_NAME:  # its login redirect is absolute: keep it under the prefix
        settings.LOGIN_URL = settings.FORCE_SCRIPT_NAME + settings.LOGIN_URL


class Gate:
    """The WSGI app the port serves from the first second, until Label Studio has migrated
    its database: the front page says "starting" (200, it reloads itself, and it is what the
    hub checks before it routes anything), every other path answers 503 with Retry-After.
    Then Label Studio itself. The hub starts routing at once instead of waiting."""

    MESSAGE = (
        "Label Studio is starting (its first start prepares its database and takes about a "
        "minute): try again in a few seconds"
    )

    def __init__(self, prefix: str) -> None:
        self.app = None
        self.prefix = prefix
        self.damaged: str | None = None  # why Label Studio will not start, and the fix

    def __call__(self, environ, start_response):
        if self.app is not None:
            return self.app(environ, start_response)
        headers = [("Retry-After", "5"), ("Cache-Control", "no-store")]
        # the prefix as the hub writes it (a base URL may be quoted: /hub%20x/) or decoded
        path = unquote(environ.get("PATH_INFO", "/")).rstrip("/")
        if self.damaged:
            return self._damaged(path, start_response)
        if path == unquote(self.prefix):
            body = (
                "<!doctype html><meta http-equiv='refresh' content='5'>"
                f"<title>Label Studio is starting</title><p>{self.MESSAGE}. This page reloads "
                "by itself.</p>"
            ).encode()
            start_response("200 OK", [("Content-Type", "text/html"), *headers])
            return [body]
        body = json.dumps({"status": "starting", "error": self.MESSAGE}).encode()
        start_response("503 Service Unavailable", [("Content-Type", "application/json"), *headers])
        return [body]

    def _damaged(self, path: str, start_response):
        """The front page says what is wrong and what to do; everything else answers 503
        with the same message as JSON (the labeling API shows it as it is)."""
        headers = [("Cache-Control", "no-store")]
        if path == unquote(self.prefix):
            text = html.escape(self.damaged or "")
            body = f"<!doctype html><title>Label Studio cannot start</title><p>{text}</p>"
            start_response("200 OK", [("Content-Type", "text/html"), *headers])
            return [body.encode()]
        body = json.dumps({"status": "damaged", "error": self.damaged}).encode()
        start_response("503 Service Unavailable", [("Content-Type", "application/json"), *headers])
        return [body]


def _sqlite_backup():
    """hubforge/sqlite_backup.py, loaded by its path (Hubforge is not installed in Label
    Studio's environment; the file uses the standard library only)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "sqlite_backup.py"
    spec = importlib.util.spec_from_file_location("hubforge_sqlite_backup", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _database() -> Path:
    base = Path(os.environ.get("LABEL_STUDIO_BASE_DATA_DIR", "."))
    return Path(os.environ.get("DATABASE_NAME") or base / "label_studio.sqlite3")


def back_up_and_exit(signum: int, frame: object) -> None:
    """A clean stop (SIGTERM from its keeper): the database backed up as it is now."""
    with contextlib.suppress(Exception):  # stopping matters more than the copy
        health = _sqlite_backup()
        if health.check(_database()) is None:
            health.backup(_database())
    sys.exit(0)


def database_problem() -> str | None:
    """Label Studio's database checked before Django opens it: None (and a backup made)
    when it is sound, else what is wrong with it and what to do."""
    health = _sqlite_backup()
    path = _database()
    problem = health.check(path)
    if problem is None:
        with contextlib.suppress(OSError, sqlite3.Error):  # a full disk: start anyway
            health.backup(path)
        return None
    newest = next((b for b in health.backups(path) if health.check(b) is None), None)
    fix = (
        "stop the workbench and run `hubforge restore-database --label-studio`: it puts "
        f"back its backup of {health.when(newest)} (projects and labels as they were then)"
        if newest
        else "there is no backup of it: stop the workbench and move it aside (a new, empty "
        "one is made at the next start; projects and labels in it are lost)"
    )
    return f"Label Studio's database {path} is damaged ({problem}): {fix}"


def template_path() -> Path:
    """Label Studio's database, migrated once at set-up (`make setup`), beside its
    environment; named by its version, so an upgraded Label Studio never uses an old one."""
    import label_studio

    return Path(sys.prefix) / f"hubforge-label-studio-{label_studio.__version__}.sqlite3"


def migrations_digest(site_packages: Path, *also: Path) -> str:
    """What a migrated database depends on: every Django migration installed (Label Studio's
    apps, Django's, third parties') and the files that set Label Studio up for it."""
    import hashlib

    digest = hashlib.sha256()
    for path in [*sorted(site_packages.glob("**/migrations/*.py")), *also]:
        name = path.relative_to(site_packages) if path.is_relative_to(site_packages) else path.name
        digest.update(f"{name}\0".encode() + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def machine_cache() -> Path | None:
    """This account's cache folder for Hubforge (XDG_CACHE_HOME, else ~/.cache), made 0700;
    None when it is not this account's alone (another owner, or others may write in it)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hubforge"
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = base.lstat()
    except OSError:
        return None
    if not base.is_dir() or base.is_symlink() or info.st_uid != os.geteuid():
        return None
    return None if info.st_mode & 0o022 else base


def sound_template(path: Path) -> bool:
    """A migrated database that SQLite finds whole, with Django's migrations recorded."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            whole = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            return whole and db.execute("SELECT count(*) FROM django_migrations").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def _copy_atomically(source: Path, target: Path, mode: int) -> None:
    import shutil

    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    os.chmod(partial, mode)
    os.replace(partial, target)


def make_template() -> Path:
    """Migrate a fresh database in a scratch folder and keep it as the template every
    workbench's first start copies (a first start then takes seconds, not a minute).
    Migrating takes ~35 CPU-s: the result is kept in this account's cache too, named by
    Label Studio's version and its migrations, and a later set-up on this machine (another
    clone, a fresh CI checkout) copies it from there once SQLite finds it whole."""
    import label_studio

    target = template_path()
    site_packages = Path(label_studio.__file__).resolve().parents[1]
    key = migrations_digest(site_packages, Path(__file__).resolve())
    cache = machine_cache()
    cached = cache / f"label-studio-{label_studio.__version__}-{key}.sqlite3" if cache else None
    if cached is not None and cached.is_file() and sound_template(cached):
        _copy_atomically(cached, target, 0o644)
        print(f"label studio: the migrated database from this machine's cache ({cached})")
        return target
    _migrate_into(target)
    if cached is not None:
        with contextlib.suppress(OSError):
            _copy_atomically(target, cached, 0o600)
    return target


def _migrate_into(target: Path) -> None:
    """A fresh database migrated in a scratch folder, copied to ``target``."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hubforge-ls-template-") as scratch:
        os.environ["LABEL_STUDIO_BASE_DATA_DIR"] = scratch
        os.environ.pop("DATABASE_NAME", None)
        # as when it serves: Label Studio asks git for its version around its package and
        # would write the clone's commit into its own version file (shown on /version)
        os.environ["GIT_DIR"] = os.devnull
        # and no call to the package index or error reports to the internet (set-up)
        os.environ.update(LATEST_VERSION_CHECK="false", COLLECT_ANALYTICS="false", SENTRY_DSN="")
        _setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", "--no-color", verbosity=0)
        connections.close_all()
        _copy_atomically(Path(scratch) / "label_studio.sqlite3", target, 0o644)


def seed_from_template() -> bool:
    """A workbench's first start: its database begins as the migrated template (if set-up
    made one for this version), so `migrate` has nothing left to do."""
    path = _database()
    try:
        template = template_path()
    except ImportError:
        return False
    if path.exists() or not template.is_file():
        return False
    import shutil

    partial = path.with_name(path.name + ".seeding")
    shutil.copyfile(template, partial)
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return True
