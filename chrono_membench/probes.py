"""The probe set and the canaries: what the chrono evaluation looks at (docs/design.md §4.4, §4.5).

Probe set: while training consumes the stream, a reservoir sample of `chrono.probe_per_bucket` documents
per time bucket (bucket b = windows trained in steps [bT/B, (b+1)T/B)), plus as many validation documents
("unseen"). Stratified by source: each source has the same quota in every column (the mixture's weights times
`probe_per_bucket`, largest remainders), with a reservoir of its own, so every bucket and the unseen column hold
the same source mix — a source mix that drifts through training cannot then pass for an effect of time (a column
short of a source's documents says so in mem/probe_share). A probe is one 64-token window exactly as it was
trained (Pythia's memorisation eval): the 32 scored tokens belong to the document, the 32 before them are
whatever preceded them in that training row (the document may start mid-prefix), and the whole window lay within
one row, clear of canaries. Where in the document the window sits is drawn at random among the eligible positions
of the first row that has one. Unseen probes are taken the same way from packed validation rows. Saved with every
checkpoint.

Canaries: random-token secrets after a fixed prefix, inserted into training rows at known steps; each
repetition count has `chrono.canary_per_count` secrets, every count's insertions end at the same step (so
repetition is not confounded with recency) and start after warmup; `chrono.canary_controls` more secrets are
never inserted. They are a pure function of the config, so nothing about them needs saving.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from chrono_membench.config import Config
from chrono_membench.data.sources import INSERTED_SOURCE

PREFIX_TOKENS, SCORED_TOKENS = 32, 32
PROBE_TOKENS = PREFIX_TOKENS + SCORED_TOKENS  # docs/design.md §4.5
CANARY_PREFIX = "The secret code is"
UNSEEN = "unseen"
ANY = "*"  # the one stratum of a probe set drawn without a mixture


def bucket_of(step: int, n_buckets: int, max_steps: int) -> int:
    """Bucket of a window trained at (1-based) training step `step`: b = ⌊(step − 1)·B / T⌋."""
    return min(n_buckets - 1, (step - 1) * n_buckets // max_steps)


def quotas(per_bucket: int, mixture: dict[str, float] | None) -> dict[str, int]:
    """Windows per source in each column: per_bucket split by the mixture's weights, largest remainders first (ties
    by source order); without a mixture, one stratum of per_bucket."""
    weights = {s: w for s, w in (mixture or {}).items() if w > 0}
    if not weights:
        return {ANY: per_bucket}
    share = {s: per_bucket * w / sum(weights.values()) for s, w in weights.items()}
    out = {s: int(v) for s, v in share.items()}
    for s in sorted(share, key=lambda s: -(share[s] - out[s]))[:per_bucket - sum(out.values())]:
        out[s] += 1
    return out


@dataclass
class Probe:
    uid: str
    source: str
    step: int  # the update the window was trained in; 0 for unseen documents
    row: int  # its row: micro * (rows per global micro-batch) + row for training, the validation row for unseen
    offset: int  # where the window starts in that row
    tokens: list[int]  # PROBE_TOKENS: the training context, then the scored tokens
    zlib_bytes: int  # zlib-compressed length of the scored tokens' text (MIMIR's zlib score)
    ref_loss: float | None = None  # mean loss on the scored tokens under the step-0 model (filled at eval)


def window_start(start: int, end: int, sources: torch.Tensor, rng: np.random.Generator) -> int | None:
    """A random row position s where the window [s − 32, s + 32) lies within the row, its scored half
    [s, s + 32) within the document's span [start, end), and no token is a canary; None if there is none."""
    lo, hi = max(start, PREFIX_TOKENS), end - SCORED_TOKENS
    if hi < lo:
        return None
    canary = torch.cat([torch.zeros(1, dtype=torch.long), (sources == INSERTED_SOURCE).long().cumsum(0)])
    starts = torch.arange(lo, hi + 1)
    clean = (canary[starts + SCORED_TOKENS] - canary[starts - PREFIX_TOKENS]) == 0
    eligible = starts[clean]
    return int(eligible[rng.integers(len(eligible))]) if len(eligible) else None


