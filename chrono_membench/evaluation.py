"""Evaluation: `evaluate` runs one eval — its core (validation loss and the SAE core eval panel, here) and then
every metric registered with registry.py (probe_eval.py registers the probe set's: canaries, memorisation,
membership inference, purity and selectivity); also the LM loss and attention diversity.

Everything here returns metric dicts (keys from metric_keys) and tensors; nothing writes files. The metric
arithmetic lives in chrono/ as pure functions; this module gathers the tensors they need from the model and the
SAEs, batched and under torch.no_grad (except the training-time diversity term).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from chrono_membench import hooks
from chrono_membench import probe_eval  # noqa: F401  (they register metrics, which run in this order: the probe set's
from chrono_membench import crosscoder  # noqa: F401   families first, then the crosscoder's)
from chrono_membench import metric_keys as K
from chrono_membench.chrono.attention import attention_entropy, head_js_diversity
from chrono_membench.chrono.redundancy import cofiring_max_phi, cofiring_null
from chrono_membench.chrono.sae_metrics import ce_loss_recovered
from chrono_membench.chrono.stability import activation_stability
from chrono_membench.data.sources import PAD_SOURCE
from chrono_membench.distributed import ALONE, Dist
from chrono_membench.model import casts_kept
from chrono_membench.registry import REGISTRY, EvalContext, applies
from chrono_membench.sae import SAEBank


@torch.no_grad()  # no metric needs a gradient: a registered one need not ask (the crosscoder's built graphs)
def evaluate(ctx: EvalContext) -> dict[str, float]:
    """One eval: validation loss and the SAE panel (their density histograms to ctx.density), then every registered
    metric that applies, in registration order, each timed (time/eval_<name>_s) when it logs anything; the probe
    windows' shared parts are timed as they happen (ctx.timings). Purity matrices go to ctx.matrices."""
    start, todo = time.perf_counter(), [m for m in REGISTRY.values() if applies(m, ctx)]
    bar = tqdm(total=1 + len(todo), desc=f"eval at step {ctx.step}", unit="part", leave=False,
               disable=not ctx.progress, dynamic_ncols=True)
    bar.set_postfix_str("validation and the SAE panel")
    with casts_kept(ctx.device, ctx.dist.parallel):  # each weight cast to bf16 once per eval (no weight changes here)
        metrics, ctx.density = validation_metrics(ctx.model, ctx.saes, ctx.val, ctx.eval_tokens, ctx.micro_batch,
                                                  ctx.autocast, ctx.dist)
        for metric in todo:
            bar.update(1)
            bar.set_postfix_str(metric.name)
            t0, shared = time.perf_counter(), sum(ctx.timings.values())
            got = metric.compute(ctx)
            if got:  # its own time: less the shared parts (the windows' scoring) it happened to set off
                metrics.update(got)
                metrics[K.eval_time(metric.name)] = time.perf_counter() - t0 - (sum(ctx.timings.values()) - shared)
    bar.update(1)
    bar.close()
    metrics.update({K.eval_time(part): v for part, v in ctx.timings.items()})
    metrics["time/eval_s"] = time.perf_counter() - start
    return metrics


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor, source_index: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over real (non-padding) targets. logits [B,T,V], tokens [B,T].
    The targets are shifted, not the logits: the last position's target is ignored, so the logits are read in
    place (slicing them off copied [B, T, V] each step: 40 % of this function's time in fp32)."""
    targets = tokens.roll(-1, 1).masked_fill(source_index.roll(-1, 1) == PAD_SOURCE, -100)
    targets[:, -1] = -100
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


def _loss_sums(logits: torch.Tensor, tokens: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """[loss sum, target count] (float64) of one batch: what validation loss accumulates over its batches."""
    n = int((sources[:, 1:] != PAD_SOURCE).sum())
    if not n:
        return torch.zeros(2, dtype=torch.float64)
    return torch.tensor([lm_loss(logits, tokens, sources).item() * n, n], dtype=torch.float64)


def _val_metrics(total: float, count: float) -> dict[str, float]:
    loss = total / count
    return {K.val("loss"): loss, K.val("ppl"): math.exp(min(loss, 50.0))}


@torch.no_grad()
def _val_sums(model, tokens_all: torch.Tensor, sources_all: torch.Tensor, micro_batch: int, autocast) -> torch.Tensor:
    """[loss sum, target count] of clean forwards over these rows, micro_batch rows at a time."""
    was_training, sums = model.training, torch.zeros(2, dtype=torch.float64)
    model.eval()
    for i in range(0, len(tokens_all), micro_batch):
        tokens, sources = tokens_all[i:i + micro_batch], sources_all[i:i + micro_batch]
        with autocast:
            logits = model(tokens)
        sums += _loss_sums(logits, tokens, sources)
    model.train(was_training)
    return sums


def validation_loss(model, val: dict[str, torch.Tensor], micro_batch: int, autocast, d: Dist = ALONE) -> dict[str, float]:
    """Validation loss over all val rows; under torchrun each rank takes rows r, r+N, … (padding rows, all
    targets masked, even out the forwards FSDP needs on every rank) and the sums are reduced."""
    start = time.perf_counter()
    index, weight = d.padded_share(len(val["tokens"]))
    sources = val["source_index"][index].masked_fill(weight[:, None].to(val["tokens"].device) == 0, PAD_SOURCE)
    sums = _val_sums(model, val["tokens"][index], sources, micro_batch, autocast)
    return {**_val_metrics(*d.sum_(sums).tolist()), K.eval_time("val"): time.perf_counter() - start}


def validation_metrics(model, saes: SAEBank | None, val: dict[str, torch.Tensor], n_tokens: int, micro_batch: int,
                       autocast, d: Dist = ALONE) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Validation loss and, with SAEs, the SAE panel → (metrics, density). In one process the panel's clean
    forwards (its rows are the first validation rows) give those rows' validation loss, and only the rows after
    them run clean for it (the same rows, batches and sums as validation_loss): each row is run clean once."""
    if saes is None:
        return validation_loss(model, val, micro_batch, autocast, d), {}
    if d.world > 1:  # each rank has its share of the validation rows; the panel runs every row on every rank
        panel, density = sae_eval_panel(model, saes, val, n_tokens, micro_batch, autocast)
        return {**validation_loss(model, val, micro_batch, autocast, d), **panel}, density
    panel, density, sums = sae_eval_panel(model, saes, val, n_tokens, micro_batch, autocast, with_val_loss=True)
    start, rows = time.perf_counter(), _panel_rows(val, n_tokens)
    sums += _val_sums(model, val["tokens"][rows:], val["source_index"][rows:], micro_batch, autocast)
    return {**_val_metrics(*sums.tolist()), **panel, K.eval_time("val"): time.perf_counter() - start}, density


def _panel_rows(val: dict[str, torch.Tensor], n_tokens: int) -> int:
    return min(len(val["tokens"]), math.ceil(n_tokens / val["tokens"].shape[1]))


@torch.no_grad()
def sae_eval_panel(model, saes: SAEBank, val: dict[str, torch.Tensor], n_tokens: int, micro_batch: int,
                   autocast, with_val_loss: bool = False):
    """The SAE core eval panel (sae-lens's evals / SAEBench definitions) per hook, on the first ⌈n_tokens / seq_len⌉
    validation rows, over the tokens the SAE mask keeps (position 0, BOS, outlier norms left out):
        ce_recovered  (CE_zero − CE_SAE) / (CE_zero − CE_clean)     kl_div_score  (KL_zero − KL_SAE) / KL_zero
        ce_delta      CE_SAE − CE_clean (nats)                       l2_ratio      mean ‖x̂‖ / ‖x‖ (shrinkage)
        fve           1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²)               l0            mean active latents per token
        cofiring_max_phi  per latent, its strongest firing correlation with another (chrono/redundancy.py)
    and, from the second eval on, chrono/<hook>/activation_stability against the previous eval's activations on the
    same tokens (chrono/stability.py; kept in the bank, so a resume continues it); after the first checkpoint,
    chrono/<hook>/previous_sae_{fve,ce_recovered,kl_div_score}: that checkpoint's exported SAE on this model.
    The SAE is spliced in at the kept positions (masked ones keep their activation; zero-ablation zeroes every
    position, as sae-lens does); CE and KL count a position iff its input token is kept (sae-lens's ignore-token
    rule). → (metrics, {hook: firing frequency [d_sae] over the kept tokens}) for the density histogram. The bank's
    variants are evaluated on the same forwards (their keys under variant/<name>/; the zero-ablation is shared).
    with_val_loss: → (metrics, density, [loss sum, target count] of the clean forwards) for validation_metrics."""
    t_start, rows, was_training = time.perf_counter(), _panel_rows(val, n_tokens), model.training
    model.eval()
    banks = {"": saes, **{K.variant(name, ""): v for name, v in saes.variants.items()}}  # key prefix → bank
    # what is evaluated: (key prefix, hook, whether it is that bank's SAE of the last checkpoint)
    each = [(prefix, hook, previous) for previous in (False, True) for prefix, bank in banks.items()
            for hook in bank.hook_points if hook in saes.hook_points and (not previous or hook in bank.previous)]
    val_sums = torch.zeros(2, dtype=torch.float64)  # as validation_loss: loss sum, target count
    tallies = {e: _Tally(banks[e[0]].saes[e[1]].cfg.d_sae, records=not e[2]) for e in each}
    for start in range(0, rows, micro_batch):
        tokens, sources = val["tokens"][start:start + micro_batch], val["source_index"][start:start + micro_batch]
        base = saes.base_mask(tokens, sources)
        with autocast:
            clean, cache = model.run_with_cache(tokens, names_filter=lambda n: n in saes.hook_points)
        if with_val_loss:
            val_sums += _loss_sums(clean, tokens, sources)
        clean_logp = clean.float().log_softmax(-1)
        reference = {}  # per hook: the zero-ablated forward's sums, shared by whatever SAE is evaluated there
        for prefix, hook, previous in each:
            flat = hooks.flatten(cache[hook]).float()
            keep = base.flatten() & ~saes.outliers(hook, flat)  # the variants share the leading bank's token mask
            x = flat[keep]
            sae = banks[prefix].previous[hook] if previous else None  # exported: it takes raw activations
            latents = sae.encode(x) if previous else banks[prefix].encode(hook, x)
            x_hat = sae.decode(latents) if previous else banks[prefix].decode(hook, latents)
            if hook not in reference:
                with autocast:
                    zero_logp = model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: torch.zeros_like(a))]
                                                     ).float().log_softmax(-1)
                reference[hook] = _reference_sums(tokens, sources, keep, clean_logp, zero_logp)
            recon = flat.clone()  # the SAE's reconstruction at the kept positions; the others keep their activation
            recon[keep] = x_hat
            sums = _splice_sums(model, tokens, hook, recon, clean_logp, reference[hook], autocast)
            norm_x = x.norm(dim=-1)
            sums += [(x_hat.norm(dim=-1) / torch.where(norm_x < 1e-4, 1.0, norm_x)).sum(), (latents != 0).sum(),
                     x.pow(2).sum(), (x - x_hat).pow(2).sum(), x.new_tensor(len(x))]
            tallies[prefix, hook, previous].add(torch.stack([t.double() for t in sums]).cpu(), x, latents,
                                                keep.nonzero().squeeze(1) + start * tokens.shape[1])  # kept positions
    metrics, density = {}, {}
    for (prefix, hook, previous), tally in tallies.items():
        if previous:  # the panel's own definitions, for the last checkpoint's SAE on this model
            panel = tally.panel()
            metrics.update({prefix + K.chrono(hook, f"previous_sae_{name}"): panel[{"fve": "eval_fve"}.get(name, name)]
                            for name in ("fve", "ce_recovered", "kl_div_score")})
            continue
        bank = banks[prefix]
        metrics.update({prefix + key: v for key, v in tally.metrics(hook, bank, rows * val["tokens"].shape[1]).items()})
        if not prefix:  # the density histogram artifact: the leading bank's SAEs
            density[hook] = (tally.fires / max(tally.sums[PANEL_SUMS.index("tokens")].item(), 1)).float()
    model.train(was_training)
    metrics[K.eval_time("sae_panel")] = time.perf_counter() - t_start
    return (metrics, density, val_sums) if with_val_loss else (metrics, density)


def _reference_sums(tokens, sources, keep, clean_logp, zero_logp) -> tuple[list, torch.Tensor, torch.Tensor]:
    """What every SAE at a hook shares in one batch (they share its token mask `keep`): the CE sums of the clean and
    the zero-ablated forwards, the target count and KL(clean ‖ zero) (PANEL_SUMS' ce_clean, ce_zero, targets,
    kl_zero), with the masks that count a target / a position."""
    pos = keep.view(tokens.shape)  # the positions counted
    target_ok = pos[:, :-1] & (sources[:, 1:] != PAD_SOURCE)
    return ([(_token_ce(clean_logp, tokens) * target_ok).sum(), (_token_ce(zero_logp, tokens) * target_ok).sum(),
             target_ok.sum(), (_kl(clean_logp, zero_logp) * pos).sum()], target_ok, pos)


def _splice_sums(model, tokens, hook: str, recon, clean_logp, reference, autocast) -> list:
    """One batch's CE and KL sums (PANEL_SUMS up to kl_zero) with the hook's activations replaced by `recon`
    (flattened: the reconstruction at the kept positions); `reference`: the hook's _reference_sums."""
    with autocast:
        spliced = model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: hooks.unflatten(recon, a))])
    spliced = spliced.float().log_softmax(-1)
    (ce_clean, ce_zero, targets, kl_zero), target_ok, pos = reference
    return [ce_clean, (_token_ce(spliced, tokens) * target_ok).sum(), ce_zero, targets,
            (_kl(clean_logp, spliced) * pos).sum(), kl_zero]


