"""``python -m butler``: the same command as the ``butler`` script, for the Windows service,
which names the interpreter rather than a launcher."""

import sys

from butler.cli import main

sys.exit(main())
