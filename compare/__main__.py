"""``python -m compare`` does what the ``crosscheck`` command does."""

import sys

from compare.cli import main

if __name__ == "__main__":
    sys.exit(main())
