"""Model diffing through fine-tuning time: a BatchTopK crosscoder between the step-0 model and the live one
(docs/design.md §4.7).

One dictionary of F latents reads both models' activations at one hook on the same tokens and writes both
(Lindsey et al. 2024; the BatchTopK form of Minder et al. 2025, arXiv 2504.02922):

    f(x)  = BatchTopK( ReLU( x_base·W_enc[0] + x_ft·W_enc[1] + b_enc ) )
    x̂_m  = f·W_dec[m] + b_dec[m]                            m ∈ {0: base (step 0), 1: fine-tuned (live)}
    loss  = Σ_m ‖x_m − x̂_m‖² (mean over tokens) + α·AuxK      (AuxK as in Gao et al. 2024, α = 1/32)

BatchTopK keeps the k·B largest of f_j·(‖d_j^base‖ + ‖d_j^ft‖) over a batch of B tokens (training) and, at
inference, every activation whose weighted value passes a threshold: the running mean of the smallest one kept.
Both models' activations are multiplied by one scale, fixed on the first batch (the step-0 model's mean norm
→ √d), so decoder norms stay comparable through the run.

Per latent: the relative decoder norm r_j = ‖d_j^ft‖ / (‖d_j^base‖ + ‖d_j^ft‖) (½: shared; → 1: fine-tuned-only;
→ 0: base-only), the cosine of d_j^base and d_j^ft, and Latent Scaling's ratios (Minder et al.): how much of the
fine-tuned decoder direction d_j^ft the *base* model's activations hold, relative to the fine-tuned model's —
ν^ε on each model's reconstruction error with the latent's own term added back (Complete Shrinkage: the base
model holds the direction, the L1 penalty shrank its decoder), ν^r on each model's reconstruction without the
latent (Latent Decoupling: other latents carry it in the base model). A fine-tuned-only latent is *confirmed*
when both ratios are below 0.5. The threshold on r comes from a null crosscoder trained alongside on
(step-0, step-0) pairs from the same initialisation and tokens: a latent is fine-tuned-only when r exceeds both
0.9 and every latent of the null (base-only symmetrically). Its emergence step is the first record (one per
chrono step: r depends on the weights only) from which it stays past that record's threshold.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from chrono_membench import hooks
from chrono_membench import metric_keys as K
from chrono_membench.chrono.sae_metrics import fraction_of_variance_explained, l0
from chrono_membench.chrono.selectivity import selective_latents
from chrono_membench.probes import bucket_of
from chrono_membench.registry import EvalContext, register

AUX_ALPHA = 1 / 32  # AuxK's weight (Gao et al. 2024; sae-lens's TopK default)
THRESHOLD_EMA = 0.99  # the inference threshold's running mean
OUTLIER = 10.0  # tokens whose norm (either model) exceeds this × the batch median are left out (attention sinks)
CONFIRM = 0.5  # Latent Scaling: ν^ε and ν^r below this confirm a fine-tuned-only latent
EVAL_WINDOWS = 64  # probe windows per column an eval reads it on (the demo has 16; gemma-2b's 256 would hold 13 GB)
SHOWN = 16  # the dashboard's latents beyond the classes: this many leaning furthest each way from their null twin
TOP_WINDOWS = 5  # probe windows kept per shown latent (its strongest token in each, with the tokens around it)


class Crosscoder(nn.Module):
    """A BatchTopK crosscoder over two models' activations [tokens, 2, d] (model 0: base, 1: fine-tuned)."""

    def __init__(self, d_in: int, d_sae: int, k: int, seed: int = 0):
        super().__init__()
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        g = torch.Generator().manual_seed(seed)
        dec = torch.randn(2, d_sae, d_in, generator=g)
        dec = dec / dec.norm(dim=-1, keepdim=True) / math.sqrt(2)  # each latent's two rows: norms 0.71 each
        self.W_dec = nn.Parameter(dec)
        self.W_enc = nn.Parameter(dec.transpose(1, 2).clone())  # [2, d, F]: the decoder's transpose (Gao et al.)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(2, d_in))
        self.register_buffer("threshold", torch.tensor(-1.0))

    def norms(self) -> torch.Tensor:
        """[2, F] each latent's decoder norm in each model."""
        return self.W_dec.norm(dim=-1)

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.einsum("tmd,mdf->tf", x - self.b_dec, self.W_enc) + self.b_enc)

    def encode(self, x: torch.Tensor, batch_topk: bool = False) -> torch.Tensor:
        """Latents [tokens, F]: the batch's top k·tokens decoder-weighted activations (training), or those above
        the threshold (inference; before any training step: BatchTopK on this batch)."""
        pre = self.pre_acts(x)
        weighted = pre * self.norms().sum(0)
        if batch_topk or self.threshold < 0:
            kept = weighted.flatten().topk(min(self.k * len(x), weighted.numel())).indices
            mask = torch.zeros(weighted.numel(), dtype=torch.bool, device=x.device)
            mask[kept] = True
            return pre * mask.view_as(pre)
        return pre * (weighted >= self.threshold)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return torch.einsum("tf,mfd->tmd", f, self.W_dec) + self.b_dec

    def loss(self, x: torch.Tensor, dead: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """(training loss, parts) on a batch x [tokens, 2, d]: the reconstruction's squared error summed over
        both models (mean over tokens), plus α·AuxK: the k_aux largest pre-activations of `dead` latents [F]
        reconstructing the error (normalised by the error's own size)."""
        f = self.encode(x, batch_topk=True)
        x_hat = self.decode(f)
        err = x - x_hat
        mse = err.pow(2).sum((-1, -2)).mean()
        aux = torch.zeros((), device=x.device)
        if dead is not None and dead.any():
            k_aux = min(self.d_in // 2, int(dead.sum()))
            pre = self.pre_acts(x) * dead
            top = pre.topk(k_aux, dim=-1)
            f_aux = torch.zeros_like(pre).scatter_(-1, top.indices, top.values)
            e_hat = torch.einsum("tf,mfd->tmd", f_aux, self.W_dec)
            size = err.detach().pow(2).sum((-1, -2)).mean().clamp_min(1e-12)
            aux = (err.detach() - e_hat).pow(2).sum((-1, -2)).mean() / size
        with torch.no_grad():  # the inference threshold: running mean of the smallest weighted activation kept
            weighted = (f * self.norms().sum(0))
            smallest = weighted[weighted > 0].min() if (weighted > 0).any() else None
            if smallest is not None:
                self.threshold.copy_(smallest if self.threshold < 0 else
                                     THRESHOLD_EMA * self.threshold + (1 - THRESHOLD_EMA) * smallest)
        return mse + AUX_ALPHA * aux, {"mse": mse.detach(), "aux": aux.detach(), "f": f.detach(), "x_hat": x_hat.detach()}


# ---- per-latent readings (pure functions of the weights and of encoded activations)
def relative_norm(W_dec: torch.Tensor) -> torch.Tensor:
    """[F] ‖d_ft‖ / (‖d_base‖ + ‖d_ft‖) of a decoder [2, F, d] (0.5 for a latent with no decoder at all)."""
    n = W_dec.norm(dim=-1)
    return torch.where(n.sum(0) > 0, n[1] / n.sum(0).clamp_min(1e-12), torch.full_like(n[1], 0.5))


def decoder_cosine(W_dec: torch.Tensor) -> torch.Tensor:
    """[F] cosine between each latent's base and fine-tuned decoder rows."""
    return torch.nn.functional.cosine_similarity(W_dec[0], W_dec[1], dim=-1)


def classes(r: torch.Tensor, hi: float) -> dict[str, torch.Tensor]:
    """Latent ids per class at threshold hi on r: fine-tuned-only r > hi, base-only r < 1 − hi, shared between."""
    return {"ft_only": torch.nonzero(r > hi).flatten(), "base_only": torch.nonzero(r < 1 - hi).flatten(),
            "shared": torch.nonzero((r >= 1 - hi) & (r <= hi)).flatten()}


def threshold(null_r: torch.Tensor, floor: float) -> float:
    """The class threshold: `floor`, or the null crosscoder's most extreme latent (max r, 1 − min r) if further
    out; a class needs r strictly past it, so no latent of the null is ever classed."""
    return float(max(floor, null_r.max().item(), 1 - null_r.min().item()))


def scaling_betas(f: torch.Tensor, direction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Latent Scaling's closed form, per latent j: β_j = argmin_β Σ_t ‖β f_tj d_j − y_tj‖², with
    f [T, J] the latents' activations, direction [J, d] the d_j, and target [T, J] = ⟨d_j, y_tj⟩ already projected:
    β_j = Σ_t f_tj ⟨d_j, y_tj⟩ / (‖d_j‖² Σ_t f_tj²)."""
    return (f * target).sum(0) / (direction.pow(2).sum(-1) * f.pow(2).sum(0)).clamp_min(1e-12)


def latent_scaling(x: torch.Tensor, f: torch.Tensor, x_hat: torch.Tensor, W_dec: torch.Tensor,
                   latents: torch.Tensor) -> dict[str, torch.Tensor]:
    """ν^ε and ν^r [J] for `latents` (Minder et al. 2025) from activations x [T, 2, d], their latents f [T, F] and
    reconstruction x̂ [T, 2, d]; the direction is each latent's fine-tuned decoder row d_j^ft. Per model m:
    y^ε_tj = x_m − x̂_m + f_tj d_j^m (the error with the latent's own term added back), y^r_tj = x̂_m − f_tj d_j^m
    (the reconstruction without it); ν = β(base) / β(fine-tuned). Only tokens where a latent fires enter its sums."""
    d = W_dec[1, latents]  # [J, d]
    fj = f[:, latents]  # [T, J]
    out = {}
    for name, sign in (("eps", 1.0), ("rec", -1.0)):
        betas = []
        for m in (0, 1):
            base = (x[:, m] - x_hat[:, m]) if sign > 0 else x_hat[:, m]  # [T, d]
            own = (W_dec[m, latents] * d).sum(-1)  # ⟨d_j^ft, d_j^m⟩ [J]
            target = base @ d.T + sign * fj * own  # [T, J]
            betas.append(scaling_betas(fj, d, target))
        out[f"nu_{name}"] = betas[0] / betas[1].where(betas[1].abs() > 1e-12, torch.full_like(betas[1], 1e-12))
    return out


def emergence(history: list[tuple[int, torch.Tensor, float]]) -> torch.Tensor:
    """[F] each latent's emergence step: the first recorded step from which its r stays past that step's threshold
    through the last record (−1: not fine-tuned-only at the last). history: [(step, r [F], threshold)], oldest
    first (the trainer records one at every step it logs: the chrono cadence)."""
    if not history:
        return torch.empty(0, dtype=torch.long)
    above = torch.stack([r > hi for _, r, hi in history])  # [E, F]
    steps = torch.tensor([s for s, _, _ in history])
    stays = above.flip(0).cumprod(0).flip(0).bool()  # above from this eval through the last
    first = torch.where(stays.any(0), stays.float().argmax(0), torch.full((above.shape[1],), -1))
    return torch.where(first >= 0, steps[first.clamp_min(0)], torch.full_like(first, -1))


# ---- training alongside the LM
class CrosscoderTrainer:
    """The crosscoder between the step-0 model (`reference`, frozen) and the live model at one hook, and its null
    twin on (step-0, step-0) pairs: same initialisation, same tokens, same optimiser; trained every `every` LM
    steps on the activations the training forwards captured (the live side) and a forward of the reference model
    on the same tokens, stopped after the hook's block (the base side)."""

    def __init__(self, cfg, hook: str, width: int, reference, device: torch.device, seed: int = 0):
        self.cfg, self.hook, self.reference, self.device = cfg, hook, reference, device
        d_sae = cfg.expansion * width
        with torch.random.fork_rng(devices=[]):
            self.model = Crosscoder(width, d_sae, cfg.k, seed).to(device)
            self.null = Crosscoder(width, d_sae, cfg.k, seed).to(device)
        self.optimizer = torch.optim.Adam([*self.model.parameters(), *self.null.parameters()], lr=cfg.lr)
        self.scale: float | None = None
        self.since_fired = torch.zeros(2, d_sae, device=device)  # tokens since each latent last fired (model, null)
        self.history: list[tuple[int, torch.Tensor, float]] = []  # (LM step, r, threshold) at the chrono cadence
        self.n_steps = 0
        self._live = hooks.CaptureBuffer()
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] = []  # (tokens, mask) of each captured forward
        self.last_eval: dict = {}  # the last eval's per-latent values (the checkpoint's artifact)
        self._due_next = True  # whether the next LM step's forwards are worth capturing (crosscoder.every)

    @contextmanager
    def capture(self, model, tokens: torch.Tensor, mask: torch.Tensor):
        if not self._due_next:  # this step will not train it: no copies on the training forward's path
            yield
            return
        self._batches.append((tokens, mask))
        with hooks.capture(model, [self.hook], mask, into={self.hook: self._live}):
            yield

    def clear(self) -> None:
        self._live.clear()
        self._batches.clear()

    def step(self, lm_step: int, warming: bool, with_metrics: bool, autocast, batch_tokens: int) -> dict[str, float]:
        """Train on what was captured since the last call, if this LM step is due (every `every`; each warm-up
        step: there the live model is the step-0 model, so the base side is the captured side)."""
        due = warming or lm_step % self.cfg.every == 0
        self._due_next = warming or (lm_step + 1) % self.cfg.every == 0
        if not due or not len(self._live):
            self.clear()
            return {}
        live = self._live.tensor.float()
        base = live if warming else hook_activations(self.reference, self.hook, self._batches, autocast)
        self.clear()
        metrics = self.train_on(base, live, batch_tokens, with_metrics)
        if with_metrics:  # the relative norms over time (emergence): weights only, so cheap
            self.record(lm_step)
        return metrics

    def train_on(self, base: torch.Tensor, live: torch.Tensor, batch_tokens: int, with_metrics: bool = False
                 ) -> dict[str, float]:
        """One pass over paired activations [tokens, d] of the step-0 (base) and the live model on the same tokens,
        in minibatches of about batch_tokens: the crosscoder on (base, live), its null twin on (base, base)."""
        base, live = inliers(base, live)
        if self.scale is None:  # fixed once: both models, every step, so decoder norms compare through the run
            self.scale = self.model.d_in ** 0.5 / base.norm(dim=-1).mean().clamp_min(1e-12).item()
        pair = torch.stack([base, live], 1) * self.scale
        twin = torch.stack([base, base], 1) * self.scale
        if self.n_steps == 0:
            for coder, x in ((self.model, pair), (self.null, twin)):
                coder.b_dec.data.copy_(x.mean(0))
        n = max(1, math.ceil(len(pair) / batch_tokens))
        order = torch.randperm(len(pair), generator=torch.Generator().manual_seed(self.n_steps)).to(pair.device)
        metrics = {}
        for i, rows in enumerate(order.chunk(n)):
            dead = self.since_fired >= self.cfg.dead_tokens
            loss_m, parts_m = self.model.loss(pair[rows], dead[0])
            loss_n, parts_n = self.null.loss(twin[rows], dead[1])
            self.optimizer.zero_grad(set_to_none=True)
            (loss_m + loss_n).backward()
            self.optimizer.step()
            for j, parts in enumerate((parts_m, parts_n)):
                fired = (parts["f"] > 0).any(0)
                self.since_fired[j] = torch.where(fired, torch.zeros_like(self.since_fired[j]),
                                                  self.since_fired[j] + len(rows))
            if with_metrics and i == 0:
                fve = [fraction_of_variance_explained(pair[rows][:, m], parts_m["x_hat"][:, m]) for m in (0, 1)]
                metrics = {"crosscoder/train_mse": parts_m["mse"].item(), "crosscoder/train_fve_base": fve[0],
                           "crosscoder/train_fve_ft": fve[1], "crosscoder/train_l0": l0(parts_m["f"]),
                           "crosscoder/dead_frac": dead[0].float().mean().item()}
        self.n_steps += 1
        return metrics

    def record(self, lm_step: int) -> None:
        """Note each latent's r and the class threshold now, as of LM step lm_step (emergence reads these)."""
        r, r_null = self.relative_norms()
        self.history.append((lm_step, r, threshold(r_null, self.cfg.class_floor)))

    def relative_norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return relative_norm(self.model.W_dec).cpu(), relative_norm(self.null.W_dec).cpu()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "null": self.null.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scale": self.scale, "since_fired": self.since_fired,
                "history": list(self.history), "n_steps": self.n_steps}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.null.load_state_dict(state["null"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scale, self.n_steps = state["scale"], state["n_steps"]
        self.since_fired = state["since_fired"].to(self.device)
        self.history = [(int(s), r, float(hi)) for s, r, hi in state["history"]]


def inliers(base: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The token pairs whose norm in neither model exceeds OUTLIER × that model's median (attention sinks out)."""
    norms = torch.stack([base.norm(dim=-1), live.norm(dim=-1)])
    keep = (norms <= OUTLIER * norms.median(dim=1, keepdim=True).values).all(0)
    return base[keep], live[keep]


@torch.no_grad()
def hook_activations(model, hook: str, batches, autocast) -> torch.Tensor:
    """[tokens, width] activations at `hook` of the masked positions of each (tokens, mask) batch, the forwards
    stopped after the hook's block."""
    buffer, stop = hooks.CaptureBuffer(), hooks.layer_of(hook) + 1
    for tokens, mask in batches:
        with autocast, hooks.capture(model, [hook], mask, into={hook: buffer}):
            model(tokens, stop_at_layer=stop)
    return buffer.tensor.float()


# ---- at eval: the classes, Latent Scaling, emergence and the link to time buckets
@torch.no_grad()
def paired_activations(trainer: CrosscoderTrainer, model, tokens: torch.Tensor, autocast, rows: int = 8
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [T, 2, d] scaled as in training, window index [T]) on probe windows [W, n]: position 0 left out."""
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[:, 0] = False
    batches = list(zip(tokens.split(rows), mask.split(rows)))
    sides = [hook_activations(m, trainer.hook, batches, autocast) for m in (trainer.reference, model)]
    window = torch.arange(len(tokens), device=tokens.device).repeat_interleave(mask.sum(1))
    return torch.stack(sides, 1) * (trainer.scale or 1.0), window


def readings(trainer: CrosscoderTrainer, x: torch.Tensor, floor: float) -> dict:
    """Per-latent values on activations x [T, 2, d]: r, cosine, the class threshold and classes, FVE per model,
    L0, and Latent Scaling's ν for the fine-tuned-only latents."""
    coder = trainer.model
    f = coder.encode(x)
    x_hat = coder.decode(f)
    r, r_null = trainer.relative_norms()
    hi = threshold(r_null, floor)
    cls = classes(r, hi)
    fve = [fraction_of_variance_explained(x[:, m], x_hat[:, m]) for m in (0, 1)]
    ft = cls["ft_only"].to(x.device)
    scaling = latent_scaling(x, f, x_hat, coder.W_dec.detach(), ft) if len(ft) else {"nu_eps": torch.empty(0),
                                                                                       "nu_rec": torch.empty(0)}
    return {"r": r, "r_null": r_null, "cos": decoder_cosine(coder.W_dec.detach()).cpu(), "threshold": hi,
            "classes": cls, "null_count": int((r_null >= floor).sum() + (r_null <= 1 - floor).sum()),
            "fve": fve, "l0": l0(f), "f": f,
            "nu_eps": scaling["nu_eps"].cpu(), "nu_rec": scaling["nu_rec"].cpu()}


def window_sums(f: torch.Tensor, window: torch.Tensor, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-window activation sums [W, F] and token counts [W] of latents f [T, F]."""
    sums = torch.zeros(n_windows, f.shape[1], device=f.device).index_add_(0, window, f)
    counts = torch.bincount(window, minlength=n_windows)
    return sums.cpu().numpy(), counts.cpu().numpy()


def _keys(space) -> list[str]:
    return [K.crosscoder(n) for n in K.CROSSCODER_EVAL] if space.crosscoder else []


@register("crosscoder", keys=_keys, needs="saes", panel=False)
def crosscoder_metric(ctx: EvalContext) -> dict[str, float]:
    """The crosscoder on the probe windows (up to EVAL_WINDOWS of each bucket and of the unseen): its classes, Latent
    Scaling, the emergence of the fine-tuned-only latents (from the history the trainer records at the chrono
    cadence) and their link to the time buckets."""
    trainer = getattr(ctx.saes, "crosscoder", None)
    # at most EVAL_WINDOWS of each column: the latents of every scored token are held densely ([tokens, F])
    probes = [(b, p) for b, (_, ps) in enumerate(ctx.probes.columns()) for p in ps[:EVAL_WINDOWS]]
    if trainer is None or trainer.scale is None or not probes:
        return {}
    tokens = torch.tensor([p.tokens for _, p in probes], device=ctx.device)
    x, window = paired_activations(trainer, ctx.model, tokens, ctx.autocast, ctx.micro_batch)
    got = readings(trainer, x, trainer.cfg.class_floor)
    born = emergence(trainer.history)
    born = born if len(born) else torch.full_like(got["r"], -1, dtype=torch.long)
    ft = got["classes"]["ft_only"]
    median = lambda v: float(v.median()) if len(v) else float("nan")  # noqa: E731
    out = {"fve_base": got["fve"][0], "fve_ft": got["fve"][1], "l0": got["l0"],
           "threshold": got["threshold"], **{c: float(len(ids)) for c, ids in got["classes"].items()},
           "null_count": float(got["null_count"]), "r_sd": got["r"].std().item(), "r_sd_null": got["r_null"].std().item(),
           "ft_only_confirmed": float(((got["nu_eps"] < CONFIRM) & (got["nu_rec"] < CONFIRM)).sum()),
           "nu_eps_median": median(got["nu_eps"]), "nu_rec_median": median(got["nu_rec"]),
           "cos_ft_only_median": median(got["cos"][ft]), "emergence_median_step": median(born[ft].float())}
    n_buckets = len(ctx.probes.columns()) - 1  # the last column is "unseen"
    column = np.array([b for b, _ in probes])
    seen = column < n_buckets
    link = {"ft_only_tested": 0.0, "ft_only_time_selective": 0.0, "peak_at_emergence": float("nan"),
            "peak_at_emergence_chance": 1 / n_buckets}
    if len(ft) and seen.any():
        sums, counts = window_sums(got["f"][:, ft.to(x.device)], window, len(probes))
        source = np.array([p.source for _, p in probes])[seen]  # within source, as the SAEs' time test
        sel = selective_latents(sums[seen], counts[seen], column[seen], ctx.chrono.min_windows, ctx.chrono.fdr_q,
                                strata=source)
        if sel is not None:
            link.update(ft_only_tested=float(len(sel["tested"])), ft_only_time_selective=float(sel["count"]))
        rate = sums[seen] / np.maximum(counts[seen], 1)[:, None]
        by_bucket = np.stack([rate[column[seen] == b].mean(0) if (column[seen] == b).any() else np.zeros(len(ft))
                              for b in range(n_buckets)])
        when = [bucket_of(max(int(s), 1), n_buckets, ctx.probes.max_steps) for s in born[ft]]
        link["peak_at_emergence"] = float(np.mean(by_bucket.argmax(0) == np.array(when)))
    out.update(link)
    shown = shown_latents(got["r"], got["r_null"], got["classes"])
    names = [name for name, _ in ctx.probes.columns()]
    top = dict(zip(shown, top_windows(got["f"][:, torch.tensor(shown, device=x.device)], window, probes, names)))
    trainer.last_eval = {"step": ctx.step, "r": got["r"], "r_null": got["r_null"], "cos": got["cos"], "top": top,
                         "threshold": got["threshold"], "emergence": born, "ft_only": ft, "base_only":
                         got["classes"]["base_only"], "nu_eps": got["nu_eps"], "nu_rec": got["nu_rec"]}
    return {K.crosscoder(k): v for k, v in out.items()}


def shown_latents(r: torch.Tensor, r_null: torch.Tensor, classes_: dict[str, torch.Tensor], n: int = SHOWN
                  ) -> list[int]:
    """The latents the dashboard shows: every classed one, and the n whose r leans furthest from their null twin's
    (same initialisation: r − r_null is what the model's change did to the latent) towards each model."""
    lean = (r - r_null).argsort()
    picked = [*classes_["ft_only"].tolist(), *classes_["base_only"].tolist(), *lean[-n:].flip(0).tolist(),
              *lean[:n].tolist()]
    return list(dict.fromkeys(picked))


def top_windows(f: torch.Tensor, window: torch.Tensor, probes: list, names: list[str], k: int = TOP_WINDOWS,
                around: tuple[int, int] = (12, 4)) -> list[list[dict]]:
    """Per column of f [T, S] (one shown latent): its k probe windows with the highest activation, each with its
    strongest token's position and the tokens around it (`around`: before, after); probes: [(column, Probe)] in
    window order, names: the columns' names."""
    start = torch.zeros(len(probes) + 1, dtype=torch.long)
    start[1:] = torch.bincount(window.cpu(), minlength=len(probes)).cumsum(0)
    position = torch.arange(len(window)) - start[window.cpu()] + 1  # position 0 is left out of every window
    out = []
    for values in f.T.float().cpu():
        best = torch.full((len(probes),), -1.0).scatter_reduce(0, window.cpu(), values, "amax")
        entries = []
        for w in best.argsort(descending=True)[:k].tolist():
            if best[w] <= 0:
                break
            at = int(position[start[w] + values[start[w]:start[w + 1]].argmax()])
            column, probe = probes[w]
            lo = max(0, at - around[0])
            entries.append({"uid": probe.uid, "column": names[column], "source": probe.source, "step": probe.step,
                            "act": round(float(best[w]), 4), "tokens": probe.tokens[lo:at + 1 + around[1]],
                            "pos": at, "at": at - lo})
        out.append(entries)
    return out


# ---- files: per checkpoint, the weights and the last eval's per-latent readings
def save(trainer: CrosscoderTrainer, weights: Path, latents: Path, metadata: dict, step: int) -> None:
    """crosscoder_<hook>.safetensors (both crosscoders' weights, the scale and hook in its metadata) and
    crosscoder_latents_<hook>.json: at this checkpoint, each latent's r, the null twin's r and the decoder cosine
    (from the weights), the classes and each fine-tuned-only latent's emergence step; Latent Scaling's ν and the
    shown latents' top probe windows (shown_latents, top_windows) where this checkpoint's step was also an eval
    (they need activations: the eval's probe windows)."""
    tensors = {f"{who}.{k}": v.detach().cpu().contiguous() for who, coder in (("model", trainer.model),
                                                                              ("null", trainer.null))
               for k, v in coder.state_dict().items()}
    meta = {**{k: str(v) for k, v in metadata.items()}, "hook": trainer.hook, "scale": str(trainer.scale),
            "k": str(trainer.model.k)}
    save_file(tensors, str(weights), metadata=meta)
    r, r_null = trainer.relative_norms()
    hi = threshold(r_null, trainer.cfg.class_floor)
    cls = classes(r, hi)
    born = emergence(trainer.history)
    e = trainer.last_eval if trainer.last_eval.get("step") == step else {}
    nu = {int(i): (float(a), float(b)) for i, a, b in zip(e["ft_only"], e["nu_eps"], e["nu_rec"])} if e else {}
    latents.write_text(json.dumps({
        "step": step, "eval_step": e.get("step"), "threshold": hi, "hook": trainer.hook,
        "relative_norm": [round(v, 5) for v in r.tolist()],
        "relative_norm_null": [round(v, 5) for v in r_null.tolist()],
        "cosine": [round(v, 5) for v in decoder_cosine(trainer.model.W_dec.detach()).tolist()],
        "ft_only": [{"latent": i, "emergence_step": int(born[i]) if len(born) else -1,
                     "nu_eps": nu.get(i, (None, None))[0], "nu_rec": nu.get(i, (None, None))[1]}
                    for i in cls["ft_only"].tolist()],
        "base_only": cls["base_only"].tolist(),
        "top_windows": {str(i): w for i, w in e.get("top", {}).items()},  # the eval's shown latents (dashboard)
        "history_steps": [s for s, _, _ in trainer.history]}))


def load(path: str | Path, device: str = "cpu") -> tuple[Crosscoder, dict]:
    """A saved crosscoder (the run's, not its null twin) and its metadata (hook, scale: multiply both models' raw
    activations by it before encode; model name, step). Its input: [tokens, 2, d], base (step 0) then fine-tuned."""
    with safe_open(str(path), framework="pt", device=device) as f:
        meta = f.metadata()
        state = {k[len("model."):]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}
    d_in, d_sae = state["W_dec"].shape[2], state["W_dec"].shape[1]
    coder = Crosscoder(d_in, d_sae, int(meta["k"]))
    coder.load_state_dict(state)
    return coder.to(device), {**meta, "scale": float(meta["scale"])}
