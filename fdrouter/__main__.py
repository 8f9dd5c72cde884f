"""``python -m fdrouter``: same as the ``fdrouter`` console script."""

import sys

from .cli import main

__all__: list[str] = []

# guarded: worker processes (multiprocessing's spawn) import the parent's main module again
if __name__ == "__main__":
    sys.exit(main())
