"""``python -m hubforge.cli``: the ``hubforge`` command."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
