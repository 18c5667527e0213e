"""Map the original's log levels onto Python logging, as text or JSON, with rotating file logs.

Request threads only put records on a queue; one listener thread formats and writes them.
With a log line per request, writing from 16 worker threads made them queue on the handler
lock around each ``write`` and cost about a third of the throughput.

Log messages carry caller-controlled text (paths, schedule names, file names), so the one
formatter escapes control characters in every message: a ``%0A`` in a URL can never start
a forged line such as a fake audit record. Tracebacks keep their line breaks in text; in
JSON (``Butler.logFormat: json``, for log shippers) every record is one object on one line.

File logging (``Butler.fileLogging``) writes ``butler.log`` in ``Butler.logDirectory`` and
rotates it daily or by size (``Butler.logRotation``), keeping a configured number of old
files; see README's "Logging".
"""

from __future__ import annotations

import atexit
import copy
import datetime as dt
import json
import logging
import logging.handlers
import queue
import re
import time
from dataclasses import dataclass
from pathlib import Path

from butler.config import Config, ConfigError

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
    """The standard formatter with control characters in the message escaped.

    A traceback keeps its lines, each indented, so an exception message carrying a caller's
    line break cannot start a line that reads like a record.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (stdlib name)
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        head, _, tail = super().format(record).partition("\n")
        return head + "".join(f"\n  {escape_controls(line)}" for line in tail.splitlines())


class JsonFormatter(logging.Formatter):
    """One JSON object per record and line: ``time``, ``level``, ``logger``, ``message``.

    ``exception`` holds the traceback text when there is one. JSON escapes every control
    character and, with ASCII output, the Unicode line separators too, so a record can never
    span lines, and a shipper gets the caller's text back exactly.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created)
            .astimezone()
            .isoformat("T", "milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=True)


class _RecordQueue(logging.handlers.QueueHandler):
    """Queues records with the message rendered and the traceback kept apart.

    The stock handler folds the traceback into the message, where the text formatter would
    escape its line breaks and the JSON one could not put it in ``exception``.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        prepared = copy.copy(record)
        prepared.msg = record.getMessage()
        prepared.args = None
        if record.exc_info:
            prepared.exc_text = _TRACEBACKS.formatException(record.exc_info)
        prepared.exc_info = None
        return prepared


_TRACEBACKS = logging.Formatter()


class _BatchingListener(logging.handlers.QueueListener):
    """Writes what is queued, then pauses ``LINGER`` seconds before looking again.

    The stock listener wakes for every record, so with an access line per request every
    request also woke the listener thread and handed it the GIL. Pausing lets the records of
    busy moments pile up: request threads only append to the queue, and the listener wakes
    at most about 50 times a second and writes what has gathered. A record is written at
    most ``LINGER`` seconds later than before; stop still writes out everything queued.
    """

    LINGER = 0.02

    def __init__(
        self, records: queue.SimpleQueue[logging.LogRecord | None], *handlers: logging.Handler
    ):
        super().__init__(records, *handlers, respect_handler_level=True)
        self._records = records

    def _monitor(self) -> None:
        records = self._records
        while True:
            batch = [records.get()]
            while True:
                try:
                    batch.append(records.get_nowait())
                except queue.Empty:
                    break
            for record in batch:
                if record is None:  # the stock listener's stop sentinel
                    return
                self.handle(record)
            time.sleep(self.LINGER)


LOG_FORMATS = ("text", "json")
ROTATIONS = ("daily", "size")


@dataclass(frozen=True)
class LogSettings:
    """Where and how Butler logs; ``directory`` ``None`` means the console only.

    Daily rotation starts a new file at midnight and keeps ``retention_days`` old ones; size
    rotation starts one at ``rotation_size_mb`` and keeps ``retention_files`` old ones.
    """

    level: str = "info"
    format: str = "text"
    directory: Path | None = None
    rotation: str = "daily"
    retention_days: int = 30
    rotation_size_mb: int = 10
    retention_files: int = 10

    @classmethod
    def from_config(cls, config: Config) -> LogSettings:
        """The logging keys of ``Butler:`` (``ConfigError`` with the key path when invalid)."""
        file_logging = config.get("fileLogging", False)
        if not isinstance(file_logging, bool):
            raise ConfigError(f"Butler.fileLogging: must be true or false, got {file_logging!r}")
        directory = config.get("logDirectory", "log")
        if not isinstance(directory, str):
            raise ConfigError(f"Butler.logDirectory: must be a folder path, got {directory!r}")
        return cls(
            level=config.log_level,
            format=_choice(config, "logFormat", LOG_FORMATS),
            directory=config.resolve_path(directory) if file_logging else None,
            rotation=_choice(config, "logRotation", ROTATIONS),
            retention_days=_count(config, "logRetentionDays", cls.retention_days),
            rotation_size_mb=_count(config, "logRotationSizeMB", cls.rotation_size_mb),
            retention_files=_count(config, "logRetentionFiles", cls.retention_files),
        )

    def file_handler(self) -> logging.Handler | None:
        if self.directory is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "butler.log"
        if self.rotation == "size":
            return logging.handlers.RotatingFileHandler(
                path,
                maxBytes=self.rotation_size_mb * 1024 * 1024,
                backupCount=self.retention_files,
                encoding="utf-8",
            )
        return logging.handlers.TimedRotatingFileHandler(
            path, when="midnight", backupCount=self.retention_days, encoding="utf-8"
        )


def _choice(config: Config, key: str, choices: tuple[str, ...]) -> str:
    value = config.get(key, choices[0])
    if value not in choices:
        raise ConfigError(f"Butler.{key}: must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _count(config: Config, key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"Butler.{key}: must be a whole number of at least 1, got {value!r}")
    return value


def configure_logging(settings: LogSettings) -> None:
    """Configure the root logger: the console, and the rotating file when one is set."""
    global _listener
    logging.addLevelName(SILLY, "SILLY")
    logging.addLevelName(VERBOSE, "VERBOSE")
    stop_logging()
    root = logging.getLogger()
    root.setLevel(LEVELS.get(settings.level, logging.INFO))
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = JsonFormatter() if settings.format == "json" else SafeFormatter(FORMAT)
    outputs: list[logging.Handler] = [logging.StreamHandler()]
    file_output = settings.file_handler()
    if file_output is not None:
        outputs.append(file_output)
    for output in outputs:
        output.setFormatter(formatter)
    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    root.addHandler(_RecordQueue(records))
    _listener = _BatchingListener(records, *outputs)
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
