"""The mixed-corpus data pipeline: sources → mixture → packed rows (docs/design.md §2); what a global batch carries
besides its rows (seen log, probe offers, canaries) is ../batches.py, which reads the probe set.

    sources.py   the four sources (the one source list), how records are read and become documents
    stream.py    mixture sampling, the hash split, packing into rows, the resumable stream state
    prefetch.py  rows packed ahead of the step in a worker process, resuming exactly
    plants.py    planted documents: token sequences written into training rows at given steps (validation)

Imports are lazy so that `config` can read the source list without loading torch.
"""

import importlib

_EXPORTS = {
    "SOURCES": "sources", "SOURCE_NAMES": "sources", "DataSourceError": "sources", "SourceRecords": "sources",
    "PAD_SOURCE": "sources", "Document": "stream", "MixtureStream": "stream", "Row": "stream", "collate": "stream",
    "is_validation": "stream", "PrefetchedStream": "prefetch", "prefetched": "prefetch",
    "Plants": "plants", "read_plants": "plants",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"chrono_membench.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'chrono_membench.data' has no attribute {name!r}")
