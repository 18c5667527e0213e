"""README claims that the code must keep true."""

import re
from pathlib import Path

from butler.app import create_app, mounted_endpoints
from butler.config import endpoint_enable_map
from butler.openapi import openapi_path
from tests.conftest import QLIK_PLACEHOLDERS

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_endpoint_table_matches_the_app(make_config):
    config = make_config(
        {**QLIK_PLACEHOLDERS, "restServerEndpointsEnable": endpoint_enable_map(True)}
    )
    served = {
        (ep.method, openapi_path(ep.rule), ep.enable_key)
        for ep in mounted_endpoints(create_app(config))
    }
    rows = re.findall(r"^\| (GET|PUT|POST|DELETE|PATCH) \| (\S+) \| (\S+) \|$", README, re.M)
    assert len(rows) == len(set(rows))
    assert set(rows) == served


def test_readme_opens_with_the_two_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    assert "butler demo" in blocks[0]
    assert blocks[1].strip() == "bash scripts/test.sh"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/test.sh" in ci
