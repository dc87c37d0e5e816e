"""Global batches: what happens to a micro-batch of packed rows before it is split over ranks.

Every rank runs the same deterministic stream and takes the same global micro-batch (all ranks' rows), so the
bookkeeping below is identical on every rank and rank 0's checkpoint resumes them all (distributed.py):
- the seen log: per document uid, the step it was first seen, the step it was last seen, and its exposure
  count (how many times it was trained on: a document repeated by a new epoch counts again; one that spans
  two rows counts once);
- canaries are written into the first micro-batch of the steps their schedule names, planted documents
  (chrono.plant_file, data/plants.py) into the micro-batches their placement names;
- the probe set is offered every document in its first exposure, with the row it was trained in (after the
  insertions are written, so a probe window never holds one; probes.py). A document whose first row has no
  eligible window is offered again with the next row it continues into.
Then this rank's rows (r, r+N, …) are returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from chrono_membench.data.plants import Plants
from chrono_membench.data.stream import MixtureStream, collate
from chrono_membench.distributed import ALONE, Dist
from chrono_membench.probes import Canaries, ProbeSet


@dataclass
class SeenLog:
    """uid → [first step, last step, exposures]. Steps are 1-based: the update the document was trained in."""
    entries: dict[str, list[int]] = field(default_factory=dict)
    last_counted: int = -1  # the stream index of the last document occurrence counted (indices only grow)

    def record(self, uid: str, stream_index: int, step: int) -> bool:
        """Note that `uid` (this occurrence: stream_index) is in a batch of `step`; True on its first sight."""
        entry = self.entries.get(uid)
        first = entry is None
        if first:
            entry = self.entries[uid] = [step, step, 0]
        entry[1] = step
        if stream_index > self.last_counted:  # a new occurrence, not the rest of one already counted
            entry[2] += 1
            self.last_counted = stream_index
        return first

    def __len__(self) -> int:
        return len(self.entries)


class Batches:
    def __init__(self, stream: MixtureStream, micro_batch: int, probes: ProbeSet | None = None,
                 canaries: Canaries | None = None, d: Dist = ALONE, plants: Plants | None = None):
        self.stream, self.micro_batch, self.probes, self.canaries, self.d = stream, micro_batch, probes, canaries, d
        self.plants = plants
        self.seen = SeenLog()
        self.pending: dict[str, int] = {}  # uid → stream index: first exposure continues, no window offered yet

    def next(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        """This rank's rows of the global micro-batch `micro` of update `step` (1-based), on the CPU:
        tokens, source_index [rows, seq_len]."""
        rows = [self.stream.next_row() for _ in range(self.micro_batch * self.d.world)]
        batch = collate(rows)
        if self.canaries is not None and micro == 0:
            self.canaries.insert(batch["tokens"], batch["source_index"], step)
        if self.plants is not None:
            self.plants.insert(batch["tokens"], batch["source_index"], step, micro)
        for r, row in enumerate(rows):
            for doc in row.docs:
                first = self.seen.record(doc.uid, doc.index, step)
                if self.probes is not None and (first or self.pending.get(doc.uid) == doc.index):
                    self.pending.pop(doc.uid, None)
                    start, end = row.span(doc)
                    offered = self.probes.offer(doc.uid, doc.source, step, micro * len(rows) + r, batch["tokens"][r],
                                                batch["source_index"][r], start, end)
                    if not offered and end == len(row.tokens):  # it continues into the next row: try there
                        self.pending[doc.uid] = doc.index
        return {k: self.d.rows(batch[k]) for k in ("tokens", "source_index")}

    def state_dict(self) -> dict:
        return {"stream": self.stream.state_dict(), "seen_log": self.seen.entries, "last_counted": self.seen.last_counted,
                "pending": dict(self.pending), "probes": self.probes.state_dict() if self.probes is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["stream"])
        self.seen = SeenLog({uid: list(entry) for uid, entry in state["seen_log"].items()}, state["last_counted"])
        self.pending = dict(state["pending"])
        if self.probes is not None:
            self.probes.load_state_dict(state["probes"])
