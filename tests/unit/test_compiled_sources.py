"""Every account runs Hubforge's modules from their compiled copies (set-up compiles them):
the hub, the service, users' servers, jobs and endpoints run as accounts that cannot write a
__pycache__ where Hubforge is installed, so a module without a readable, current compiled
copy is compiled again at each of their starts (the service: ~0.2 s of CPU a start)."""

from __future__ import annotations

import importlib
import importlib.util
import stat
from pathlib import Path

PACKAGES = ["hubforge", "hubforge.hub", "hubforge.widgets", "hubforge.examples"]


def sources() -> list[Path]:
    found = []
    for name in PACKAGES:
        for folder in importlib.import_module(name).__path__:
            found += [p for p in Path(folder).glob("**/*.py") if "labextension" not in p.parts]
    return sorted(set(found))


def readable_by_all(path: Path) -> bool:
    """Other accounts can read it: the file world-readable, every folder down to it passable."""
    if not path.stat().st_mode & stat.S_IROTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


def current(source: Path, compiled: Path) -> bool:
    """The compiled copy records this source's mtime and size (what Python checks)."""
    header = compiled.read_bytes()[:16]
    if int.from_bytes(header[4:8], "little") & 1:  # hash-based: checked by content
        return True
    st = source.stat()
    return (
        int.from_bytes(header[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
        and int.from_bytes(header[12:16], "little") == st.st_size & 0xFFFFFFFF
    )


def test_every_module_has_a_current_compiled_copy_every_account_can_read():
    files = sources()
    assert len(files) > 100, files  # Hubforge's modules, wherever it is installed
    missing, closed, stale = [], [], []
    for source in files:
        compiled = Path(importlib.util.cache_from_source(str(source)))
        if not compiled.exists():
            missing.append(str(source))
        elif not readable_by_all(compiled):
            closed.append(str(compiled))
        elif not current(source, compiled):
            stale.append(str(source))
    assert not missing, f"never compiled (run `make setup`): {missing[:10]}"
    assert not closed, f"compiled, but other accounts cannot read them: {closed[:10]}"
    assert not stale, f"compiled before their last change (run `make setup`): {stale[:10]}"
