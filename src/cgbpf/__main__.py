"""``python -m cgbpf``."""

import sys

from .cli import main

sys.exit(main())
