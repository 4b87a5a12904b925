"""``python -m edgecodec``: the command line, as the ``edgecodec`` script runs it."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
