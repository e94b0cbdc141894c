"""Allow ``python -m canetlib``."""

import sys

from canetlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
