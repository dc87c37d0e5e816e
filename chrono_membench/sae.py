"""SAEs that train alongside the LM (DESIGN.md §4): one sae-lens training SAE per hook point.

The LM forward of every micro-step captures the hooked activations (detached: the SAEs never touch the LM's
gradients, and there is no second LM forward; the bank itself runs no LM forward and writes no files).
After the LM's optimiser step, each SAE takes one step on everything captured for that update, with its own
Adam. The SAE architecture comes from sae-lens's registry (`topk`, `standard`, `jumprelu`, `batchtopk`); this
module only adds what "alongside" needs: running activation-norm normalisation, temporal dropout on the
latents (through sae-lens's own `hook_sae_acts_post`), the feature-alignment loss to the last checkpoint's
decoder, and dead-latent tracking.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from sae_lens.registry import get_sae_training_class
from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput

from chrono_membench import hooks
from chrono_membench import metric_keys as K
from chrono_membench.chrono.alignment import alignment_loss, decoder_drift, hungarian_similarity, unit_rows
from chrono_membench.chrono.sae_metrics import fraction_of_variance_explained, l0
from chrono_membench.chrono.temporal_dropout import inverted_dropout, temporal_dropout_rate
from chrono_membench.config import ChronoConfig, SAEConfig
from chrono_membench.distributed import ALONE, Dist

NORM_EMA = 0.99  # running mean-norm estimate: slow enough to be stable, fast enough to follow the LM's drift
HUNGARIAN_MAX_LATENTS = 8192  # linear_sum_assignment is O(F³): beyond this the matched cosine is not computed
SPARSITY_LOSS_KEYS = ("l1_loss", "l0_loss")  # sae-lens's names for the architecture's sparsity penalty


def _sae_config_kwargs(cfg: SAEConfig) -> dict:
    if cfg.architecture in ("topk", "batchtopk"):
        return {"k": cfg.k}
    if cfg.architecture == "standard":
        return {"l1_coefficient": cfg.l1_coefficient}
    return {"l0_coefficient": cfg.l1_coefficient}  # jumprelu


@dataclass
class HookState:
    """Everything about one hook point's SAE besides its weights, saved with every checkpoint."""
    norm_ema: float | None = None  # running mean ‖x‖ of raw activations
    tokens_since_fired: torch.Tensor | None = None  # [F] int64
    anchor_unit: torch.Tensor | None = None  # [F, D] unit decoder rows at the last checkpoint
    anchor_alive: torch.Tensor | None = None  # [F] bool, latents alive at the last checkpoint
    fire_count: torch.Tensor | None = None  # [F] tokens on which each latent fired, since the last checkpoint
    act_sum: torch.Tensor | None = None  # [F] sum of activations, since the last checkpoint
    tokens_seen: int = 0
    last_metrics: dict = field(default_factory=dict)


