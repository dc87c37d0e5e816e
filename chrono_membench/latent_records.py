"""What each latent is, at every checkpoint: per-latent records from the probe windows (the dashboard's data).

With the SAE of the checkpoint on the model of the checkpoint, over the scored tokens of every probe window (in
their training context, the SAE mask applied, as purity sees them); activations in the units of the exported
sae-lens SAE (artifacts/step_N/sae_<hook>/, which takes raw activations; SAEBank.export_units):

    top_act, top_window, top_pos   [F, k]  the k largest activations, the window (index into windows.json) and the
                                           position in it (PREFIX_TOKENS..PROBE_TOKENS−1) of each
    top_ctx                        [F, k, S] the latent's activation on each of those windows' S scored tokens
    hist                           [F, B]  histogram of log10 activation where it fires (HIST_EDGES)
    density                        [F]     fraction of scored tokens where it fires
    bucket_profile, source_profile [F, C]  mean activation per token per probe column / source (purity's M)
    logit_up, logit_up_val (and _down) [F, n]  the tokens its decoder direction most promotes / suppresses
                                           through the unembedding: (W_dec[i] ∘ w_norm) · W_U, the final norm's
                                           weight folded in and its scale ignored, as TransformerLens's fold_ln
                                           and sae-lens's dashboards do (only for hooks of width d_model)

Saved fp16/int as artifacts/step_N/latents_<hook>.safetensors, with windows.json (uid, column, source, step,
tokens) so the dashboard rebuilds the text. The cost is one forward over the probe windows per checkpoint (the top
windows' per-token activations are kept as the running top-k moves; time/latent_records_s).
"""

from __future__ import annotations

import torch

from chrono_membench.chrono.memorisation import NO_AUTOCAST
from chrono_membench.chrono.purity import mean_activation_matrix
from chrono_membench.data.sources import SOURCE_NAMES
from chrono_membench.probe_eval import scored_activations
from chrono_membench.probes import PREFIX_TOKENS, PROBE_TOKENS, ProbeSet

TOP_K, N_LOGITS = 10, 10
HIST_EDGES = torch.linspace(-3, 2, 26)  # log10 activation, 0.2 a bin; values outside go to the end bins


def windows_of(probes: ProbeSet) -> list[dict]:
    return [{"uid": p.uid, "column": name, "source": p.source, "step": p.step, "tokens": p.tokens}
            for name, ps in probes.columns() for p in ps]


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of an FSDP2 shard (a DTensor), or the tensor itself."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


@torch.no_grad()
def logit_effects(model, W_dec: torch.Tensor, n: int = N_LOGITS, chunk: int = 1024,
                  autocast=NO_AUTOCAST) -> dict[str, torch.Tensor]:
    """Top-n promoted and suppressed tokens of each decoder row [F, d_model] (empty dict for other widths), the
    product in the run's precision (its own logits are bf16 products under bf16 autocast; 3.5 → 1 s on this CPU at
    the demo's 4,608 × 49,152)."""
    W_U = full(model.W_U.detach()).float()
    if W_dec.shape[1] != W_U.shape[0]:
        return {}
    norm = getattr(getattr(model.original_model, "model", None), "norm", None)  # Llama/Gemma/SmolLM2's final norm
    w_norm = torch.ones(W_U.shape[0], device=W_U.device)
    if norm is not None and getattr(norm, "weight", None) is not None:
        weight = full(norm.weight.detach()).float()
        w_norm = 1 + weight if "Gemma" in type(norm).__name__ else weight  # Gemma's RMSNorm scales by (1 + w)
    out = {k: [] for k in ("logit_up", "logit_up_val", "logit_down", "logit_down_val")}
    for rows in W_dec.float().split(chunk):
        with autocast:
            logits = ((rows * w_norm) @ W_U).float()
        up, down = logits.topk(n, dim=-1), logits.topk(n, dim=-1, largest=False)
        out["logit_up"].append(up.indices.int())
        out["logit_up_val"].append(up.values)
        out["logit_down"].append(down.indices.int())
        out["logit_down_val"].append(down.values)
    return {k: torch.cat(v) for k, v in out.items()}


