"""``python -m fdrouter.testing``: the same as ``python -m fdrouter.testing.mock_backend``."""

import sys

from fdrouter.testing.mock_backend import main

sys.exit(main())
