"""The service and migration pages: every relative link and README anchor they use exists."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PAGES = ("README.md", "docs/running-as-a-service.md", "docs/migrating-from-butler.md")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_relative_links_point_at_files_and_headings_that_exist():
    checked = 0
    for page in PAGES:
        path = ROOT / page
        for target in re.findall(r"\]\(([^)]+)\)", path.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            assert linked.is_file(), f"{page}: {target}"
            if anchor:
                assert anchor in anchors(linked.read_text(encoding="utf-8")), f"{page}: {target}"
            checked += 1
    assert checked > 20


def test_readme_links_the_service_and_migration_pages():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/running-as-a-service.md)" in readme
    assert "(docs/migrating-from-butler.md)" in readme
