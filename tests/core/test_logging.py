import logging

from butler.logging_setup import SILLY, VERBOSE, configure_logging, stop_logging


def test_levels_map_and_file_logging(tmp_path):
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        configure_logging("verbose", tmp_path / "log")
        assert root.level == VERBOSE
        logging.getLogger("butler.test").log(VERBOSE, "verbose line")
        logging.getLogger("butler.test").debug("debug line")
        stop_logging()
        text = (tmp_path / "log" / "butler.log").read_text(encoding="utf-8")
        assert "VERBOSE butler.test: verbose line" in text
        assert "debug line" not in text
        configure_logging("silly")
        assert root.level == SILLY
        configure_logging("warn")
        assert root.level == logging.WARNING
    finally:
        stop_logging()
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
