"""``python -m mcp_cascade``."""

import sys

from mcp_cascade.cli import main

sys.exit(main())
