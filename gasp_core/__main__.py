"""``python -m gasp_core``: the ``gasp`` command (gasp_core.command)."""

import sys

from gasp_core.command import main

sys.exit(main())
