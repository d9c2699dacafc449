"""The ``superpixel-annotator`` command's entry point (see :mod:`.serve.cli`)."""

import sys

from .serve.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
