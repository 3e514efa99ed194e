"""``python -m taas.agent``: the same as the taas-agent console script."""

import sys

from taas.agent.cli import main

sys.exit(main())
