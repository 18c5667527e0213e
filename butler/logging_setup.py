"""Map the original's log levels onto Python logging, with optional rotating file logs.

Request threads only put records on a queue; one listener thread formats and writes them.
With a log line per request, writing from 16 worker threads made them queue on the handler
lock around each ``write`` and cost about a third of the throughput.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
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
    formatter = logging.Formatter(FORMAT)
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
