"""A non-editable install (README's demo command) ships every package of the source tree."""

import configparser
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_setup_cfg_lists_every_package():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    listed = set(setup["options"]["packages"].split())
    found = set()
    for source, name in (("butler", "butler"), ("plugins", "butler_plugins")):
        for init in (ROOT / source).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / source).parts
            found.add(".".join((name, *parts)))
    assert listed == found


def test_license_is_declared_once_so_builds_print_no_deprecation_warnings():
    """setuptools 77+ warns on every build when a License classifier sits next to ``license``."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    assert setup["metadata"]["license"] == "MIT"
    assert not [c for c in setup["metadata"]["classifiers"].split("\n") if "License ::" in c]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'requires = ["setuptools>=77", "wheel"]' in pyproject
