"""SAEs that train alongside the LM (docs/design.md §4): one sae-lens training SAE per hook point.

The LM forward of every micro-step captures the hooked activations (detached: the SAEs never touch the LM's
gradients, and there is no second LM forward; the bank itself runs no LM forward and writes no files).
After the LM's optimiser step, each SAE trains on everything captured for that update, with its own Adam, in
minibatches of sae.batch_tokens shuffled tokens (over all ranks; one SAE step each, as sae-lens trains). The SAE
architecture comes from saes/ (a table over sae-lens's registry, and custom ones registered there; its row says
what this module needs to know of it); this module adds what "alongside" needs:
- the token mask: position 0, BOS tokens and tokens whose norm exceeds `sae.outlier_norm_factor` × the running
  median norm (attention sinks) are left out of training, the norm estimate, dead-latent counts and metrics;
- running activation-norm normalisation;
- temporal dropout on the latents, applied to the reconstruction the MSE sees and nowhere else (the
  dead-latent auxiliary loss, the sparsity penalty, BatchTopK's threshold and the firing statistics all see the
  undropped latents);
- the feature-alignment loss to the last checkpoint's decoder, in the reconstruction's own units (along the
  directions sae-lens's decode actually uses: unit rows where it rescales by decoder norm);
- dead-latent tracking, drift between checkpoints over alive latents, and an optional second SAE per hook with
  another seed (`sae.seed_baseline`): the noise floor of the drift numbers;
- SAE variants (sae.variants): one more bank per variant, with its own SAE settings, dropout, alignment and seed,
  stepping on the inputs this bank prepares (the same masked, scaled activations) and logging under
  variant/<name>/ — an SAE-only ablation or dose point without another LM run;
- health: an SAE is an instrument, and its failure never stops the LM's run. A hook whose loss or gradient is
  not finite (on any rank, for any of its SAEs) skips that update, as the LM does, and counts it; after
  `sae.max_skipped_in_a_row` such updates in a row, or at once if its weights are no longer finite, the hook is
  retired: it leaves `hook_points` (nothing is captured, evaluated or written for it again) with a one-line
  warning, and stays retired on resume.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput
from torch.profiler import record_function
from tqdm import tqdm

from chrono_membench import hooks
from chrono_membench import metric_keys as K
from chrono_membench.chrono.alignment import (
    alignment_loss, decoder_drift, decoding_rows, matched_similarity, unit_rows,
)
from chrono_membench.chrono.redundancy import decoder_redundancy
from chrono_membench.chrono.sae_metrics import fraction_of_variance_explained, l0
from chrono_membench.chrono.temporal_dropout import inverted_dropout, temporal_dropout_rate
from chrono_membench.config import ChronoConfig, Config, ConfigError, SAEConfig
from chrono_membench.data.sources import PAD_SOURCE
from chrono_membench.data.stream import adds_bos, collate
from chrono_membench.distributed import ALONE, Dist
from chrono_membench.model import autocast as model_autocast
from chrono_membench.saes import architecture

NORM_EMA = 0.99  # running mean-norm and median-norm estimates: stable, yet they follow the LM's drift
BASELINE_SEED_OFFSET = 1_000  # the seed-baseline SAE's init seed: run.seed + this


@dataclass
class LatentState:
    """What one SAE tracks besides its weights (saved with every checkpoint)."""
    tokens_since_fired: torch.Tensor  # [F] int64
    fire_count: torch.Tensor  # [F] tokens on which each latent fired, since the last checkpoint
    act_sum: torch.Tensor  # [F] sum of activations, since the last checkpoint
    tokens_seen: int = 0
    anchor: torch.Tensor | None = None  # [F, D] decoder rows at the last checkpoint (alignment, drift)
    anchor_alive: torch.Tensor | None = None  # [F] bool, latents alive at the last checkpoint

    @classmethod
    def empty(cls, d_sae: int, device) -> LatentState:
        return cls(torch.zeros(d_sae, dtype=torch.long, device=device), torch.zeros(d_sae, device=device),
                   torch.zeros(d_sae, device=device))


@dataclass
class HookState:
    """Per hook point, shared by its SAEs (they see the same activations)."""
    norm_ema: float | None = None  # running mean ‖x‖ of the kept raw activations
    median_norm: float | None = None  # running median ‖x‖ of the unmasked tokens: the outlier reference
    masked: int = 0  # tokens masked since the last metrics, of `real`
    real: int = 0


def training_forward(sae, step_input: TrainStepInput, p: float, generator: torch.Generator | None,
                     update_state: bool = True, sparse: bool = False
                     ) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor, float]:
    """sae-lens's training_forward_pass with temporal dropout between encoder and decoder, on the MSE's path only.
    → (loss, losses, undropped latents, undropped reconstruction, realised dropped fraction). update_state=False
    (metrics) changes nothing in the SAE (a running threshold, as BatchTopK's, stays). sparse: the architecture
    fires ≤ k latents per token (its saes/ row's sparse_decode), so only those decoder rows are gathered."""
    x = step_input.sae_in
    feature_acts, hidden_pre = sae.encode_with_hidden_pre(x)
    if sparse:  # k (or ~k) latents per token: decode only those (see sparse_decode)
        rows, cols = feature_acts.nonzero(as_tuple=True)
        values = feature_acts[rows, cols]
        decode = partial(sparse_decode, sae, rows, cols, len(x))
    else:
        values, decode = feature_acts, sae.decode
    dropped = inverted_dropout(values, p, generator) if p > 0 else values
    sae_out = decode(dropped)
    losses = {"mse_loss": sae.mse_loss_fn(sae_out, x).sum(dim=-1).mean()}
    clean_out = decode(values) if p > 0 else sae_out  # the aux (dead-latent) loss fits this residual
    losses.update(sae.calculate_aux_loss(step_input=step_input, feature_acts=feature_acts, hidden_pre=hidden_pre,
                                         sae_out=clean_out))
    if update_state and hasattr(sae, "update_topk_threshold"):  # a running inference threshold (BatchTopK's)
        sae.update_topk_threshold(feature_acts.detach())  # from the undropped latents
    with torch.no_grad():
        on = values != 0
        frac = ((on & (dropped == 0)).sum() / on.sum().clamp(min=1)).item() if p > 0 else 0.0
    return sum(losses.values()), losses, feature_acts, clean_out, frac


def sparse_decode(sae, rows: torch.Tensor, cols: torch.Tensor, n: int, values: torch.Tensor) -> torch.Tensor:
    """What a TopK SAE's decode computes from dense latents [n, d_sae] that are zero except values at
    (rows, cols) (rows sorted, as nonzero() gives them), gathering only those decoder rows (as sparsify's
    eager_decode does): the matmul and its backward cost O(k·d_in) per token, not O(d_sae·d_in)."""
    if sae.cfg.rescale_acts_by_decoder_norm:  # sae-lens's act_times_W_dec: latents / ‖W_dec row‖
        values = values / sae.W_dec.norm(dim=-1)[cols]
    offsets = torch.searchsorted(rows, torch.arange(n, device=rows.device))  # each token's first entry
    out = F.embedding_bag(cols, sae.W_dec, offsets, mode="sum",  # no autocast rule: the weights' dtype
                          per_sample_weights=values.to(sae.W_dec.dtype)) + sae.b_dec
    return sae.reshape_fn_out(sae.run_time_activation_norm_fn_out(sae.hook_sae_recons(out)), sae.d_head)


def minibatches(inputs: dict[str, torch.Tensor], n: int, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """hook → [tokens, d] split into n minibatches of shuffled tokens (sae-lens trains on shuffled activations: one
    row's tokens, which are correlated, are spread over the minibatches); n = 1: the tokens as they are."""
    if n == 1:
        return [inputs]
    order = {h: torch.randperm(len(x), generator=generator).to(x.device) for h, x in inputs.items()}
    split = {h: x[order[h]].tensor_split(n) for h, x in inputs.items()}
    return [{h: parts[b] for h, parts in split.items()} for b in range(n)]


def _check_k(cfg: SAEConfig, widths: dict[str, int], field: str) -> None:
    narrowest = min(widths.values()) * cfg.expansion
    if architecture(cfg)[0].k and cfg.k > narrowest:
        raise ConfigError(f"{field}={cfg.k}: at most d_sae = sae.expansion × the hook's width = {narrowest} "
                          f"latents can fire per token here (widths {widths}); allowed: 1..{narrowest}")


class SAEBank:
    """widths: hook point → activation width (hooks.activation_widths). d_sae = sae.expansion × width.
    bos_token_id: the BOS token to mask, where the tokenizer adds one (None otherwise)."""

    def __init__(self, cfg: SAEConfig, chrono: ChronoConfig, max_steps: int, widths: dict[str, int],
                 device: torch.device, seed: int = 0, dist: Dist = ALONE, bos_token_id: int | None = None):
        self.cfg, self.chrono, self.max_steps = cfg, chrono, max_steps
        self.arch = architecture(cfg)[0]  # what the bank asks of the architecture (saes/): never its name
        self.device, self.dist, self.seed, self.bos_token_id = device, dist, seed, bos_token_id
        self.all_hooks = list(widths)
        self.hook_points = list(widths)  # the live hooks: all_hooks less the retired ones
        self.skipped = {h: 0 for h in widths}  # non-finite SAE updates skipped, in total
        self.skipped_in_a_row = {h: 0 for h in widths}
        self.retired: dict[str, int] = {}  # hook → the LM step at which it was retired
        self.saes = self._build(widths, seed)
        self.baselines = self._build(widths, seed + BASELINE_SEED_OFFSET) if cfg.seed_baseline else {}
        params = [p for s in [*self.saes.values(), *self.baselines.values()] for p in s.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr)
        self.state = {h: HookState() for h in self.hook_points}
        self.latents = {(h, i): LatentState.empty(s.cfg.d_sae, device) for h in self.hook_points
                        for i, s in enumerate(self._members(h))}
        self._captured = {h: hooks.CaptureBuffer() for h in self.hook_points}  # this update's activations
        self.n_steps = 0
        self.variants: dict[str, SAEBank] = {}  # name → a bank fed this bank's inputs (sae.variants; for_model)
        self.name = ""  # a variant's name (sae.variants), for what it says
        # what an exported SAE's sae-lens metadata says of where it comes from (for_model fills it; inference_sae)
        self.metadata: dict = {}
        # hook → the last eval panel's latent activations, [3, nnz] (position, latent, value): activation stability
        self.panel_latents: dict[str, torch.Tensor] = {}
        # hook → the last checkpoint's SAE as exported (it takes raw activations): evaluated on the LM as it is now
        # (the panel's previous_sae_* keys) and the encoder's drift
        self.previous: dict[str, object] = {}
        self.crosscoder = None  # a CrosscoderTrainer (crosscoder.enabled; for_model): it rides this bank's steps
        self.autocast = nullcontext()  # the precision of the crosscoder's step-0 forwards (for_model sets the run's)
        self.step_autocast = model_autocast(device, cfg.autocast)  # sae.autocast: a step's forward (its backward follows)

    @classmethod
    def for_model(cls, cfg: Config, model, tokenizer, device: torch.device, d: Dist = ALONE, reference=None) -> SAEBank:
        """A run's bank on `model`: its hook points checked, their widths measured, BOS masked where used; with
        sae.variants, one more bank per variant that trains on the activations this bank captures; with
        crosscoder.enabled, the crosscoder between `reference` (the frozen step-0 model) and `model`."""
        hook_points = list(cfg.sae.hook_points) or hooks.default_hook_points(model.cfg.n_layers)
        hooks.check_hook_points(hook_points, model.cfg.n_layers)
        widths = hooks.activation_widths(model, hook_points)
        _check_k(cfg.sae, widths, "sae.k")
        bos = tokenizer.bos_token_id if adds_bos(tokenizer) else None  # SmolLM2 adds none: position 0 still masked
        bank = cls(cfg.sae, cfg.chrono, cfg.train.max_steps, widths, device, cfg.run.seed, d, bos)
        mixture = ", ".join(f"{s} {w:g}" for s, w in cfg.data.mixture.items() if w > 0)
        bank.metadata = {"model_name": cfg.model.name, "context_size": cfg.data.seq_len, "prepend_bos": bos is not None,
                         "dataset_path": f"chrono-membench {cfg.data.origin} mixture ({mixture})",
                         "chrono_membench_run": cfg.run.name, "chrono_membench_max_steps": cfg.train.max_steps}
        for name in cfg.sae.variants:
            sae_cfg, chrono, seed = cfg.variant(name)
            _check_k(sae_cfg, widths, f"sae.variants.{name}.sae.k")
            variant = cls(sae_cfg, chrono, cfg.train.max_steps, widths, device, seed, d, bos)
            variant.state = bank.state  # one token mask and activation scale per hook: the variants follow this bank's
            variant.name = name
            variant.metadata = {**bank.metadata, "chrono_membench_variant": name}
            bank.variants[name] = variant
        if cfg.crosscoder.enabled:
            from chrono_membench.crosscoder import CrosscoderTrainer

            if d.world > 1 or reference is None:
                raise ConfigError("crosscoder.enabled: one process only (its gradients are not reduced over ranks), "
                                  "with the step-0 model kept")
            hook = cfg.crosscoder.hook or hook_points[0]
            hooks.check_hook_points([hook], model.cfg.n_layers, "crosscoder.hook")
            width = hooks.activation_widths(model, [hook])[hook]
            bank.crosscoder = CrosscoderTrainer(cfg.crosscoder, hook, width, reference, device, cfg.run.seed)
            bank.autocast = model_autocast(device, cfg.train.autocast)
        return bank

    def _build(self, widths: dict[str, int], seed: int) -> dict:
        arch, sae_cls, sae_cfg_cls = architecture(self.cfg)
        kwargs = arch.kwargs(self.cfg)
        saes = {}
        with torch.random.fork_rng(devices=[]):  # SAE init must not shift the global RNG the LM run uses
            torch.manual_seed(seed)
            for hook, width in widths.items():
                sae_cfg = sae_cfg_cls(d_in=width, d_sae=self.cfg.expansion * width, device=str(self.device), **kwargs)
                sae_cfg.metadata.hook_name = hook
                saes[hook] = sae_cls(sae_cfg).to(self.device)
        return saes

    def _members(self, hook: str) -> list:
        """The SAEs of a hook: the one the harness reports on, then the seed baseline if configured."""
        return [self.saes[hook]] + ([self.baselines[hook]] if hook in self.baselines else [])

    # ---- the token mask
    def base_mask(self, tokens: torch.Tensor, source_index: torch.Tensor) -> torch.Tensor:
        """[batch, pos] bool: real tokens that are neither at position 0 nor a BOS token."""
        return hooks.token_mask(tokens, source_index, self.bos_token_id)

    def outliers(self, hook: str, raw: torch.Tensor) -> torch.Tensor:
        """[tokens] bool: norm above sae.outlier_norm_factor × the running median norm at this hook."""
        norms = raw.float().norm(dim=-1)
        if self.cfg.outlier_norm_factor <= 0 or len(raw) == 0:
            return torch.zeros(len(raw), dtype=torch.bool, device=raw.device)
        median = self.state[hook].median_norm  # before the first SAE step: the median of these activations
        return norms > self.cfg.outlier_norm_factor * (median if median is not None else norms.median().item())

    # ---- capture during the LM forward
    @contextmanager
    def capture(self, model, tokens: torch.Tensor, source_index: torch.Tensor):
        """Keep the detached activations of every hook point at the unmasked positions of this forward's batch,
        for the next step()."""
        mask = self.base_mask(tokens, source_index)
        real = int((source_index != PAD_SOURCE).sum())
        before = {h: len(b) for h, b in self._captured.items()}
        with hooks.capture(model, self.hook_points, mask, into=self._captured), (
                self.crosscoder.capture(model, tokens, mask) if self.crosscoder is not None else nullcontext()):
            yield
        for hook, buffer in self._captured.items():
            self.state[hook].masked += real - (len(buffer) - before[hook])
            self.state[hook].real += real

    def discard_captured(self) -> None:
        """The LM update was skipped (non-finite): its activations are not trained on."""
        for captured in self._captured.values():
            captured.clear()
        if self.crosscoder is not None:
            self.crosscoder.clear()

    def scale(self, hook: str) -> float:
        """Multiply raw activations by this so their mean norm is √d_in (the scale sae-lens trains at)."""
        ema = self.state[hook].norm_ema
        return 1.0 if ema is None else self.saes[hook].cfg.d_in ** 0.5 / ema

    @torch.no_grad()
    def encode(self, hook: str, raw: torch.Tensor) -> torch.Tensor:
        """Latent activations [tokens, d_sae] of raw activations [tokens, width] (scaled as in training)."""
        return self.saes[hook].encode(raw.float() * self.scale(hook))

    @torch.no_grad()
    def decode(self, hook: str, latents: torch.Tensor) -> torch.Tensor:
        """The reconstruction of latents [tokens, d_sae] (from encode), in the raw activations' units."""
        return self.saes[hook].decode(latents) / self.scale(hook)

    @torch.no_grad()
    def reconstruct(self, hook: str, raw: torch.Tensor) -> torch.Tensor:
        """The SAE's reconstruction of raw activations [tokens, width], in the raw activations' units."""
        s = self.scale(hook)
        return self.saes[hook](raw.float() * s) / s

    @torch.no_grad()
    def inference_sae(self, hook: str, step: int | None = None):
        """A copy of the SAE with the activation scaling folded in: it takes raw activations (what is exported). Its
        sae-lens metadata names the model, hook, context size and data (self.metadata) and, given, the LM step it
        belongs to, so other tools can place it."""
        inference = copy.deepcopy(self.saes[hook])
        inference.fold_activation_norm_scaling_factor(self.scale(hook))
        for key, value in {**self.metadata, "hook_name": hook}.items():
            inference.cfg.metadata[key] = value
        if step is not None:
            inference.cfg.metadata["chrono_membench_step"] = step
        return inference

    def export_units(self, hook: str) -> float:
        """What the exported SAE's latents are divided by, relative to training: the activation scale for SAEs
        that multiply their pre-activations by ‖W_dec‖ (sae-lens's default for TopK; folding the scale into
        W_dec divides them by it), else 1. The dashboard's records are in the exported units."""
        return self.scale(hook) if getattr(self.saes[hook].cfg, "rescale_acts_by_decoder_norm", False) else 1.0

    def _coefficients(self, sae) -> dict[str, float]:
        out = {}
        for name, c in sae.get_coefficients().items():
            if isinstance(c, TrainCoefficientConfig):
                c = c.value * min(1.0, (self.n_steps + 1) / c.warm_up_steps) if c.warm_up_steps else c.value
            out[name] = c
        return out

    def _dropout_generator(self, member: int) -> torch.Generator:
        """Temporal dropout's masks: a generator seeded from (seed, SAE step, rank, member), so nothing needs
        saving to resume them exactly, whatever number of tokens each rank kept."""
        seed = ((self.seed * 1_000_003 + self.n_steps) * 64 + self.dist.rank) * 2 + member
        return torch.Generator(device=self.device).manual_seed(seed)

    # ---- one SAE step after each LM update
    def step(self, lm_step: int, with_metrics: bool, inputs: dict[str, torch.Tensor] | None = None,
             warming: int | None = None) -> dict[str, float]:
        """Train every SAE on the activations captured since the last call (a variant: on `inputs`, the ones its
        leading bank prepared), in ⌈tokens / sae.batch_tokens⌉ SAE steps; return metrics if asked (on the first
        minibatch, before its update), the variants' under variant/<name>/. During the warm-up, `warming` is the
        tokens fed before this step: a variant with fewer sae.warmup_tokens than that sits it out.
        Under torchrun each rank holds its own tokens' activations: the norm and median estimates, the firing
        statistics and the gradients are reduced over ranks (the SAEs stay identical), the metrics averaged."""
        d = self.dist
        p = temporal_dropout_rate(lm_step, self.max_steps, self.chrono.dropout_p_max)
        metrics: dict[str, float] = {K.DROPOUT_RATE: p} if with_metrics and self.hook_points else {}
        if inputs is None:
            with record_function("sae.take_inputs"):
                inputs = self._take_inputs(with_metrics, metrics)
        live = {h: x for h, x in inputs.items() if h in self.hook_points}
        if self.n_steps == 0:  # b_dec starts at the data mean (as sparsify does), not at 0: see _init_b_dec
            for hook, x in live.items():
                self._init_b_dec(hook, x)
        n_batches = self._n_batches(live)  # sae.batch_tokens per SAE step, as sae-lens trains
        shuffle = torch.Generator().manual_seed((self.seed * 1_000_003 + self.n_steps) * 64 + self.dist.rank)
        for b, batch in enumerate(minibatches(live, n_batches, shuffle)):
            metrics.update(self._update(lm_step, p, batch, with_metrics and b == 0))
        metrics = d.mean_dict(metrics)
        for name, variant in self.variants.items():
            if warming is None or warming < variant.cfg.warmup_tokens:
                metrics.update({K.variant(name, k): v for k, v in variant.step(lm_step, with_metrics, inputs).items()})
        if self.crosscoder is not None:
            with record_function("crosscoder.step"):
                metrics.update(self.crosscoder.step(lm_step, warming is not None, with_metrics, self.autocast,
                                                    self.cfg.batch_tokens))
        return metrics

    def _n_batches(self, inputs: dict[str, torch.Tensor]) -> int:
        """SAE steps for this LM step's tokens: ⌈tokens over all ranks / sae.batch_tokens⌉ (the most at any hook),
        the same on every rank, and never more than the fewest tokens any rank holds at a hook."""
        if not inputs:
            return 1
        counts = self.dist.cat(torch.tensor([float(len(x)) for x in inputs.values()], device=self.dist.comm_device))
        counts = counts.view(self.dist.world, len(inputs))
        wanted = math.ceil(counts.sum(0).max().item() / self.cfg.batch_tokens)
        return max(1, min(wanted, int(counts.min().item())))

    def _update(self, lm_step: int, dropout: float, inputs: dict[str, torch.Tensor], with_metrics: bool
                ) -> dict[str, float]:
        """One optimiser step of every SAE on one minibatch of inputs (hook → [tokens, d_in]), temporal dropout at
        rate `dropout`."""
        d, metrics = self.dist, {}
        losses, firing = {}, []
        for hook, x in inputs.items():
            for member, sae in enumerate(self._members(hook)):
                lat = self.latents[hook, member]
                dead = lat.tokens_since_fired >= self.cfg.dead_window
                step_input = TrainStepInput(sae_in=x, coefficients=self._coefficients(sae), dead_neuron_mask=dead,
                                            n_training_steps=self.n_steps, is_logging_step=with_metrics)
                if with_metrics and member == 0:  # before the update, without dropout: the SAE as it is now
                    with record_function("sae.metrics"):
                        metrics.update(self._metrics(hook, sae, step_input, dead))
                with record_function("sae.forward"), self.step_autocast:
                    loss, _, acts, _, dropped_frac = training_forward(sae, step_input, dropout,
                                                                      self._dropout_generator(member),
                                                                      sparse=self.arch.sparse_decode)
                align = torch.zeros((), device=self.device)
                if lat.anchor is not None and self.chrono.alignment_weight > 0:
                    rescaled = getattr(sae.cfg, "rescale_acts_by_decoder_norm", False)  # what decode uses
                    with record_function("sae.alignment"):
                        align = alignment_loss(decoding_rows(sae.W_dec, rescaled), decoding_rows(lat.anchor, rescaled),
                                               lat.anchor_alive, acts.detach().pow(2).mean(0))
                    loss = loss + self.chrono.alignment_weight * align
                losses[hook] = losses.get(hook, 0.0) + loss
                firing.append((hook, lat, acts.detach(), len(x)))
                if with_metrics and member == 0:
                    metrics[K.chrono(hook, "alignment_loss")] = align.item()
                    metrics[K.chrono(hook, "alignment_share")] = (self.chrono.alignment_weight * align / loss).item()
                    metrics[K.chrono(hook, "dropped_frac")] = dropped_frac
        finite = self._finite({h: loss.detach() for h, loss in losses.items()})  # the same verdict on every rank
        with record_function("sae.count_firing"):
            for hook, lat, acts, n in firing:
                if finite[hook]:
                    self._count_firing(lat, acts, n)
        kept = [loss for h, loss in losses.items() if finite[h]]
        if kept:
            with record_function("sae.backward"):
                sum(kept).backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        d.average_grads(params)
        with record_function("sae.grad_finite"):
            finite = self._finite_grads(losses, finite)
        for hook in (h for h in losses if not finite[h]):  # a non-finite loss or gradient: skip this hook's update
            for p in (p for s in self._members(hook) for p in s.parameters()):
                p.grad = None  # Adam leaves a parameter without a gradient as it is
        with record_function("sae.optimizer"):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.n_steps += 1
        metrics.update(self._health(lm_step, finite, with_metrics))
        return metrics

    def _finite_grads(self, losses: dict, finite: dict[str, bool]) -> dict[str, bool]:
        """hook → whether its loss and every gradient of its SAEs are finite (on every rank)."""
        return self._finite({h: torch.stack([p.grad.detach().float().abs().sum() for s in self._members(h)
                                               for p in s.parameters() if p.grad is not None] or [torch.zeros(())])
                               .sum() for h in losses if finite[h]}) | {h: False for h in losses if not finite[h]}

    def _take_inputs(self, with_metrics: bool, metrics: dict) -> dict[str, torch.Tensor]:
        """hook → this update's SAE inputs: the captured activations less the norm outliers, scaled to mean norm
        √d_in (the norm and median estimates updated with them); the capture buffers are emptied."""
        d, inputs = self.dist, {}
        for hook in self.hook_points:
            st = self.state[hook]
            raw = self._captured[hook].tensor.float()  # a view of the buffer: used before the next capture
            self._captured[hook].clear()
            norms = raw.norm(dim=-1)
            median = d.cat(norms).median().item()  # over every rank's tokens: the same on all of them
            st.median_norm = median if st.median_norm is None else NORM_EMA * st.median_norm + (1 - NORM_EMA) * median
            outlier = self.outliers(hook, raw)
            raw, norms = raw[~outlier], norms[~outlier]
            st.masked += int(outlier.sum())
            norm_sum, count = d.sum_(torch.stack([norms.sum(), norms.new_tensor(float(len(norms)))]).double()).tolist()
            norm = norm_sum / max(count, 1.0)
            st.norm_ema = norm if st.norm_ema is None else NORM_EMA * st.norm_ema + (1 - NORM_EMA) * norm
            inputs[hook] = raw * self.scale(hook)
            if with_metrics:
                metrics[K.sae(hook, "masked_frac")] = st.masked / max(1, st.real)
                st.masked = st.real = 0
        return inputs

    def _finite(self, values: dict[str, torch.Tensor]) -> dict[str, bool]:
        """hook → whether its value is finite on every rank."""
        if not values:
            return {}
        flags = torch.tensor([float(torch.isfinite(v).all()) for v in values.values()], device=self.dist.comm_device)
        flags = self.dist.sum_(flags)
        return {h: bool(f == self.dist.world) for h, f in zip(values, flags.tolist())}

    def _health(self, lm_step: int, finite: dict[str, bool], with_metrics: bool) -> dict[str, float]:
        """Count skipped updates; retire a hook after sae.max_skipped_in_a_row in a row or with non-finite weights."""
        metrics = {}
        for hook, ok in finite.items():
            self.skipped_in_a_row[hook] = 0 if ok else self.skipped_in_a_row[hook] + 1
            self.skipped[hook] += not ok
            if with_metrics or not ok:
                metrics[K.sae(hook, "skipped_steps")] = self.skipped[hook]
            if ok:
                continue
            weights_finite = self._weights_finite(hook)
            if self.skipped_in_a_row[hook] > self.cfg.max_skipped_in_a_row or not weights_finite:
                metrics[K.sae(hook, K.SAE_RETIRED)] = lm_step
                self.retire(hook, lm_step, f"{self.skipped_in_a_row[hook]} non-finite updates in a row "
                                           f"(sae.max_skipped_in_a_row={self.cfg.max_skipped_in_a_row})"
                            if weights_finite else "its weights are no longer finite")
        return metrics

    def _weights_finite(self, hook: str) -> bool:
        return all(bool(torch.isfinite(v).all()) for s in self._members(hook) for v in s.state_dict().values()
                   if v.is_floating_point())  # parameters and buffers (BatchTopK's threshold)

    def retire(self, hook: str, lm_step: int, why: str) -> None:
        """Take the hook's SAEs out of the run: nothing is captured, trained, evaluated or written for them again."""
        if hook in self.hook_points:
            self.hook_points.remove(hook)
            self._captured[hook].clear()
            self.retired[hook] = lm_step
            which = f"variant {self.name}'s SAE" if self.name else "SAE"
            others = " (the run's own SAE at this hook included)" if self.name else ""
            warnings.warn(f"{which} at {hook} retired at step {lm_step}: {why}; the LM and the other SAEs go on{others}",
                          stacklevel=2)

    @torch.no_grad()
    def _init_b_dec(self, hook: str, x: torch.Tensor) -> None:
        """Set every SAE's decoder bias at this hook to the mean of the first step's (scaled, kept) activations,
        over all ranks. A pretrained LM's residual stream carries a large constant component (Gemma 3 270M: a few
        "massive" dimensions hold most of the norm on every token); from b_dec = 0, Adam at the SAE's LR needs far
        more steps than a short run has to reach it, and FVE stays negative (measured: −7.3 at step 10 of
        demo-gemma)."""
        count = torch.tensor([float(len(x))], dtype=torch.float64, device=x.device)
        total = self.dist.sum_(torch.cat([x.double().sum(0), count]))
        mean = (total[:-1] / total[-1].clamp(min=1)).to(x.dtype)
        for sae in self._members(hook):
            sae.b_dec.copy_(mean)

    def _count_firing(self, lat: LatentState, acts: torch.Tensor, n: int) -> None:
        fires = self.dist.sum_(torch.stack([(acts != 0).sum(0).float(), acts.sum(0)]))  # [2, F], all ranks' tokens
        n_tokens = int(self.dist.sum_(torch.tensor([float(n)], device=self.dist.comm_device)).item())
        lat.tokens_since_fired += n_tokens
        lat.tokens_since_fired[fires[0] > 0] = 0
        lat.fire_count += fires[0]
        lat.act_sum += fires[1]
        lat.tokens_seen += n_tokens

    @torch.no_grad()
    def _metrics(self, hook: str, sae, step_input: TrainStepInput, dead: torch.Tensor) -> dict[str, float]:
        _, losses, acts, out, _ = training_forward(sae, step_input, 0.0, None, update_state=False,
                                                   sparse=self.arch.sparse_decode)
        key = self.arch.sparsity_loss
        sparsity = losses[key].item() if key in losses else l0(acts)
        values = {"mse": losses["mse_loss"].item(), "sparsity": sparsity,
                  "fve": fraction_of_variance_explained(step_input.sae_in, out), "l0": l0(acts),
                  "dead_frac": dead.float().mean().item()}
        return {K.sae(hook, name): values[name] for name in K.SAE_STEP}

    # ---- at each checkpoint: drift, anchors
    def alive(self, hook: str, member: int = 0) -> torch.Tensor:
        return self.latents[hook, member].tokens_since_fired < self.cfg.dead_window

    def _since_anchor(self, hook: str, member: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(decoder rows now, at the last checkpoint) of the member's latents alive at both; None before one."""
        lat = self.latents[hook, member]
        if lat.anchor is None:
            return None
        both = self.alive(hook, member) & lat.anchor_alive
        return self._members(hook)[member].W_dec.detach()[both], lat.anchor[both]

    @torch.no_grad()
    def on_checkpoint(self) -> dict[str, float]:
        """Drift against the previous checkpoint's decoder over latents alive at both (a dead row never moves);
        the cross-seed floor, and the seed baseline's own matched drift; then the current decoder becomes the
        new anchor."""
        metrics = {}
        for name, variant in self.variants.items():
            metrics.update({K.variant(name, k): v for k, v in variant.on_checkpoint().items()})
        if self.n_steps == 0:  # never trained (a variant without the warm-up, at step 0): its init is no anchor
            return metrics
        for hook in list(self.hook_points):
            if not self._weights_finite(hook):  # restored non-finite: there is no drift to measure
                self.retire(hook, self.n_steps, "its weights are no longer finite")
                continue
            W, alive = self.saes[hook].W_dec.detach(), self.alive(hook)
            metrics[K.chrono(hook, "decoder_redundancy")] = decoder_redundancy(unit_rows(W[alive]))
            pairs = self._since_anchor(hook, 0)
            if pairs is not None:
                drift = decoder_drift(*pairs)
                metrics[K.chrono(hook, "mmcs")] = drift["mmcs"]
                metrics[K.chrono(hook, "self_match_frac")] = drift["self_match_frac"]
                metrics[K.chrono(hook, "hungarian_mcs")] = matched_similarity(*pairs)
            if hook in self.previous:  # the encoder's rows (W_enc columns), matched as the decoder's, same latents
                both = alive & self.latents[hook, 0].anchor_alive
                metrics[K.chrono(hook, "hungarian_mcs_encoder")] = matched_similarity(
                    self.saes[hook].W_enc.detach().T[both], self.previous[hook].W_enc.detach().T[both])
            self.previous[hook] = self.inference_sae(hook).requires_grad_(False)
            if hook in self.baselines:
                other = self.baselines[hook].W_dec.detach()[self.alive(hook, 1)]
                metrics[K.chrono(hook, "cross_seed_mcs")] = matched_similarity(W[alive], other)
                pairs = self._since_anchor(hook, 1)
                if pairs is not None:  # the same drift for the other seed: how much drift varies by SAE init
                    metrics[K.chrono(hook, "hungarian_mcs_seed_baseline")] = matched_similarity(*pairs)
            for member, sae in enumerate(self._members(hook)):
                self.latents[hook, member].anchor = sae.W_dec.detach().clone()
                self.latents[hook, member].anchor_alive = self.alive(hook, member)
        return metrics

    def feature_stats(self, hook: str) -> dict[str, torch.Tensor]:
        """Per-latent statistics since the last checkpoint: unit decoder rows, firing frequency, mean activation
        when firing; and the number of tokens they cover."""
        lat, sae = self.latents[hook, 0], self.saes[hook]
        return {"decoder_unit": unit_rows(sae.W_dec.detach()), "firing_frequency": lat.fire_count / max(1, lat.tokens_seen),
                "mean_activation": lat.act_sum / lat.fire_count.clamp(min=1), "tokens": lat.tokens_seen}

    def reset_feature_stats(self) -> None:
        """After each checkpoint's artifacts (on every rank): firing statistics restart for the next interval."""
        for lat in self.latents.values():
            lat.fire_count.zero_()
            lat.act_sum.zero_()
            lat.tokens_seen = 0
        for variant in self.variants.values():
            variant.reset_feature_stats()

    # ---- resume
    def state_dict(self) -> dict:
        return {
            "saes": {h: s.state_dict() for h, s in self.saes.items()},
            "baselines": {h: s.state_dict() for h, s in self.baselines.items()},
            "optimizer": self.optimizer.state_dict(),
            "state": {h: vars(st) for h, st in self.state.items()},
            "latents": {f"{h}#{m}": vars(lat) for (h, m), lat in self.latents.items()},
            "n_steps": self.n_steps,
            "health": {"skipped": self.skipped, "skipped_in_a_row": self.skipped_in_a_row, "retired": self.retired},
            "variants": {name: variant.state_dict() for name, variant in self.variants.items()},
            "panel_latents": self.panel_latents,
            "previous": {h: s.state_dict() for h, s in self.previous.items()},
            **({"crosscoder": self.crosscoder.state_dict()} if self.crosscoder is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        for saes, key in ((self.saes, "saes"), (self.baselines, "baselines")):
            for hook, sae in saes.items():
                sae.load_state_dict(state[key][hook])
        self.optimizer.load_state_dict(state["optimizer"])
        self.state = {h: HookState(**s) for h, s in state["state"].items()}
        self.latents = {(k.rsplit("#", 1)[0], int(k.rsplit("#", 1)[1])): LatentState(**v)
                        for k, v in state["latents"].items()}
        self.n_steps = state["n_steps"]
        health = state.get("health", {})  # absent in checkpoints written before 2026-12-01
        self.skipped = {h: health.get("skipped", {}).get(h, 0) for h in self.all_hooks}
        self.skipped_in_a_row = {h: health.get("skipped_in_a_row", {}).get(h, 0) for h in self.all_hooks}
        self.retired = dict(health.get("retired", {}))
        self.hook_points = [h for h in self.all_hooks if h not in self.retired]
        self.panel_latents = dict(state.get("panel_latents", {}))  # absent before 2026-12-01 (second session)
        self.previous = {}
        for hook, previous in state.get("previous", {}).items():  # absent before 2026-12-01 (fourth session)
            self.previous[hook] = copy.deepcopy(self.saes[hook]).requires_grad_(False)
            self.previous[hook].load_state_dict(previous)
        if self.crosscoder is not None:
            self.crosscoder.load_state_dict(state["crosscoder"])
        for name, variant in self.variants.items():
            variant.load_state_dict(state["variants"][name])
            variant.state = self.state  # shared again (the load replaced both dicts)


def warm_up(bank: SAEBank, model, rows, n_tokens: int, micro_batch: int, grad_accum: int, autocast,
            progress: bool = False) -> dict[str, float]:
    """sae.warmup_tokens: before fine-tuning starts, train the bank (and its variants) on the step-0 model's
    activations, so that drift between the first checkpoints measures what the LM's change does to the features
    and not the SAE still converging from its random init. Forward only, stopped after the deepest hooked block;
    `rows`: the training mixture on a stream of its own (the LM's stream and every RNG it uses are untouched).
    Each rank takes its share of each global micro-batch, as batches.py does, and the SAEs step once per
    `grad_accum` forwards — the tokens of one LM update, as in training — all ranks in lockstep.
    Returns the last step's SAE metrics, the tokens the SAEs trained on (masked positions left out; over all
    ranks) and the time it took."""
    start, d = time.perf_counter(), bank.dist
    hooked = bank.hook_points + ([bank.crosscoder.hook] if bank.crosscoder is not None else [])
    stop_at = max(hooks.layer_of(h) for h in hooked) + 1
    first = next(rows)
    rows = itertools.chain([first], rows)
    per_step = micro_batch * d.world * len(first.tokens) * grad_accum  # global tokens per SAE step (padding included)
    steps = max(1, math.ceil(n_tokens / per_step))
    metrics, seen = {}, 0
    for step in tqdm(range(steps), desc="sae warm-up", disable=not progress, dynamic_ncols=True):
        for _ in range(grad_accum):
            global_rows = [next(rows) for _ in range(micro_batch * d.world)]
            batch = {k: v.to(bank.device) for k, v in collate(global_rows[d.rank::d.world]).items()}
            with torch.no_grad(), autocast, bank.capture(model, batch["tokens"], batch["source_index"]):
                model(batch["tokens"], stop_at_layer=stop_at)
        captured = torch.tensor(float(len(bank._captured[bank.hook_points[0]])), device=d.comm_device)
        seen += int(d.sum_(captured).item())
        metrics = bank.step(0, with_metrics=step == steps - 1, warming=step * per_step)
    return {**metrics, K.SAE_WARMUP_TOKENS: float(seen), K.SAE_WARMUP_S: time.perf_counter() - start}
