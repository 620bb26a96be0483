"""``python -m symsoft`` is the same as the ``symsoft`` command."""

import sys

from symsoft.cli import main

sys.exit(main())
