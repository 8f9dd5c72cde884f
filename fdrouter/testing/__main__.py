"""``python -m fdrouter.testing``: the same as ``python -m fdrouter.testing.mock_backend``."""

import sys

from fdrouter.testing.mock_backend import main

__all__: list[str] = []

sys.exit(main())
