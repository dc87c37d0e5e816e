"""The configuration reference is generated from the code: every field documented where it is defined, the page
current, and --help-config printing the same."""

import contextlib
import io
import runpy
from pathlib import Path

from chrono_membench.config import ABLATION_DOCS, ABLATIONS
from chrono_membench.config_docs import fields, reference

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_field_has_its_docstring():
    assert len(fields()) > 80
    assert [f.key for f in fields() if len(f.doc) < 10] == []


def test_every_ablation_says_what_it_is_for():
    assert set(ABLATION_DOCS) == set(ABLATIONS)


def test_the_page_is_current():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == reference(), "docs/configuration.md is stale: run `python scripts/docs.py` and commit it"
    for f in fields():
        assert f"**`{f.key}`**" in page


def test_help_config_prints_the_page():
    run = runpy.run_path(str(ROOT / "experiments" / "run.py"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run["main"](["--help-config"]) == 0
    assert out.getvalue() == reference()
    # the allowed values of a Literal field and a rule are on the page
    assert "- **`train.optimizer`** = `adamw` (str, adamw, muon, fixed on resume)" in out.getvalue()
    assert "**`chrono.canary_until`** = `0.5` (float, in [0, 1], fixed on resume)" in out.getvalue()