PANEL_SUMS = ("ce_clean", "ce_sae", "ce_zero", "targets", "kl_sae", "kl_zero", "l2_ratio", "l0", "sq_norm",
              "sq_residual", "tokens")


class _Tally:
    """One SAE's running sums over the panel's batches, and the panel's metrics from them."""

    def __init__(self, d_sae: int, records: bool = True):
        self.sums = torch.zeros(len(PANEL_SUMS), dtype=torch.float64)
        self.sum_x, self.fires = 0.0, torch.zeros(d_sae, dtype=torch.float64)
        self.records = records  # the firing events and activations below (not for the previous checkpoint's SAE)
        self.events: list[torch.Tensor] = []  # (token, latent) firing events: co-firing
        self.activations: list[torch.Tensor] = []  # (position, latent, value): activation stability

    def add(self, sums: torch.Tensor, x: torch.Tensor, latents: torch.Tensor, positions: torch.Tensor) -> None:
        first = int(self.sums[PANEL_SUMS.index("tokens")])  # this batch's first token among the kept ones
        self.sums += sums
        self.sum_x = self.sum_x + x.double().sum(0).cpu()
        self.fires += (latents != 0).sum(0).double().cpu()
        if not self.records:
            return
        token, latent = (latents != 0).nonzero(as_tuple=True)
        self.events.append(torch.stack([token + first, latent]).cpu())
        self.activations.append(torch.stack([positions[token].float(), latent.float(),
                                             latents[token, latent].float()]).cpu())

    def panel(self) -> dict[str, float]:
        """The panel's values from the sums (co-firing aside)."""
        v = dict(zip(PANEL_SUMS, self.sums.tolist()))
        n, m = max(v["tokens"], 1), max(v["targets"], 1)
        ce_clean, ce_sae, ce_zero = v["ce_clean"] / m, v["ce_sae"] / m, v["ce_zero"] / m
        variance = v["sq_norm"] / n - (self.sum_x / n).pow(2).sum().item()
        return {"ce_recovered": ce_loss_recovered(ce_clean, ce_sae, ce_zero),
                "kl_div_score": (v["kl_zero"] - v["kl_sae"]) / v["kl_zero"], "ce_delta": ce_sae - ce_clean,
                "l2_ratio": v["l2_ratio"] / n, "eval_fve": 1 - v["sq_residual"] / n / variance, "eval_l0": v["l0"] / n}

    def metrics(self, hook: str, bank: SAEBank, n_positions: int) -> dict[str, float]:
        panel = self.panel()
        events, tokens = torch.cat(self.events, 1), int(self.sums[PANEL_SUMS.index("tokens")])
        panel["cofiring_max_phi"] = cofiring_max_phi(*events, tokens, len(self.fires))
        panel["cofiring_max_phi_null"] = cofiring_null(*events, tokens, len(self.fires))
        panel["cofiring_max_phi_excess"] = panel["cofiring_max_phi"] - panel["cofiring_max_phi_null"]
        out = {K.sae(hook, name): panel[name] for name in K.SAE_EVAL}
        now = torch.cat(self.activations, 1)
        if hook in bank.panel_latents:  # the same tokens at the previous eval, through that eval's LM and SAE
            out[K.chrono(hook, "activation_stability")] = activation_stability(
                bank.panel_latents[hook], now, n_positions, len(self.fires))
        bank.panel_latents[hook] = now
        return out


