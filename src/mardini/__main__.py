"""``python -m mardini``: the same command line as the ``mardini`` entry point."""

import sys

from mardini.cli import main

if __name__ == "__main__":
    sys.exit(main())
