"""`python -m ecmh ...` is the `ecmh` command (`ecmh.cli`), for environments without the console script on PATH."""

import sys

from .cli import main

sys.exit(main())
