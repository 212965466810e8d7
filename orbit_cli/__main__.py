"""``python -m orbit_cli ...`` is the ``orbit`` command."""

import sys

from orbit_cli.main import main

sys.exit(main())
