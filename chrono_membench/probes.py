"""The probe set and the canaries: what the chrono evaluation looks at (DESIGN.md §4.4, §4.5).

Probe set: while training consumes the stream, a reservoir sample of `chrono.probe_per_bucket` documents
per time bucket (bucket b = documents first seen in steps [bT/B, (b+1)T/B)), plus as many validation
documents ("unseen"). Only documents of at least PROBE_TOKENS tokens qualify, so each probe can be used
for the 32-token prefix → 32-token continuation test. Saved with every checkpoint.

Canaries: random-token secrets after a fixed prefix, inserted into the training batch at known steps,
each a given number of times; one more secret is never inserted (the control). They are a pure function of
the config, so nothing about them needs saving.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from chrono_membench.config import Config
from chrono_membench.data.sources import SOURCE_NAMES

PROBE_TOKENS = 64  # 32-token prefix + 32-token continuation (DESIGN.md §4.5)
CANARY_PREFIX = "The secret code is"
CANARY_SOURCE = len(SOURCE_NAMES)  # source index written on canary tokens (trained on; no corpus source)
UNSEEN = "unseen"


@dataclass
class Probe:
    uid: str
    source: str
    first_step: int  # 0 for unseen documents
    tokens: list[int]  # the first PROBE_TOKENS tokens


class ProbeSet:
    def __init__(self, n_buckets: int, per_bucket: int, max_steps: int, seed: int):
        self.n_buckets, self.per_bucket, self.max_steps = n_buckets, per_bucket, max_steps
        self.buckets: list[list[Probe]] = [[] for _ in range(n_buckets)]
        self.offered = [0] * n_buckets  # qualifying documents first seen in each bucket so far
        self.unseen: list[Probe] = []
        self.rng = np.random.default_rng(seed)

    def bucket_of(self, step: int) -> int:
        """Bucket of a document first seen at (1-based) training step `step`."""
        return min(self.n_buckets - 1, (step - 1) * self.n_buckets // self.max_steps)

    def offer(self, uid: str, source: str, tokens: list[int], step: int) -> None:
        """A training document seen for the first time at `step` (reservoir sampling, Algorithm R)."""
        if len(tokens) < PROBE_TOKENS:
            return
        b = self.bucket_of(step)
        self.offered[b] += 1
        probe = Probe(uid, source, step, list(tokens[:PROBE_TOKENS]))
        if len(self.buckets[b]) < self.per_bucket:
            self.buckets[b].append(probe)
        else:
            j = int(self.rng.integers(0, self.offered[b]))
            if j < self.per_bucket:
                self.buckets[b][j] = probe

    def fill_unseen(self, documents) -> None:
        """Validation documents (never trained on): the first per_bucket that are long enough."""
        for doc in documents:
            if len(self.unseen) == self.per_bucket:
                return
            if len(doc.tokens) >= PROBE_TOKENS:
                self.unseen.append(Probe(doc.uid, doc.source, 0, list(doc.tokens[:PROBE_TOKENS])))

    def columns(self) -> list[tuple[str, list[Probe]]]:
        """(name, probes) for every bucket with probes so far, then "unseen"."""
        cols = [(f"b{b}", probes) for b, probes in enumerate(self.buckets) if probes]
        return cols + ([(UNSEEN, self.unseen)] if self.unseen else [])

    def state_dict(self) -> dict:
        return {"buckets": [[asdict(p) for p in b] for b in self.buckets], "offered": list(self.offered),
                "unseen": [asdict(p) for p in self.unseen], "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.buckets = [[Probe(**p) for p in b] for b in state["buckets"]]
        self.offered = list(state["offered"])
        self.unseen = [Probe(**p) for p in state["unseen"]]
        self.rng.bit_generator.state = state["rng"]


class Canaries:
    """Secrets of `chrono.canary_length` random tokens, one per entry of `chrono.canary_repetitions` (the
    number of insertions, spread evenly over the first `chrono.canary_until` of training), plus a control."""

    def __init__(self, cfg: Config, tokenizer, seed: int):
        c = cfg.chrono
        self.repetitions = list(c.canary_repetitions)
        rng = np.random.default_rng(seed + 1_000_003)
        low, high = 1000, min(len(tokenizer), 32000)  # ordinary tokens, away from the special ones
        self.prefix = tokenizer(CANARY_PREFIX, add_special_tokens=False)["input_ids"]
        self.eos = tokenizer.eos_token_id
        n = len(self.repetitions) + 1
        self.secrets = torch.as_tensor(rng.integers(low, high, size=(n, c.canary_length)))  # last: control
        self.reference = torch.as_tensor(rng.integers(low, high, size=(c.canary_candidates, c.canary_length)))
        last = max(1, int(c.canary_until * cfg.train.max_steps))
        self.schedule: dict[int, list[int]] = {}  # step → indices of secrets inserted at that step
        for i, r in enumerate(self.repetitions):
            for step in np.linspace(1, last, r).round().astype(int) if r > 0 else []:
                self.schedule.setdefault(int(step), []).append(i)

    def __bool__(self) -> bool:
        return bool(self.repetitions)

    def sequence(self, i: int) -> list[int]:
        return self.prefix + self.secrets[i].tolist() + [self.eos]

    def insert(self, tokens: torch.Tensor, source_index: torch.Tensor, step: int) -> None:
        """Overwrite the start of the batch's rows with the canaries scheduled at `step` (in place)."""
        offset = 0
        for k, i in enumerate(self.schedule.get(step, [])):
            seq = torch.tensor(self.sequence(i))
            row = k % len(tokens)
            offset = (k // len(tokens)) * len(seq)
            if offset + len(seq) > tokens.shape[1]:
                raise ValueError(f"chrono.canary_length too long for data.seq_len={tokens.shape[1]}")
            tokens[row, offset:offset + len(seq)] = seq
            source_index[row, offset:offset + len(seq)] = CANARY_SOURCE

    def labels(self) -> list[str]:
        return [str(r) for r in self.repetitions] + ["control"]
