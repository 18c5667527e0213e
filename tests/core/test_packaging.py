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
