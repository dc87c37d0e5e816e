"""Every logged metric's key, built in one place: the trainer, the evaluation, plan.py's storage arithmetic and
the analysis scripts all use these helpers, so a new metric is added here (its name in a tuple) and where it is
computed. Keys are `<group>/<name>` or `<group>/<hook point>/<name>`; the groups:

    train/  the optimiser step        val/  validation loss             data/  stream statistics
    sae/    SAE quality per hook       chrono/  time-related signals    mem/   memorisation per probe column
    time/   wall time of eval parts    logging/  wandb upload health
"""

from __future__ import annotations

TRAIN = ("loss", "ppl", "lr", "grad_norm", "tokens_per_s", "skipped_steps")  # + "mfu" where a peak is known
VAL = ("loss", "ppl")
SAE_STEP = ("mse", "sparsity", "fve", "l0", "dead_frac")  # at the chrono cadence, on the step's kept tokens
SAE_MASK = ("masked_frac",)  # at the chrono cadence: the share of real tokens the SAE mask left out
# at eval, the core panel on sae.eval_tokens validation tokens (sae-lens / SAEBench definitions)
SAE_EVAL = ("ce_recovered", "kl_div_score", "ce_delta", "l2_ratio", "eval_fve", "eval_l0")
CHRONO_STEP = ("alignment_loss", "alignment_share", "dropped_frac")  # per hook, at the chrono cadence
DRIFT = ("mmcs", "self_match_frac", "hungarian_mcs")  # per hook, at each checkpoint after the first
CROSS_SEED = ("cross_seed_mcs",)  # per hook, at each checkpoint, with sae.seed_baseline
PURITY = ("temporal_purity", "temporal_purity_gt50", "source_purity", "source_purity_share_norm")  # per hook, eval
MEM_SCORES = ("exact_match", "token_match", "loss")  # per probe column, at eval
TIMING = ("time/eval_s", "time/attn_metrics_s", "train/tokens_per_s")  # wall-clock: differ between identical runs
DROPOUT_RATE = "chrono/temporal_dropout_rate"
ATTN_DIVERSITY_MEAN, ATTN_ENTROPY_MEAN = "chrono/attn_diversity/mean", "chrono/attn_entropy/mean"
ATTN_TRAIN_TERM = "chrono/attn_diversity/train_term"
MEM_LOSS_GAP = "mem/loss_gap"


def train(name: str) -> str:
    return f"train/{name}"


def val(name: str) -> str:
    return f"val/{name}"


def sae(hook: str, name: str) -> str:
    return f"sae/{hook}/{name}"


def chrono(hook: str, name: str) -> str:
    return f"chrono/{hook}/{name}"


def attn_layer(layer: int) -> str:
    return f"chrono/attn_diversity/layer_{layer}"


def mem(score: str, column: str) -> str:
    return f"mem/{score}/{column}"


def canary(label: str) -> str:
    return f"mem/canary_exposure/{label}"


def data_stats(stats: dict) -> dict[str, float]:
    """The stream's statistics (MixtureStream.stats) as data/<stat>[/<source>] keys."""
    out = {}
    for key, value in stats.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        out.update({f"data/{key}" + (f"/{k}" if k is not None else ""): v for k, v in items})
    return out


def hook_of(key: str) -> str | None:
    """The hook point inside a per-hook key (sae/<hook>/fve → <hook>), or None."""
    parts = key.split("/")
    return parts[1] if len(parts) == 3 and parts[0] in ("sae", "chrono") and ".hook_" in parts[1] else None


# ---- what one run logs, for plan.py's storage arithmetic (and a test that compares it with a real run)
def chrono_step_keys(hooks: list[str], n_layers: int, diversity: bool) -> list[str]:
    keys = [DROPOUT_RATE, ATTN_DIVERSITY_MEAN, ATTN_ENTROPY_MEAN, "time/attn_metrics_s"]
    keys += [attn_layer(l) for l in range(n_layers)] + ([ATTN_TRAIN_TERM] if diversity else [])
    keys += [sae(h, n) for h in hooks for n in SAE_STEP + SAE_MASK]
    return keys + [chrono(h, n) for h in hooks for n in CHRONO_STEP]


def eval_keys(hooks: list[str], columns: list[str], canary_labels: list[str]) -> list[str]:
    keys = [val(n) for n in VAL] + ["time/eval_s"] + [sae(h, n) for h in hooks for n in SAE_EVAL]
    if columns:
        keys += [mem(s, c) for s in MEM_SCORES for c in columns] + [canary(l) for l in canary_labels]
        keys += [MEM_LOSS_GAP] if len(columns) > 1 else []
        keys += [chrono(h, n) for h in hooks for n in PURITY] if len(columns) > 1 else []
    return keys