class ProbeSet:
    def __init__(self, n_buckets: int, per_bucket: int, max_steps: int, seed: int, decode: Callable[[list[int]], str],
                 mixture: dict[str, float] | None = None):
        self.n_buckets, self.per_bucket, self.max_steps, self.decode = n_buckets, per_bucket, max_steps, decode
        self.quota = quotas(per_bucket, mixture)  # per source (stratum), in every column
        self.strata: list[dict[str, list[Probe]]] = [{k: [] for k in self.quota} for _ in range(n_buckets)]
        # eligible documents first trained in each bucket so far, per stratum
        self.offered: list[dict[str, int]] = [{k: 0 for k in self.quota} for _ in range(n_buckets)]
        self.unseen: list[Probe] = []
        self.rng = np.random.default_rng(seed)

    @property
    def buckets(self) -> list[list[Probe]]:
        """Each bucket's windows, stratum by stratum."""
        return [[p for k in self.quota for p in strata[k]] for strata in self.strata]

    def _stratum(self, source: str) -> str | None:
        return source if source in self.quota else ANY if ANY in self.quota else None

    @classmethod
    def for_run(cls, cfg, tokenizer, fill_unseen: bool = True) -> ProbeSet:
        """A run's probe set as its trainer builds it: chrono.n_buckets buckets over train.max_steps, drawn with
        run.seed; with fill_unseen, its "unseen" windows from packed validation documents never trained on (the
        validation split on seed data.seed + 1, so not the validation loss's rows), each source's documents in a
        seeded random order as training reads them: in file order they would be the file's first documents (one
        novel, one stretch of articles), a topic a text-only classifier tells from the seen windows' random draw."""
        from chrono_membench.data.stream import MixtureStream  # lazily: a probe set needs no stream until filled

        probes = cls(cfg.chrono.n_buckets, cfg.chrono.probe_per_bucket, cfg.train.max_steps, cfg.run.seed,
                     tokenizer.decode, cfg.data.mixture)
        if fill_unseen:  # repeating, so a small source's few validation documents running out does not leave the
            # later rows (and the unseen windows' 32-token contexts) without it, as training rows never are
            stream = MixtureStream(cfg.data, tokenizer, "val", seed=cfg.data.seed + 1, shuffle=True)
            probes.fill_unseen(stream, lambda: {n for n, docs in stream.sources.items() if docs.epoch > 0})
        return probes

    def bucket_of(self, step: int) -> int:
        """Bucket of a window trained at (1-based) training step `step`."""
        return bucket_of(step, self.n_buckets, self.max_steps)

    def _probe(self, uid, source, step, row, tokens, sources, start, end) -> Probe | None:
        s = window_start(start, end, sources, self.rng)
        if s is None:
            return None
        window = tokens[s - PREFIX_TOKENS:s + SCORED_TOKENS].tolist()
        text = self.decode(window[PREFIX_TOKENS:])
        return Probe(uid, source, step, row, s - PREFIX_TOKENS, window, len(zlib.compress(text.encode())))

    def offer(self, uid: str, source: str, step: int, row: int, tokens: torch.Tensor, sources: torch.Tensor,
              start: int, end: int) -> bool:
        """A training document in its first exposure, occupying [start, end) of a row (tokens, sources [T])
        trained at `step`. False if this row holds no eligible window for it (the caller may offer the next
        row the document continues into); else it is offered to its bucket's reservoir for its source (Algorithm
        R; a source without a quota is not sampled)."""
        probe = self._probe(uid, source, step, row, tokens, sources, start, end)
        if probe is None:
            return False
        b, k = self.bucket_of(step), self._stratum(source)
        if k is None:
            return True
        self.offered[b][k] += 1
        reservoir = self.strata[b][k]
        if len(reservoir) < self.quota[k]:
            reservoir.append(probe)
        else:
            j = int(self.rng.integers(0, self.offered[b][k]))
            if j < self.quota[k]:
                reservoir[j] = probe
        return True

    def fill_unseen(self, rows, exhausted: Callable[[], set[str]] = set) -> None:
        """Validation rows (never trained on), packed like training rows: one window from each of the first
        documents that have an eligible one, up to each source's quota; stops once every quota is full or the
        sources short of theirs are `exhausted()` (each of their documents offered once: a repeating stream)."""
        taken, count = set(), {k: 0 for k in self.quota}
        for r, row in enumerate(rows):
            done = exhausted()
            if all(count[k] == self.quota[k] or k in done for k in self.quota):
                return
            for doc in row.docs:
                if count == self.quota:
                    return
                k = self._stratum(doc.source)
                if doc.uid in taken or k is None or count[k] == self.quota[k]:
                    continue
                probe = self._probe(doc.uid, doc.source, 0, r, row.tokens, row.source_index, *row.span(doc))
                if probe is not None:
                    self.unseen.append(probe)
                    taken.add(doc.uid)
                    count[k] += 1

    def columns(self) -> list[tuple[str, list[Probe]]]:
        """(name, probes) for every column fixed in advance: the B buckets, then "unseen" (some may be empty)."""
        return [(f"b{b}", probes) for b, probes in enumerate(self.buckets)] + [(UNSEEN, self.unseen)]

    def state_dict(self) -> dict:
        return {"buckets": [[asdict(p) for p in b] for b in self.buckets], "offered": list(self.offered),
                "unseen": [asdict(p) for p in self.unseen], "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.strata = [{k: [] for k in self.quota} for _ in range(self.n_buckets)]
        for b, probes in enumerate(state["buckets"]):
            for p in (Probe(**p) for p in probes):
                self.strata[b][self._stratum(p.source)].append(p)
        # a checkpoint from before stratification counted offers per bucket only: each stratum's kept windows then
        # stand in for its offers (its reservoir goes on as if it had seen no more)
        self.offered = [dict(o) if isinstance(o, dict) else {k: len(self.strata[b][k]) for k in self.quota}
                        for b, o in enumerate(state["offered"])]
        self.unseen = [Probe(**p) for p in state["unseen"]]
        self.rng.bit_generator.state = state["rng"]


class Canaries:
    """For each entry r of `chrono.canary_repetitions`, `chrono.canary_per_count` secrets of
    `chrono.canary_length` random tokens, each inserted r times at steps spread evenly from the first step
    after warmup to `chrono.canary_until`·T (r = 1: at that last step only); plus `chrono.canary_controls`
    secrets never inserted. Secret i belongs to cell cells[i] (its repetition count, or "control").
    All secrets (hence all sequences) have the same length."""

    def __init__(self, cfg: Config, tokenizer, seed: int):
        c = cfg.chrono
        self.repetitions = list(c.canary_repetitions)
        rng = np.random.default_rng(seed + 1_000_003)
        low, high = 1000, min(len(tokenizer), 32000)  # ordinary tokens, away from the special ones
        self.alphabet, self.length = (low, high), c.canary_length  # what a secret is drawn from (sampled exposure)
        self.prefix = tokenizer(CANARY_PREFIX, add_special_tokens=False)["input_ids"]
        self.eos = tokenizer.eos_token_id
        self.cells = [str(r) for r in self.repetitions for _ in range(c.canary_per_count)]
        self.cells += ["control"] * c.canary_controls
        self.secrets = torch.as_tensor(rng.integers(low, high, size=(len(self.cells), c.canary_length)))
        self.reference = torch.as_tensor(rng.integers(low, high, size=(c.canary_candidates, c.canary_length)))
        self.bootstrap = c.canary_bootstrap  # resamples of the candidates for the extrapolated interval
        self.interim = min(c.canary_interim_candidates or c.canary_candidates, c.canary_candidates)
        first, last = cfg.canary_steps()
        self.schedule: dict[int, list[int]] = {}  # step → indices of secrets inserted at that step
        for i, r in enumerate(int(cell) for cell in self.cells if cell != "control"):
            for step in np.linspace(first if r > 1 else last, last, r).round().astype(int):
                self.schedule.setdefault(int(step), []).append(i)

    def __bool__(self) -> bool:
        return bool(self.repetitions)

    def sequence(self, i: int) -> list[int]:
        return self.prefix + self.secrets[i].tolist() + [self.eos]

    def reserved(self, step: int, rows: int) -> list[int]:
        """Tokens the canaries of `step` take at the start of each of the `rows` rows (see insert)."""
        n = len(self.schedule.get(step, []))
        return [len(self.sequence(0)) * len(range(r, n, rows)) for r in range(rows)]

    def insert(self, tokens: torch.Tensor, source_index: torch.Tensor, step: int) -> None:
        """Overwrite the start of the batch's rows with the canaries scheduled at `step` (in place)."""
        for k, i in enumerate(self.schedule.get(step, [])):
            seq = torch.tensor(self.sequence(i))
            row = k % len(tokens)
            offset = (k // len(tokens)) * len(seq)
            if offset + len(seq) > tokens.shape[1]:
                raise ValueError(f"{len(self.schedule[step])} canaries of {len(seq)} tokens do not fit in "
                                 f"{len(tokens)} rows of data.seq_len={tokens.shape[1]}")
            tokens[row, offset:offset + len(seq)] = seq
            source_index[row, offset:offset + len(seq)] = INSERTED_SOURCE

    def labels(self) -> list[str]:
        return [str(r) for r in self.repetitions] + ["control"]

