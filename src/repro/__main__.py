"""``python -m repro``: the same command as the ``repro`` console script."""

import sys

from .cli import main

sys.exit(main())
