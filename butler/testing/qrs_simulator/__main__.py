"""``python -m butler.testing.qrs_simulator``: the simulator without the ``butler`` script.

Useful where the package is importable but its console script is not on ``PATH``; the
options are those of ``butler simulate-qrs``.
"""

from butler.testing.qrs_simulator.cli import main

raise SystemExit(main())
