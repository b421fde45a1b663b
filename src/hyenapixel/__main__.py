"""``python -m hyenapixel``: the ``hyenapixel`` command (works under ``torchrun -m hyenapixel train ...``)."""

import sys

from hyenapixel.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
