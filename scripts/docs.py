"""Write the generated pages of docs/: `python scripts/docs.py` (docs/configuration.md, from config.py's field
docstrings; tests/test_config_docs.py fails when it is stale). The figures in docs/ come from a demo run:
`python analysis/report.py RUN --docs`."""

from pathlib import Path

from chrono_membench.config_docs import reference

if __name__ == "__main__":
    page = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    page.write_text(reference())
    print(page)
