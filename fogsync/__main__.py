"""``python -m fogsync``: the command line."""

import sys

from fogsync.cli.main import main

sys.exit(main())
