"""``python -m hubforge.examples HOME`` copies the examples into HOME once."""

import sys

from hubforge.examples import main

sys.exit(main())
