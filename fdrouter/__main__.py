"""``python -m fdrouter``: same as the ``fdrouter`` console script."""

import sys

from .cli import main

sys.exit(main())