class SAEBank:
    """widths: hook point → activation width (hooks.activation_widths). d_sae = sae.expansion × width."""

    def __init__(self, cfg: SAEConfig, chrono: ChronoConfig, max_steps: int, widths: dict[str, int],
                 device: torch.device, seed: int = 0, dist: Dist = ALONE):
        self.cfg, self.chrono, self.max_steps = cfg, chrono, max_steps
        self.device, self.dist = device, dist
        self.hook_points = list(widths)
        sae_cls, sae_cfg_cls = get_sae_training_class(cfg.architecture)
        self.saes: dict[str, torch.nn.Module] = {}
        with torch.random.fork_rng(devices=[]):  # SAE init must not shift the global RNG the LM run uses
            torch.manual_seed(seed)
            for hook, width in widths.items():
                sae_cfg = sae_cfg_cls(d_in=width, d_sae=cfg.expansion * width, device=str(device),
                                      **_sae_config_kwargs(cfg))
                sae_cfg.metadata.hook_name = hook
                self.saes[hook] = sae_cls(sae_cfg).to(device)
        self.optimizer = torch.optim.Adam([p for s in self.saes.values() for p in s.parameters()], lr=cfg.lr)
        # Temporal dropout's own RNG. The same seed on every rank: each rank draws equal-sized masks for its own
        # tokens, so the generators stay identical and one saved state resumes them all exactly.
        self.generator = torch.Generator(device=device).manual_seed(seed + 1)
        self.state = {
            h: HookState(tokens_since_fired=torch.zeros(s.cfg.d_sae, dtype=torch.long, device=device),
                         fire_count=torch.zeros(s.cfg.d_sae, device=device), act_sum=torch.zeros(s.cfg.d_sae, device=device))
            for h, s in self.saes.items()
        }
        self.previous_decoder: dict[str, torch.Tensor] = {}  # decoder at the previous checkpoint, for drift
        self._captured: dict[str, list[torch.Tensor]] = {h: [] for h in self.hook_points}
        self.n_steps = 0

    # ---- capture during the LM forward
    @contextmanager
    def capture(self, model, mask: torch.Tensor | None = None):
        """Keep the detached activations of every hook point (the tokens where mask [batch, pos] is true) from
        the LM forwards inside this context, for the next step()."""
        with hooks.capture(model, self.hook_points, mask) as captured:
            yield
        for hook, tensors in captured.items():
            self._captured[hook] += tensors

    def discard_captured(self) -> None:
        """The LM update was skipped (non-finite): its activations are not trained on."""
        for captured in self._captured.values():
            captured.clear()

    def scale(self, hook: str) -> float:
        """Multiply raw activations by this so their mean norm is √d_in (the scale sae-lens trains at)."""
        ema = self.state[hook].norm_ema
        return 1.0 if ema is None else self.saes[hook].cfg.d_in ** 0.5 / ema

    @torch.no_grad()
    def encode(self, hook: str, raw: torch.Tensor) -> torch.Tensor:
        """Latent activations [tokens, d_sae] of raw activations [tokens, width] (scaled as in training)."""
        return self.saes[hook].encode(raw.float() * self.scale(hook))

    @torch.no_grad()
    def reconstruct(self, hook: str, raw: torch.Tensor) -> torch.Tensor:
        """The SAE's reconstruction of raw activations [tokens, width], in the raw activations' units."""
        s = self.scale(hook)
        return self.saes[hook](raw.float() * s) / s

    @torch.no_grad()
    def inference_sae(self, hook: str):
        """A copy of the SAE with the activation scaling folded in: it takes raw activations (what is exported)."""
        inference = copy.deepcopy(self.saes[hook])
        inference.fold_activation_norm_scaling_factor(self.scale(hook))
        return inference

    def _coefficients(self, sae) -> dict[str, float]:
        out = {}
        for name, c in sae.get_coefficients().items():
            if isinstance(c, TrainCoefficientConfig):
                c = c.value * min(1.0, (self.n_steps + 1) / c.warm_up_steps) if c.warm_up_steps else c.value
            out[name] = c
        return out

    # ---- one SAE step after each LM update
    def step(self, lm_step: int, with_metrics: bool) -> dict[str, float]:
        """Train every SAE one step on the activations captured since the last call; return metrics if asked.
        Under torchrun each rank holds its own tokens' activations: the norm estimate, the firing statistics
        and the gradients are reduced over ranks (so the SAEs stay identical) and the metrics averaged."""
        d = self.dist
        p = temporal_dropout_rate(lm_step, self.max_steps, self.chrono.dropout_p_max)
        metrics: dict[str, float] = {K.DROPOUT_RATE: p} if with_metrics else {}
        total_loss = 0.0
        for hook, sae in self.saes.items():
            st = self.state[hook]
            raw = torch.cat(self._captured[hook]).float()
            self._captured[hook].clear()
            norm = d.mean(raw.norm(dim=-1).mean())
            st.norm_ema = norm if st.norm_ema is None else NORM_EMA * st.norm_ema + (1 - NORM_EMA) * norm
            x = raw * self.scale(hook)
            dead = st.tokens_since_fired >= self.cfg.dead_window
            if with_metrics:  # measured before the update, without dropout: the SAE as it is at this step
                metrics.update(self._metrics(hook, sae, x, dead))
            dropped: dict = {}
            step_input = TrainStepInput(sae_in=x, coefficients=self._coefficients(sae), dead_neuron_mask=dead,
                                        n_training_steps=self.n_steps, is_logging_step=with_metrics)
            with sae.hooks(fwd_hooks=[("hook_sae_acts_post", self._dropout_hook(p, dropped))] if p > 0 else []):
                out = sae.training_forward_pass(step_input)
            loss = out.loss
            align = torch.zeros((), device=self.device)
            if st.anchor_unit is not None and self.chrono.alignment_weight > 0:
                align = alignment_loss(sae.W_dec, st.anchor_unit, st.anchor_alive)
                loss = loss + self.chrono.alignment_weight * align
            total_loss = total_loss + loss
            with torch.no_grad():
                acts = dropped.get("acts", out.feature_acts)
                fires = d.sum_(torch.stack([(acts != 0).sum(0).float(), acts.sum(0)]))  # [2, F], all ranks' tokens
                n_tokens = len(x) * d.world
                st.tokens_since_fired += n_tokens
                st.tokens_since_fired[fires[0] > 0] = 0
                st.fire_count += fires[0]
                st.act_sum += fires[1]
                st.tokens_seen += n_tokens
            if with_metrics:
                metrics[K.chrono(hook, "alignment_loss")] = align.item()
                metrics[K.chrono(hook, "dropped_frac")] = dropped.get("frac", 0.0)
        total_loss.backward()
        d.average_grads(p for group in self.optimizer.param_groups for p in group["params"])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.n_steps += 1
        return d.mean_dict(metrics)

    def _dropout_hook(self, p: float, record: dict):
        """Temporal dropout on sae-lens's own hook_sae_acts_post, so its training_forward_pass decodes the
        dropped latents; `record` keeps the undropped activations and the realised dropped fraction."""
        def drop(acts, hook):
            record["acts"] = acts.detach()  # firing statistics describe the encoder, not the dropout
            out = inverted_dropout(acts, p, self.generator)
            record["frac"] = ((acts != 0) & (out == 0)).sum().item() / max(1, (acts != 0).sum().item())
            return out
        return drop

    @torch.no_grad()
    def _metrics(self, hook: str, sae, x: torch.Tensor, dead: torch.Tensor) -> dict[str, float]:
        out = sae.training_forward_pass(TrainStepInput(
            sae_in=x, coefficients=self._coefficients(sae), dead_neuron_mask=dead,
            n_training_steps=self.n_steps, is_logging_step=True))
        sparsity = next((out.losses[k].item() for k in SPARSITY_LOSS_KEYS if k in out.losses), l0(out.feature_acts))
        values = {"mse": out.losses["mse_loss"].item(), "sparsity": sparsity,
                  "fve": fraction_of_variance_explained(x, out.sae_out), "l0": l0(out.feature_acts),
                  "dead_frac": dead.float().mean().item()}
        return {K.sae(hook, name): values[name] for name in K.SAE_STEP}

    # ---- at each checkpoint: drift, anchors, artifacts
    @torch.no_grad()
    def on_checkpoint(self) -> dict[str, float]:
        """Drift against the previous checkpoint's decoder; then the current decoder becomes the new anchor."""
        metrics = {}
        for hook, sae in self.saes.items():
            st, W = self.state[hook], sae.W_dec.detach()
            if hook in self.previous_decoder:
                drift = decoder_drift(W, self.previous_decoder[hook])
                metrics[K.chrono(hook, "mmcs")] = drift["mmcs"]
                metrics[K.chrono(hook, "self_match_frac")] = drift["self_match_frac"]
                if self.chrono.alignment_weight == 0 and len(W) <= HUNGARIAN_MAX_LATENTS:
                    metrics[K.chrono(hook, "hungarian_mcs")] = hungarian_similarity(W, self.previous_decoder[hook])
            self.previous_decoder[hook] = W.clone()
            st.anchor_unit = unit_rows(W).clone()
            st.anchor_alive = st.tokens_since_fired < self.cfg.dead_window
        return metrics

    def feature_stats(self, hook: str) -> dict[str, torch.Tensor]:
        """Per-latent statistics since the last checkpoint: unit decoder rows, firing frequency, mean activation
        when firing; and the number of tokens they cover."""
        st, sae = self.state[hook], self.saes[hook]
        return {"decoder_unit": unit_rows(sae.W_dec.detach()), "firing_frequency": st.fire_count / max(1, st.tokens_seen),
                "mean_activation": st.act_sum / st.fire_count.clamp(min=1), "tokens": st.tokens_seen}

    def reset_feature_stats(self) -> None:
        """After each checkpoint's artifacts (on every rank): firing statistics restart for the next interval."""
        for st in self.state.values():
            st.fire_count.zero_()
            st.act_sum.zero_()
            st.tokens_seen = 0

    # ---- resume
    def state_dict(self) -> dict:
        return {
            "saes": {h: s.state_dict() for h, s in self.saes.items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "state": {h: vars(st) for h, st in self.state.items()},
            "previous_decoder": self.previous_decoder,
            "n_steps": self.n_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        for hook, sae in self.saes.items():
            sae.load_state_dict(state["saes"][hook])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.state = {h: HookState(**s) for h, s in state["state"].items()}
        self.previous_decoder = state["previous_decoder"]
        self.n_steps = state["n_steps"]
