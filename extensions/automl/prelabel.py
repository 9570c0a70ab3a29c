"""``python -m hubforge.automl.prelabel NAME``: the best model of a classify() run guesses
every item of its project not labeled yet (what the panel's "Pre-label the rest" runs, in a
process of its own so the user's server never loads TensorFlow). Prints
``{"prelabeled": N, "project": ...}``; a refusal goes to stderr with exit status 2."""

from __future__ import annotations

import json
import sys

from .. import deferred_imports
from .classify import ClassifyError, open_classification


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hubforge.automl.prelabel NAME", file=sys.stderr)
        return 2
    deferred_imports.defer()  # it loads a Keras model: without what Keras imports unused
    try:
        run = open_classification(args[0])
        done = run.prelabel()
    except (ClassifyError, ValueError, KeyError) as e:
        print(str(e).strip("'\""), file=sys.stderr)
        return 2
    print(json.dumps({"prelabeled": done, "project": run.record["project"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