def merge_top(r: dict, acts: torch.Tensor, start: int, k: int) -> None:
    """Fold one chunk of windows' activations [c, S, F] into the running top-k per latent (r's top_act, top_index =
    window · S + position, and top_ctx [k, F, S]: the latent's activations on that window's S tokens), so the
    top windows' contexts need no second forward."""
    (c, S, F), kept = acts.shape, len(r["top_act"])
    candidates = torch.cat([r["top_act"], acts.reshape(c * S, F)])
    top = candidates.topk(min(k, len(candidates)), dim=0)
    new = top.indices - kept  # ≥ 0: a token of this chunk, at window (new // S) and position (new % S)
    ctx = acts.transpose(1, 2)[new.clamp_min(0) // S, torch.arange(F, device=acts.device)]  # [k, F, S]
    if kept:
        old = r["top_ctx"].gather(0, top.indices.clamp_max(kept - 1)[..., None].expand(-1, -1, S))
        ctx = torch.where((new < 0)[..., None], old, ctx)
        index = torch.where(new < 0, r["top_index"].gather(0, top.indices.clamp_max(kept - 1)), new + start * S)
    else:
        index = new + start * S
    r["top_act"], r["top_index"], r["top_ctx"] = top.values, index, ctx


class LatentRecords:
    """The records of one checkpoint, folded in chunk by chunk from scored_activations' output (its leading bank's
    hooks; the scored tokens only), then finished by result(). latent_records() runs its own forward; an eval at
    the checkpoint's step can fold in its forward over the same windows instead (probe_eval.probe_metrics)."""

    def __init__(self, saes, probes: ProbeSet, device, k: int = TOP_K):
        self.saes, self.k, self.start, self.device = saes, k, 0, device
        self.windows = windows_of(probes)
        self.units = {hook: saes.export_units(hook) for hook in saes.hook_points}  # the exported SAE's values
        S = PROBE_TOKENS - PREFIX_TOKENS
        self.records = {hook: {"top_act": torch.zeros(0, F, device=device),
                               "top_index": torch.zeros(0, F, dtype=torch.long, device=device),
                               "top_ctx": torch.zeros(0, F, S, device=device),
                               "hist": torch.zeros(F * (len(HIST_EDGES) + 1), device=device),
                               "fires": torch.zeros(F, device=device), "sums": [], "counts": []}
                        for hook in saes.hook_points for F in [saes.saes[hook].cfg.d_sae]}

    @torch.no_grad()
    def add(self, chunk: dict, offset: int = 0) -> None:
        """One chunk of windows: {hook: (activations [c, T, F], mask [c, T])}, the scored tokens from `offset` on."""
        for hook, r in self.records.items():
            acts, keep = chunk[hook]
            acts, keep = acts[:, offset:] / self.units[hook], keep[:, offset:]
            (c, S, F) = acts.shape
            merge_top(r, acts, self.start, self.k)
            flat = acts.reshape(c * S, F)
            firing = flat > 0
            r["fires"] += firing.sum(0)
            bins = torch.bucketize(flat[firing].log10(), HIST_EDGES.to(flat.device))
            latent = firing.nonzero()[:, 1]
            r["hist"].index_add_(0, latent * (len(HIST_EDGES) + 1) + bins, torch.ones_like(bins, dtype=torch.float))
            r["sums"].append(acts.sum(1))
            r["counts"].append(keep.sum(1).float())
        self.start += len(next(iter(chunk.values()))[0])

    @torch.no_grad()
    def result(self, model, autocast=NO_AUTOCAST) -> tuple[dict, list[dict]]:
        """({hook: records}, windows), once every window was added."""
        windows, S = self.windows, PROBE_TOKENS - PREFIX_TOKENS
        if not windows:
            return {}, windows
        assert self.start == len(windows), (self.start, len(windows))
        columns = sorted({w["column"] for w in windows}, key=[w["column"] for w in windows].index)
        col = torch.tensor([columns.index(w["column"]) for w in windows], device=self.device)
        src = torch.tensor([SOURCE_NAMES.index(w["source"]) for w in windows], device=self.device)
        out = {}
        for hook, r in self.records.items():
            if hook not in self.saes.hook_points:  # retired since (its weights turned non-finite at the checkpoint)
                continue
            sums, counts = torch.cat(r["sums"]), torch.cat(r["counts"])
            F = sums.shape[1]
            out[hook] = {
                "top_act": r["top_act"].T.half(), "top_window": (r["top_index"] // S).T.int(),
                "top_pos": (r["top_index"] % S + PREFIX_TOKENS).T.short(),
                "top_ctx": r["top_ctx"].transpose(0, 1).half(),
                "hist": r["hist"].view(F, -1).int(), "density": r["fires"] / counts.sum().clamp_min(1),
                "bucket_profile": mean_activation_matrix(sums, counts, torch.nn.functional.one_hot(
                    col, len(columns)).float()).half(),
                "source_profile": mean_activation_matrix(sums, counts, torch.nn.functional.one_hot(
                    src, len(SOURCE_NAMES)).float()).half(),
                **{key: (v.half() if v.is_floating_point() else v) for key, v in logit_effects(
                    model, self.saes.saes[hook].W_dec.detach() / self.saes.scale(hook), autocast=autocast).items()},
            }
            out[hook]["columns"] = columns
        return out, windows


@torch.no_grad()
def latent_records(model, saes, probes: ProbeSet, autocast, device, folded: LatentRecords | None = None,
                   k: int = TOP_K) -> tuple[dict, list[dict]]:
    """({hook: records}, windows) for the current checkpoint, records as in the module docstring: `folded` if the
    step's eval filled it with every window, else from a forward of its own over the probe windows."""
    if folded is not None and folded.start == len(folded.windows):
        return folded.result(model, autocast)
    records = LatentRecords(saes, probes, device, k)
    if records.windows:
        tokens = torch.tensor([w["tokens"] for w in records.windows], device=device)
        for chunk in scored_activations(model, saes, tokens, autocast):
            records.add(chunk)
    return records.result(model, autocast)
