"""The README is the front door (≤ 250 lines) and docs/ holds the references: every relative link resolves."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert all(f"docs/{p.name}" in readme for p in PAGES[1:])  # every reference page is linked from it


def test_the_exit_codes_live_in_one_table():
    """docs/faults.md's table is errors.FAULTS, verbatim; README and run.py spell out no exit code of their own."""
    from chrono_membench.errors import FAULTS, fault_table

    assert fault_table() in (ROOT / "docs" / "faults.md").read_text()
    assert not re.search(r"^\| `\d+` \|", (ROOT / "README.md").read_text(), re.M)
    run = (ROOT / "experiments" / "run.py").read_text()
    assert not re.search(r"return [1-9]\d*\b|Exit codes: \d", run)  # every code comes from the table
    assert len({f.code for f in FAULTS}) == len(FAULTS)
