import datetime as dt
import json
import logging
import logging.handlers
import re
from pathlib import Path

import pytest

from butler.app import create_app
from butler.config import Config, ConfigError
from butler.logging_setup import SILLY, VERBOSE, LogSettings, configure_logging, stop_logging
from butler.testing.certs import generate_certificates
from butler.tls_server import CherootTlsServer, TlsFiles


def test_levels_map_and_file_logging(tmp_path):
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        configure_logging(LogSettings("verbose", directory=tmp_path / "log"))
        assert root.level == VERBOSE
        logging.getLogger("butler.test").log(VERBOSE, "verbose line")
        logging.getLogger("butler.test").debug("debug line")
        stop_logging()
        text = (tmp_path / "log" / "butler.log").read_text(encoding="utf-8")
        assert "VERBOSE butler.test: verbose line" in text
        assert "debug line" not in text
        configure_logging(LogSettings("silly"))
        assert root.level == SILLY
        configure_logging(LogSettings("warn"))
        assert root.level == logging.WARNING
    finally:
        stop_logging()
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])


@pytest.fixture
def log_config(tmp_path):
    def factory(**keys):
        return Config.from_mapping({"restServerEndpointsEnable": {}, **keys}, tmp_path)

    return factory


def test_json_lines_carry_time_level_logger_message_and_exception(
    log_config, capfd, restore_logging
):
    configure_logging(LogSettings.from_config(log_config(logFormat="json")))
    forged = "x\n2026-01-01 INFO butler.audit: forged\u2028also forged"
    logging.getLogger("butler.test").warning("caller said %s", forged)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("butler.test").exception("failed")
    stop_logging()
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == f"caller said {forged}"
    assert first["level"] == "WARNING" and first["logger"] == "butler.test"
    assert dt.datetime.fromisoformat(first["time"]).tzinfo is not None
    assert "exception" not in first
    assert second["message"] == "failed"
    assert second["exception"].startswith("Traceback") and "ValueError: boom" in second["exception"]


def test_file_logging_rotates_by_size_and_keeps_the_configured_number(
    log_config, tmp_path, restore_logging
):
    settings = LogSettings.from_config(
        log_config(
            fileLogging=True,
            logDirectory="logs",
            logRotation="size",
            logRotationSizeMB=1,
            logRetentionFiles=2,
        )
    )
    assert settings.directory == tmp_path / "logs"
    configure_logging(settings)
    line = "y" * 1000
    for _ in range(4 * 1024):
        logging.getLogger("butler.test").info(line)
    stop_logging()
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["butler.log", "butler.log.1", "butler.log.2"]
    assert (tmp_path / "logs" / "butler.log.1").stat().st_size <= 1024 * 1024


def test_daily_rotation_keeps_the_configured_days(log_config, tmp_path, restore_logging):
    settings = LogSettings.from_config(log_config(fileLogging=True, logRetentionDays=7))
    handler = settings.file_handler()
    assert isinstance(handler, logging.handlers.TimedRotatingFileHandler)
    try:
        assert handler.when == "MIDNIGHT"
        assert handler.backupCount == 7
        assert Path(handler.baseFilename) == tmp_path / "log" / "butler.log"
    finally:
        handler.close()


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"logFormat": "xml"}, "Butler.logFormat: must be one of text, json, got 'xml'"),
        ({"logRotation": "weekly"}, "Butler.logRotation: must be one of daily, size"),
        ({"logRetentionDays": 0}, "Butler.logRetentionDays: must be a whole number of at least 1"),
        ({"logRotationSizeMB": "10"}, "Butler.logRotationSizeMB: must be a whole number"),
        ({"fileLogging": "yes"}, "Butler.fileLogging: must be true or false"),
    ],
)
def test_bad_logging_keys_are_config_errors(log_config, keys, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        LogSettings.from_config(log_config(**keys))


def test_cheroot_messages_go_through_the_formatter(make_config, capfd, restore_logging, tmp_path):
    certs = generate_certificates(tmp_path / "certs")
    app = create_app(make_config({"restServerEndpointsEnable": {"butlerping": True}}))
    server = CherootTlsServer(app, "127.0.0.1", 0, TlsFiles(certs.server_cert, certs.server_key))
    configure_logging(LogSettings(format="json"))
    try:
        # What cheroot's worker does when a connection breaks mid-request.
        server._server.error_log("Got a connection error (reset)", level=logging.INFO)
    finally:
        server.shutdown()
    stop_logging()
    (line,) = capfd.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["logger"] == "butler.server"
    assert entry["message"] == "cheroot: Got a connection error (reset)"


def test_text_tracebacks_keep_their_lines_but_cannot_forge_a_record(capfd, restore_logging):
    configure_logging(LogSettings())
    forged = "2026-01-01 00:00:00,000 INFO butler.audit: forged"
    try:
        raise ValueError(f"bad name x\n{forged}")
    except ValueError:
        logging.getLogger("butler.test").exception("failed")
    stop_logging()
    lines = capfd.readouterr().err.splitlines()
    assert lines[0].endswith("ERROR butler.test: failed")
    assert lines[1] == "  Traceback (most recent call last):"
    assert "  ValueError: bad name x" in lines
    assert f"  {forged}" in lines
    assert not [line for line in lines if line.startswith(forged)]
