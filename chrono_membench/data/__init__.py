"""The mixed-corpus data pipeline: sources → mixture → packed rows (DESIGN.md §2)."""

from chrono_membench.data.sources import SOURCES, DataSourceError, SourceRecords
from chrono_membench.data.stream import (
    PAD_SOURCE, Document, MixtureStream, Row, collate, is_validation,
)

__all__ = ["SOURCES", "DataSourceError", "SourceRecords", "PAD_SOURCE", "Document", "MixtureStream", "Row",
           "collate", "is_validation"]
