"""A stand-in for the Qlik Sense Repository Service (QRS), for tests, the demo and benchmarks.

Qlik Sense cannot run on a build machine, yet Butler must be proven against a real network
peer: TLS with a client certificate, the Xrfkey check, keep-alive connections, QRS filter
expressions, and the failures a real site produces (errors, slowness, dropped connections).
This package is that peer. It is test/demo infrastructure and is never imported by the
production path.

Everything observable is recorded (requests, task starts, new TLS connections) so tests can
assert what Butler actually sent instead of trusting what it says it sent. See
``docs/qrs-simulator.md`` for the catalogue format and fault injection.

The parts, one job each: ``server`` (sockets, TLS, HTTP framing, shutdown), ``faults``
(injected failures and latency), ``executions`` (the scheduler queue on a clock),
``recording`` (what was seen), ``routes`` (the QRS API and its catalogue), ``simulator``
(the object callers use) and ``cli`` (``butler simulate-qrs``).
Callers import from this package, so the layout can change without touching them.
"""

from butler.testing.qrs_catalogue import load_catalogue
from butler.testing.qrs_simulator.cli import main
from butler.testing.qrs_simulator.executions import ManualClock
from butler.testing.qrs_simulator.faults import Fault
from butler.testing.qrs_simulator.recording import RequestRecord, StartRecord
from butler.testing.qrs_simulator.simulator import QrsSimulator

__all__ = [
    "Fault",
    "ManualClock",
    "QrsSimulator",
    "RequestRecord",
    "StartRecord",
    "load_catalogue",
    "main",
]
