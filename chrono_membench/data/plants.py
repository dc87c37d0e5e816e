"""Planted documents: token sequences written into training rows at the steps a file names — how
experiments/validate.py plants signals whose truth is known (documents repeated 1×/4×/16×, inserted only early
or only late, a distinctive kind confined to one time bucket).

`chrono.plant_file` is JSON lines, one planted document each:

    {"uid": "plant/x16/0", "tokens": [int, ...], "steps": [4, 5, 7, ...]}

`steps` are 1-based optimiser updates (a step may repeat: the document is then written twice in it). A step's
documents fill the rows of its micro-batches — largest first, each into the emptiest row (micro-batch 0's rows
start after that step's canaries), each document whole within one row — overwriting what the stream put there. Their
tokens carry INSERTED_SOURCE, as canaries do, so a probe window never holds one; the LM and the SAEs train on
them like any other token. The seen log still counts the stream documents they overwrite (as for canaries).
The placement is a pure function of the file and the config, so nothing about it needs saving.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from chrono_membench.errors import ConfigError
from chrono_membench.data.sources import INSERTED_SOURCE


@dataclass
class Plant:
    uid: str
    tokens: list[int]
    steps: list[int]


def read_plants(path: str | Path) -> list[Plant]:
    """Parse and check a plant file; a bad line raises ConfigError naming it and the field."""
    plants = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"chrono.plant_file {path}, line {n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not JSON ({e})") from None
        if not isinstance(record, dict) or set(record) != {"uid", "tokens", "steps"}:
            raise ConfigError(f"{where}: want exactly the fields uid, tokens, steps")
        for name in ("tokens", "steps"):
            values = record[name]
            if not isinstance(values, list) or not values or not all(isinstance(v, int) and v >= 0 for v in values):
                raise ConfigError(f"{where}: {name} must be a non-empty list of non-negative integers")
        if min(record["steps"]) < 1:
            raise ConfigError(f"{where}: steps are 1-based optimiser updates (>= 1)")
        plants.append(Plant(str(record["uid"]), record["tokens"], record["steps"]))
    return plants


class Plants:
    """Where each planted document goes: placements[step][micro] = [(row, offset, plant index), ...].
    rows: rows per global micro-batch; reserved(step) → tokens already taken at the start of each row of
    micro-batch 0 (the canaries)."""

    def __init__(self, plants: list[Plant], max_steps: int, rows: int, grad_accum: int, seq_len: int, reserved):
        self.plants = plants
        self.placements: dict[int, dict[int, list[tuple[int, int, int]]]] = {}
        by_step: dict[int, list[int]] = {}
        for i, p in enumerate(plants):
            if len(p.tokens) > seq_len:
                raise ConfigError(f"chrono.plant_file: {p.uid} has {len(p.tokens)} tokens, more than a row "
                                  f"(data.seq_len={seq_len})")
            if max(p.steps) > max_steps:
                raise ConfigError(f"chrono.plant_file: {p.uid} is planted at step {max(p.steps)}, after the last "
                                  f"(train.max_steps={max_steps})")
            for step in p.steps:
                by_step.setdefault(step, []).append(i)
        slots = [(m, r) for m in range(grad_accum) for r in range(rows)]
        for step, indices in sorted(by_step.items()):
            taken = reserved(step)
            used = [taken[r] if m == 0 else 0 for m, r in slots]
            placed = self.placements.setdefault(step, {})
            for i in sorted(indices, key=lambda i: -len(plants[i].tokens)):  # largest first, each to the emptiest row
                j = min(range(len(slots)), key=lambda j: used[j])
                size = len(plants[i].tokens)
                if used[j] + size > seq_len:
                    raise ConfigError(
                        f"chrono.plant_file: the documents planted at step {step} do not fit in its "
                        f"{grad_accum} x {rows} rows of data.seq_len={seq_len}; spread them over more steps")
                placed.setdefault(slots[j][0], []).append((slots[j][1], used[j], i))
                used[j] += size

    @classmethod
    def for_run(cls, cfg, canaries, world: int) -> Plants | None:
        """The run's plants (None without chrono.plant_file), placed around its canaries."""
        if not cfg.chrono.plant_file:
            return None
        rows = cfg.train.micro_batch * world
        return cls(read_plants(cfg.chrono.plant_file), cfg.train.max_steps, rows, cfg.train.grad_accum,
                   cfg.data.seq_len, lambda step: canaries.reserved(step, rows) if canaries else [0] * rows)

    def insert(self, tokens: torch.Tensor, source_index: torch.Tensor, step: int, micro: int) -> None:
        """Overwrite this global micro-batch's rows (in place) with the documents placed in it."""
        for row, offset, i in self.placements.get(step, {}).get(micro, []):
            seq = torch.tensor(self.plants[i].tokens)
            tokens[row, offset:offset + len(seq)] = seq
            source_index[row, offset:offset + len(seq)] = INSERTED_SOURCE
