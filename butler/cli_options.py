"""Command-line options that every ``butler`` command accepts, core and plugin ones alike."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


class CliOptions:
    """Adds each option to the top-level parser and to every sub-command's parser.

    On a sub-command the default is suppressed, so ``butler -c a.yaml run`` keeps the value
    given before the sub-command; the top-level parser supplies the real default.
    """

    def __init__(self, top: argparse.ArgumentParser, commands: Sequence[argparse.ArgumentParser]):
        self._top = top
        self._commands = list(commands)

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        """Same arguments as ``argparse.ArgumentParser.add_argument``."""
        self._top.add_argument(*names, **kwargs)
        for parser in self._commands:
            parser.add_argument(*names, **{**kwargs, "default": argparse.SUPPRESS})
