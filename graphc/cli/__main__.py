"""`python -m graphc.cli ...`: the `graphc` command without the installed script."""

import sys

from graphc.cli import main

sys.exit(main())
