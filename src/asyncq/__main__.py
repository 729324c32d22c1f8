"""``python -m asyncq``: the command line (see :mod:`asyncq.cli`)."""

import sys

from asyncq.cli import main

if __name__ == "__main__":
    sys.exit(main())
