"""``python -m coldchain``."""

import sys

from coldchain.cli import main

sys.exit(main())
