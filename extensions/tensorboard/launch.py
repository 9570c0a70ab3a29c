"""Run TensorBoard with a path prefix taken from the environment.

``python -m hubforge.tensorboard.launch --logdir ... --port N`` is TensorBoard's own command
line plus ``--path_prefix $HUBFORGE_TENSORBOARD_PREFIX``. The prefix ends in a per-instance
key: a process's command line is readable by every account on the machine
(/proc/<pid>/cmdline), its environment only by its own account, so another user who finds
the port still cannot guess a path TensorBoard answers.
"""

from __future__ import annotations

import os
import sys

PREFIX_ENV = "HUBFORGE_TENSORBOARD_PREFIX"


def main() -> None:
    prefix = os.environ.pop(PREFIX_ENV, "")
    if prefix:
        sys.argv += ["--path_prefix", prefix]
    from tensorboard.main import run_main

    run_main()


if __name__ == "__main__":
    main()
