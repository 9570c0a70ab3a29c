"""The example series every user finds in ``~/examples`` after their first spawn.

1. label, 2. train, 3. watch, 4. deploy, 5. pre-label: a small digits data set (from
scikit-learn) goes from Label Studio to a 2-worker job, TensorBoard, an endpoint, a TFLite
file, and back to Label Studio as proposed labels. ``tests/integration/test_examples.py`` runs
them top to bottom on a real workbench.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hubforge.atomic import write_text
from hubforge.confined import UnsafeEntry, make_folders_beneath, open_beneath

FOLDER = "examples"


def notebooks() -> list[Path]:
    """The example notebooks in the order they are meant to be run."""
    return sorted(Path(__file__).parent.glob("[0-9][0-9]-*.ipynb"))


def install(home: Path, marker: Path, owner: tuple[int, int] | None = None) -> list[Path]:
    """Copy the examples into ``home/examples`` the first time only (``marker`` remembers):
    a file already there is never replaced, and examples a user deleted do not come back.
    Nothing is written through a link (every folder opened O_NOFOLLOW from ``home``); with
    ``owner`` (uid, gid) what is made here is theirs. Returns the files copied."""
    if marker.exists():
        return []
    target = home / FOLDER
    try:
        make_folders_beneath(home, FOLDER, owner, 0o755, exist_ok=False)
    except FileExistsError:
        pass  # theirs already: only missing files are added
    except (UnsafeEntry, NotADirectoryError):
        return []  # the user's own 'examples' (a file or a link): left alone
    copied = []
    for source in notebooks():
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = open_beneath(home, Path(FOLDER) / source.name, flags, 0o644)
        except (FileExistsError, UnsafeEntry, NotADirectoryError):
            continue
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
        copied.append(target / source.name)
    write_text(marker, "copied\n", mode=0o644)
    return copied


def main(argv: list[str] | None = None) -> int:
    """``python -m hubforge.examples HOME``: what a Kubernetes pod runs as it starts (the
    marker lives in the home volume: ~/.local/share/hubforge/examples-copied)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    home = Path(args[0] if args else Path.home())
    marker = home / ".local" / "share" / "hubforge" / "examples-copied"
    marker.parent.mkdir(parents=True, exist_ok=True)
    copied = install(home, marker)
    print(f"{len(copied)} example notebook(s) copied into {home / FOLDER}")
    return 0
