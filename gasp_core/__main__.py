"""``python -m gasp_core``: the ``gasp`` command (gasp_core.apps.command)."""

import sys

from gasp_core.apps.command import main

sys.exit(main())
