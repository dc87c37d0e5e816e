"""Data parallelism under torchrun, on PyTorch's own engine (docs/design.md §7): DDP, or FSDP2 (`fully_shard` per
transformer block), nccl on CUDA and gloo on CPU.

How the work is split, so that N ranks with micro-batch b train on exactly the rows one process with
micro-batch N·b would (the test checks the losses match):
- data: every rank runs the same deterministic packed stream and keeps rows r, r+N, r+2N, … of each global
  micro-batch. The stream state, the seen log and the probe set are therefore the same on every rank (no
  gathering at checkpoints), and canaries go into the global batch before it is split;
- gradients: DDP / FSDP2 average them (no_sync / set_requires_gradient_sync off on the accumulation
  micro-steps); the SAEs' gradients and their running statistics are all-reduced here, so every rank
  holds the same SAEs;
- evaluation: validation rows and probe documents are split over ranks (padded to equal forwards: with FSDP
  every rank must take part in each one) and their sums reduced; the small fixed batches (attention
  metrics, canaries, CE recovered) run on every rank alike. Rank 0 alone writes metrics, checkpoints,
  artifacts and wandb.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    parallel: str = "none"  # none (one process) | ddp | fsdp
    comm_device: torch.device = torch.device("cpu")  # where collectives' tensors live: the GPU for nccl

    @property
    def main(self) -> bool:
        return self.rank == 0

    # ---- collectives (no-ops in one process)
    def mean(self, value: float | torch.Tensor) -> float:
        """Mean of a scalar over ranks."""
        if self.world == 1:
            return float(value)
        return self.mean_dict({"value": float(value)})["value"]

    def mean_dict(self, values: dict[str, float]) -> dict[str, float]:
        if self.world == 1 or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t)
        return {k: v / self.world for k, v in zip(keys, t.tolist())}

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks."""
        if self.world > 1:
            on_device = tensor.to(self.comm_device)
            dist.all_reduce(on_device)
            tensor.copy_(on_device)
        return tensor

    def cat(self, values: torch.Tensor) -> torch.Tensor:
        """A 1-D tensor of each rank's values, concatenated in rank order (lengths may differ between ranks)."""
        if self.world == 1:
            return values
        n = torch.tensor([len(values)], device=self.comm_device)
        sizes = [torch.zeros_like(n) for _ in range(self.world)]
        dist.all_gather(sizes, n)
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros(longest, dtype=values.dtype, device=self.comm_device)
        padded[:len(values)] = values
        parts = [torch.zeros_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:int(s.item())] for p, s in zip(parts, sizes)]).to(values.device)

    def average_grads(self, params) -> None:
        """Average .grad over ranks, in one flat buffer (gloo has no AVG op, so SUM then divide)."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:  # every SAE skipped or retired: nothing to average (the same on every rank)
            return
        flat = torch.cat([g.flatten() for g in grads]).to(self.comm_device)
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any (e.g. a SIGTERM that reached one rank first)."""
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, obj):
        """Rank 0's value of a picklable object, on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch: r, r+N, r+2N, …"""
        return tensor[self.rank::self.world]

    def padded_share(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's items r, r+N, … of n, padded (with item 0, weight 0) to the same count on every rank:
        under FSDP every rank must run the same forwards. → (indices, weights)."""
        index = torch.arange(n)[self.rank::self.world]
        pad = math.ceil(n / self.world) - len(index)
        return (torch.cat([index, torch.zeros(pad, dtype=torch.long)]),
                torch.cat([torch.ones(len(index)), torch.zeros(pad)]))


ALONE = Dist()  # one process, no collectives


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def from_environment(parallel: str, device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return ALONE, resolve_device(device_name)
    cuda = device_name != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), parallel, device), device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(bridge, d: Dist, device: torch.device):
    """→ the module the training forward goes through. DDP wraps the bridge (its forward is the bridge's);
    FSDP2 shards the HF model in place, one unit per transformer block plus the root (embeddings, final
    norm, unembedding), and the bridge is used as it is: its forward calls the sharded HF modules."""
    if d.parallel == "none":
        return bridge
    if d.parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(bridge, device_ids=[device] if device.type == "cuda" else None)
    import warnings

    from torch.distributed.fsdp import fully_shard

    # HF returns its logits as a view; FSDP2 warns that an in-place op on it would skip the pre-backward
    # all-gather. Nothing here (bridge, lm_loss) modifies logits in place.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    for block in bridge.blocks:  # the HF decoder layers, wrapped by the bridge's BlockBridge
        fully_shard(block)
    fully_shard(bridge.original_model)
    return bridge


def no_sync(trained, d: Dist, sync: bool):
    """Skip the gradient all-reduce on accumulation micro-steps that are not the last."""
    if sync or d.parallel == "none":
        return nullcontext()
    if d.parallel == "ddp":
        return trained.no_sync()
    return _fsdp_no_sync(trained.original_model)


@contextmanager
def _fsdp_no_sync(root):
    root.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        root.set_requires_gradient_sync(True)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A sharded (DTensor) parameter or gradient norm as an ordinary tensor (a collective under FSDP)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def optimizer_state(bridge, optimizers, d: Dist) -> list[dict]:
    """What to checkpoint for the optimisers: their own state dicts, or under FSDP the full (gathered,
    on CPU) ones from torch.distributed.checkpoint, which every rank must call."""
    if d.parallel != "fsdp":
        return [opt.state_dict() for opt in optimizers]
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    # An optimiser that has not stepped yet (a checkpoint at step 0: the SAE warm-up's, or a stop before the first
    # update) has nothing to save, and get_optimizer_state_dict would create its state with a zero-gradient step
    # (Adam's step count 1 from then on: every later update's bias correction shifted). Every rank has stepped
    # the same number of times, so every rank takes the same branch of this collective.
    return [get_optimizer_state_dict(bridge.original_model, opt, options=options) if opt.state else {}
            for opt in optimizers]


def load_optimizer_state(bridge, optimizers, states: list[dict], d: Dist) -> None:
    if d.parallel != "fsdp":
        for opt, state in zip(optimizers, states):
            opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    for opt, state in zip(optimizers, states):
        if state:  # {}: saved before the first update (optimizer_state)
            set_optimizer_state_dict(bridge.original_model, opt, state, options=options)
