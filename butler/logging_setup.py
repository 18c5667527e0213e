"""Map the original's log levels onto Python logging, with optional rotating file logs."""

from __future__ import annotations

import logging
import logging.handlers
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


def configure_logging(level: str, log_directory: Path | None = None) -> None:
    """Configure the root logger once; file logs rotate daily and keep 30 days."""
    logging.addLevelName(SILLY, "SILLY")
    logging.addLevelName(VERBOSE, "VERBOSE")
    root = logging.getLogger()
    root.setLevel(LEVELS.get(level, logging.INFO))
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(console)
    if log_directory is not None:
        log_directory.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.TimedRotatingFileHandler(
            log_directory / "butler.log", when="midnight", backupCount=30, encoding="utf-8"
        )
        rotating.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(rotating)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
