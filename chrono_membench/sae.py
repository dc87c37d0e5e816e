"""SAEs that train alongside the LM (DESIGN.md §4): one sae-lens training SAE per hook point.

The LM forward of every micro-step captures the hooked activations (detached: the SAEs never touch the LM's
gradients, and there is no second LM forward). After the LM's optimiser step, each SAE takes one step on
everything captured for that update, with its own Adam. The SAE architecture comes from sae-lens's registry
(`topk`, `standard`, `jumprelu`, `batchtopk`); this module only adds what "alongside" needs:
running activation-norm normalisation, temporal dropout on the latents (through sae-lens's own
`hook_sae_acts_post`), the feature-alignment loss to the last checkpoint's decoder, and dead-latent tracking.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from sae_lens.registry import get_sae_training_class
from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput

from chrono_membench.chrono.alignment import alignment_loss, decoder_drift, hungarian_similarity, unit_rows
from chrono_membench.chrono.sae_metrics import ce_loss_recovered, fraction_of_variance_explained, l0
from chrono_membench.chrono.temporal_dropout import inverted_dropout, temporal_dropout_rate
from chrono_membench.config import Config
from chrono_membench.distributed import ALONE, Dist
from chrono_membench.logging import safe_name

NORM_EMA = 0.99  # running mean-norm estimate: slow enough to be stable, fast enough to follow the LM's drift
HUNGARIAN_MAX_LATENTS = 8192  # linear_sum_assignment is O(F³): beyond this the matched cosine is not computed
SPARSITY_LOSS_KEYS = ("l1_loss", "l0_loss")  # sae-lens's names for the architecture's sparsity penalty


def default_hook_points(n_layers: int) -> list[str]:
    return [f"blocks.{n_layers // 2}.hook_resid_post"]


def _sae_config_kwargs(cfg: Config) -> dict:
    arch = cfg.sae.architecture
    if arch in ("topk", "batchtopk"):
        return {"k": cfg.sae.k}
    if arch == "standard":
        return {"l1_coefficient": cfg.sae.l1_coefficient}
    if arch == "jumprelu":
        return {"l0_coefficient": cfg.sae.l1_coefficient}
    raise ValueError(f"sae.architecture={arch!r}")


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
    def __init__(self, cfg: Config, d_model: int, n_layers: int, device: torch.device, seed: int = 0,
                 dist: Dist = ALONE):
        self.cfg, self.device, self.dist = cfg, device, dist
        self.hook_points = list(cfg.sae.hook_points) or default_hook_points(n_layers)
        for hook in self.hook_points:
            layer = hook.split(".")[1] if hook.startswith("blocks.") else ""
            if not (hook.endswith("hook_resid_post") and layer.isdigit() and int(layer) < n_layers):
                raise ValueError(
                    f"sae.hook_points: {hook!r} is not blocks.<layer>.hook_resid_post with layer < {n_layers}"
                )
        sae_cls, sae_cfg_cls = get_sae_training_class(cfg.sae.architecture)
        self.saes: dict[str, torch.nn.Module] = {}
        with torch.random.fork_rng(devices=[]):  # SAE init must not shift the global RNG the LM run uses
            torch.manual_seed(seed)
            for hook in self.hook_points:
                sae_cfg = sae_cfg_cls(d_in=d_model, d_sae=cfg.sae.expansion * d_model, device=str(device),
                                      **_sae_config_kwargs(cfg))
                sae_cfg.metadata.hook_name = hook
                self.saes[hook] = sae_cls(sae_cfg).to(device)
        self.optimizer = torch.optim.Adam([p for s in self.saes.values() for p in s.parameters()], lr=cfg.sae.lr)
        # Temporal dropout's own RNG. The same seed on every rank: each rank draws equal-sized masks for its own
        # tokens, so the generators stay identical and one saved state resumes them all exactly.
        self.generator = torch.Generator(device=device).manual_seed(seed + 1)
        d_sae = cfg.sae.expansion * d_model
        self.state = {
            h: HookState(tokens_since_fired=torch.zeros(d_sae, dtype=torch.long, device=device),
                         fire_count=torch.zeros(d_sae, device=device), act_sum=torch.zeros(d_sae, device=device))
            for h in self.hook_points
        }
        self.previous_decoder: dict[str, torch.Tensor] = {}  # decoder at the previous checkpoint, for drift
        self._captured: dict[str, list[torch.Tensor]] = {h: [] for h in self.hook_points}
        self.n_steps = 0

    # ---- capture during the LM forward
    @contextmanager
    def capture(self, model):
        """Store detached activations of every hook point during the LM forward inside this context."""
        def saver(name):  # keyed by our name: the bridge reports the canonical alias (blocks.L.hook_out)
            return lambda tensor, hook: self._captured[name].append(tensor.detach().flatten(0, -2))

        with model.hooks(fwd_hooks=[(h, saver(h)) for h in self.hook_points]):
            yield

    def discard_captured(self) -> None:
        """The LM update was skipped (non-finite): its activations are not trained on."""
        for captured in self._captured.values():
            captured.clear()

    def scale(self, hook: str) -> float:
        """Multiply raw activations by this so their mean norm is √d_in (the scale sae-lens trains at)."""
        ema = self.state[hook].norm_ema
        return 1.0 if ema is None else self.saes[hook].cfg.d_in ** 0.5 / ema

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
        p = temporal_dropout_rate(lm_step, self.cfg.train.max_steps, self.cfg.chrono.dropout_p_max)
        metrics: dict[str, float] = {"chrono/temporal_dropout_rate": p} if with_metrics else {}
        total_loss = 0.0
        for hook, sae in self.saes.items():
            st = self.state[hook]
            raw = torch.cat(self._captured[hook]).float()
            self._captured[hook].clear()
            norm = d.mean(raw.norm(dim=-1).mean())
            st.norm_ema = norm if st.norm_ema is None else NORM_EMA * st.norm_ema + (1 - NORM_EMA) * norm
            x = raw * self.scale(hook)
            dead = st.tokens_since_fired >= self.cfg.sae.dead_window
            if with_metrics:  # measured before the update, without dropout: the SAE as it is at this step
                metrics.update(self._metrics(hook, sae, x, dead))
            dropped: dict = {}
            step_input = TrainStepInput(sae_in=x, coefficients=self._coefficients(sae), dead_neuron_mask=dead,
                                        n_training_steps=self.n_steps, is_logging_step=with_metrics)
            with sae.hooks(fwd_hooks=[("hook_sae_acts_post", self._dropout_hook(p, dropped))] if p > 0 else []):
                out = sae.training_forward_pass(step_input)
            loss = out.loss
            align = torch.zeros((), device=self.device)
            if st.anchor_unit is not None and self.cfg.chrono.alignment_weight > 0:
                align = alignment_loss(sae.W_dec, st.anchor_unit, st.anchor_alive)
                loss = loss + self.cfg.chrono.alignment_weight * align
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
                metrics[f"chrono/{hook}/alignment_loss"] = align.item()
                metrics[f"chrono/{hook}/dropped_frac"] = dropped.get("frac", 0.0)
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
        return {
            f"sae/{hook}/mse": out.losses["mse_loss"].item(),
            f"sae/{hook}/sparsity": sparsity,
            f"sae/{hook}/fve": fraction_of_variance_explained(x, out.sae_out),
            f"sae/{hook}/l0": l0(out.feature_acts),
            f"sae/{hook}/dead_frac": dead.float().mean().item(),
        }

    # ---- at eval: CE-loss recovered with the SAE spliced in
    @torch.no_grad()
    def ce_recovered(self, model, tokens: torch.Tensor, loss_fn, ce_clean: float) -> dict[str, float]:
        """loss_fn(logits) → mean CE. Reconstruction and zero-ablation spliced in at each hook in turn."""
        out = {}
        for hook, sae in self.saes.items():
            s = self.scale(hook)
            splice = lambda act, hook, sae=sae, s=s: sae(act.float() * s).to(act.dtype) / s  # noqa: E731
            zero = lambda act, hook: torch.zeros_like(act)  # noqa: E731
            ce_sae = loss_fn(model.run_with_hooks(tokens, fwd_hooks=[(hook, splice)]))
            ce_zero = loss_fn(model.run_with_hooks(tokens, fwd_hooks=[(hook, zero)]))
            out[f"sae/{hook}/ce_recovered"] = ce_loss_recovered(ce_clean, ce_sae, ce_zero)
        return out

    # ---- at each checkpoint: drift, anchors, artifacts
    @torch.no_grad()
    def on_checkpoint(self) -> dict[str, float]:
        """Drift against the previous checkpoint's decoder; then the current decoder becomes the new anchor."""
        metrics = {}
        for hook, sae in self.saes.items():
            st, W = self.state[hook], sae.W_dec.detach()
            if hook in self.previous_decoder:
                drift = decoder_drift(W, self.previous_decoder[hook])
                metrics[f"chrono/{hook}/mmcs"] = drift["mmcs"]
                metrics[f"chrono/{hook}/self_match_frac"] = drift["self_match_frac"]
                if self.cfg.chrono.alignment_weight == 0 and len(W) <= HUNGARIAN_MAX_LATENTS:
                    metrics[f"chrono/{hook}/hungarian_mcs"] = hungarian_similarity(W, self.previous_decoder[hook])
            self.previous_decoder[hook] = W.clone()
            st.anchor_unit = unit_rows(W).clone()
            st.anchor_alive = st.tokens_since_fired < self.cfg.sae.dead_window
        return metrics

    def write_artifacts(self, directory: Path, save_sae: bool, save_features: bool) -> list[tuple[Path, str, str]]:
        """sae-lens inference SAEs (activation scaling folded in, so they take raw activations) and feature
        representations (fp16 safetensors). Returns (path, artifact name, artifact type) to log."""
        written = []
        for hook, sae in self.saes.items():
            st, name = self.state[hook], safe_name(hook)
            if save_sae:
                inference = copy.deepcopy(sae)
                inference.fold_activation_norm_scaling_factor(self.scale(hook))
                inference.save_inference_model(directory / f"sae_{name}")
                written.append((directory / f"sae_{name}", f"sae-{name}", "sae"))
            if save_features:
                n = max(1, st.tokens_seen)
                path = directory / f"features_{name}.safetensors"
                save_file({
                    "decoder_unit": unit_rows(sae.W_dec.detach()).half().cpu().contiguous(),
                    "firing_frequency": (st.fire_count / n).half().cpu(),
                    "mean_activation": (st.act_sum / st.fire_count.clamp(min=1)).half().cpu(),
                }, str(path), metadata={"hook": hook, "tokens": str(st.tokens_seen)})
                written.append((path, f"features-{name}", "features"))
        return written

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
