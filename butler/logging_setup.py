"""Map the original's log levels onto Python logging, with optional rotating file logs.

Request threads only put records on a queue; one listener thread formats and writes them.
With a log line per request, writing from 16 worker threads made them queue on the handler
lock around each ``write`` and cost about a third of the throughput.

Log messages carry caller-controlled text (paths, schedule names, file names), so the one
formatter escapes control characters in every message: a ``%0A`` in a URL can never start
a forged line such as a fake audit record. Tracebacks keep their line breaks.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import re
from pathlib import Path

SILLY = 5
VERBOSE = 15
LEVELS = {
    "silly": SILLY,
    "debug": logging.DEBUG,
    "verbose": VERBOSE,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_listener: logging.handlers.QueueListener | None = None
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """Control characters as visible escapes (``\\n``, ``\\x1b``), so one record is one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class SafeFormatter(logging.Formatter):
    """The standard formatter with control characters in the message escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (stdlib name)
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


def configure_logging(level: str, log_directory: Path | None = None) -> None:
    """Configure the root logger; file logs rotate daily and keep 30 days."""
    global _listener
    logging.addLevelName(SILLY, "SILLY")
    logging.addLevelName(VERBOSE, "VERBOSE")
    stop_logging()
    root = logging.getLogger()
    root.setLevel(LEVELS.get(level, logging.INFO))
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = SafeFormatter(FORMAT)
    outputs: list[logging.Handler] = [logging.StreamHandler()]
    if log_directory is not None:
        log_directory.mkdir(parents=True, exist_ok=True)
        outputs.append(
            logging.handlers.TimedRotatingFileHandler(
                log_directory / "butler.log", when="midnight", backupCount=30, encoding="utf-8"
            )
        )
    for output in outputs:
        output.setFormatter(formatter)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root.addHandler(logging.handlers.QueueHandler(records))
    _listener = logging.handlers.QueueListener(records, *outputs, respect_handler_level=True)
    _listener.start()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def stop_logging() -> None:
    """Write out queued records and stop the listener (at exit, or before reconfiguring)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        for output in _listener.handlers:
            output.close()
        _listener = None


atexit.register(stop_logging)
