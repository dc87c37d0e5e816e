"""The bundled sample's sources, opened once per module (opening is the slow part)."""

import pytest

from chrono_membench.data import SOURCES, SourceRecords


@pytest.fixture(scope="module")
def records():
    return {name: SourceRecords(src, "synthetic") for name, src in SOURCES.items()}
