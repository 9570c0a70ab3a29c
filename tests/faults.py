"""Damage done to files the way the fault reviews did it."""

from __future__ import annotations

import os
from pathlib import Path

PAGE = 4096


def damage_sqlite(path: Path, pages: int = 16) -> None:
    """``pages`` pages after the header overwritten with random bytes."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        for page in range(1, min(pages + 1, size // PAGE)):
            f.seek(page * PAGE)
            f.write(os.urandom(PAGE))
