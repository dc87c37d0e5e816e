"""The README is the front door (≤ 150 lines) and docs/ holds the references: every relative link resolves, nothing
refers to a file outside the repository, every `docs/design.md §N` citation names a section that exists, and the
README's Layout names every module and nothing that is gone."""

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
    assert len(readme.splitlines()) <= 150
    assert all(f"docs/{p.name}" in readme for p in PAGES[1:])  # every reference page is linked from it


def test_the_exit_codes_live_in_one_table():
    """docs/faults.md's table is errors.FAULTS, verbatim; README and run.py spell out no exit code of their own."""
    from chrono_membench.errors import FAULTS, fault_table

    assert fault_table() in (ROOT / "docs" / "faults.md").read_text()
    assert not re.search(r"^\| `\d+` \|", (ROOT / "README.md").read_text(), re.M)
    run = (ROOT / "experiments" / "run.py").read_text()
    assert not re.search(r"return [1-9]\d*\b|Exit codes: \d", run)  # every code comes from the table
    assert len({f.code for f in FAULTS}) == len(FAULTS)


DIRS = ("chrono_membench", "studies", "tests", "experiments", "analysis", "benchmarks", "scripts", "docs", "data")
TEXT = [p for d in DIRS for p in (ROOT / d).rglob("*")
        if p.suffix in (".py", ".md", ".yaml", ".sh") and not {"sample", "downloads"} & set(p.parts)]
TEXT += [ROOT / "README.md", ROOT / ".ci" / "run"]


def test_nothing_refers_to_a_file_outside_the_repository():
    """The science is defined in docs/design.md; no page, docstring or comment points at a design file elsewhere."""
    outside = re.compile("|".join([r"\.\./" + "shared", "DESIGN" + r"\.md", r"seeds? 00\d"]))
    found = [f"{p.relative_to(ROOT)}:{i}" for p in TEXT for i, line in enumerate(p.read_text().splitlines(), 1)
             if outside.search(line)]
    assert not found, found


def test_every_design_citation_names_a_section_that_exists():
    design = (ROOT / "docs" / "design.md").read_text()
    sections = set(re.findall(r"^#+ (\d+(?:\.\d+)?)\.? ", design, re.M))
    cited = {(p.relative_to(ROOT), s) for p in TEXT for s in re.findall(r"design\.md §(\d+(?:\.\d+)?)", p.read_text())}
    assert len(cited) > 20
    assert not [c for c in cited if c[1] not in sections], sections


def test_the_readme_layout_matches_the_tree():
    """Every module the Layout names exists, and every module of the package, studies/, experiments/, analysis/,
    benchmarks/ and scripts/ is named (a package's submodules by their stem inside its parentheses)."""
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("```")[1]
    named = set(re.findall(r"[\w.]+\.(?:py|sh|md)\b", layout))
    words = set(re.findall(r"\w+", layout))
    missing = []
    for d in ("chrono_membench", "studies", "experiments", "analysis", "benchmarks", "scripts"):
        for p in (ROOT / d).glob("*"):
            if p.suffix in (".py", ".sh") and p.name != "__init__.py" and p.name not in named:
                missing.append(str(p.relative_to(ROOT)))
    for sub in ("chrono", "data", "saes"):
        for p in (ROOT / "chrono_membench" / sub).glob("*.py"):
            if p.name != "__init__.py" and p.stem not in words:
                missing.append(str(p.relative_to(ROOT)))
    assert not missing, f"not in the README's Layout: {missing}"
    where = [ROOT / d for d in ("chrono_membench", "studies", "experiments", "analysis", "benchmarks", "scripts", "data")]
    gone = [n for n in named if not any((d / n).exists() for d in where)]
    assert not gone, f"the README's Layout names what is not there: {gone}"