def _token_ce(log_probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[B, T-1]: −log p(token t+1 | ≤ t)."""
    return -log_probs[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)


def _kl(clean_log_probs: torch.Tensor, new_log_probs: torch.Tensor) -> torch.Tensor:
    """[B, T]: KL(clean ‖ new) per position, as sae-lens's evals compute it."""
    return (clean_log_probs.exp() * (clean_log_probs - new_log_probs)).sum(-1)


@torch.no_grad()
def attention_metrics(model, tokens: torch.Tensor, source_index: torch.Tensor, autocast) -> dict[str, float]:
    """Per-layer head diversity (also with the sink key 0 left out) and mean attention entropy on a fixed batch,
    padded keys and queries masked; only the patterns are cached."""
    names = hooks.pattern_names(model.cfg.n_layers)
    valid = source_index != PAD_SOURCE
    with autocast:
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    out, entropies = {}, []
    for l, name in enumerate(names):
        for nosink in (False, True):
            out[K.attn_layer(l, nosink)] = head_js_diversity(cache[name], valid=valid, drop_sink=nosink).item()
        entropies.append(attention_entropy(cache[name], valid=valid).item())
    out[K.ATTN_DIVERSITY_MEAN] = sum(out[K.attn_layer(l)] for l in range(len(names))) / len(names)
    out[K.ATTN_DIVERSITY_NOSINK_MEAN] = sum(out[K.attn_layer(l, True)] for l in range(len(names))) / len(names)
    out[K.ATTN_ENTROPY_MEAN] = sum(entropies) / len(entropies)
    return out


def sample_queries(cfg, step: int, micro: int) -> torch.Tensor:
    """The chrono.probe_queries query positions the diversity term looks at in micro-batch `micro` of the update
    after `step` (docs/design.md §4.3): fresh every forward, reproducible from the seed (a resume draws the same)."""
    generator = torch.Generator().manual_seed(cfg.run.seed * 1_000_003 + step * 1009 + micro)
    return torch.randperm(cfg.data.seq_len, generator=generator)[:cfg.chrono.probe_queries]


def diversity_term(pattern_rows: list[torch.Tensor], query_index: torch.Tensor,
                   source_index: torch.Tensor | None = None) -> torch.Tensor:
    """mean over layers of head diversity at the sampled query positions (docs/design.md §4.3); pattern_rows: per layer
    [B, H, len(query_index), T], the rows attention_rows.capture took; padding (PAD_SOURCE) is masked."""
    if not pattern_rows:
        raise RuntimeError("no attention rows were captured: the model's attention implementation is neither sdpa "
                           "nor eager (see attention_rows.install)")
    valid = source_index != PAD_SOURCE if source_index is not None else None
    return torch.stack([head_js_diversity(p, query_index, valid, rows_taken=True) for p in pattern_rows]).mean()


def qk_parameters(hf_model) -> list[torch.nn.Parameter]:
    """The attention query and key projections (weights and biases): the parameters the diversity term steers
    directly, and where its share of the gradient is measured."""
    return [p for n, p in hf_model.named_parameters() if p.requires_grad and (".q_proj." in n or ".k_proj." in n)]


class DiversityShare:
    """The share μ · ‖∇D‖ / ‖∇CE‖ of the q/k gradient the diversity term steers, measured on the update the optimiser
    takes (the gradient accumulated over its micro-batches, before clipping): ∇D by one partial backward of each
    micro-batch's term onto the q/k projections (autograd.grad: nothing goes into .grad, the graph is kept for the
    loop's backward), ∇CE read off the accumulated .grad as ∇(CE − μD) + μ∇D, so CE needs no backward of its own.
    Under DDP .grad is already the ranks' mean and ∇D is averaged to match (FSDP is refused by the config)."""

    def __init__(self, qk_params: list[torch.Tensor]):
        self.qk, self.div = qk_params, None

    @staticmethod
    def _flat(params, grads) -> torch.Tensor:
        return torch.cat([(torch.zeros_like(p) if g is None else g).float().flatten() for p, g in zip(params, grads)])

    def add(self, diversity: torch.Tensor, weight: float) -> None:
        """∇(weight · D) of one micro-batch (weight: 1 / grad_accum, as its backward is scaled)."""
        grads = torch.autograd.grad(diversity, self.qk, retain_graph=True, allow_unused=True)
        flat = self._flat(self.qk, grads) * weight
        self.div = flat if self.div is None else self.div.add_(flat)

    def read(self, mu: float, share: float, d: Dist = ALONE) -> tuple[float, float]:
        """(the share `mu` steered of this update's q/k gradient, the μ to use from the next update on): with `share`
        ρ > 0 the μ that makes that share ρ, otherwise `mu` (fixed). Call after the update's last backward."""
        div, self.div = self.div, None
        if d.world > 1:
            div = d.sum_(div) / d.world
        ce_norm = (self._flat(self.qk, [p.grad for p in self.qk]) + mu * div).norm().item()
        div_norm = div.norm().item()
        if not (math.isfinite(ce_norm) and math.isfinite(div_norm) and ce_norm > 0 and div_norm > 0):
            return math.nan, mu  # a non-finite loss (an update that will be skipped) must not set μ for the ones after
        return mu * div_norm / ce_norm, share * ce_norm / div_norm if share > 0 else mu
