"""Every logged metric's key, built in one place: the trainer, the evaluation, plan.py's storage arithmetic and
the analysis scripts all use these helpers, so a new metric is added here (its name in a tuple) and where it is
computed. Keys are `<group>/<name>` or `<group>/<hook point>/<name>`; the groups:

    train/  the optimiser step        val/  validation loss             data/  stream statistics
    sae/    SAE quality per hook       chrono/  time-related signals    mem/   memorisation per probe column
    time/   wall time of eval parts    logging/  wandb upload health

An SAE variant (sae.variants: more SAEs per hook on the same captured activations) logs its SAEs' keys under
`variant/<name>/<key>`; variant_view turns a run's record into what a run of that variant alone would have logged.
"""

from __future__ import annotations

# + "mfu" where a peak is known, "peak_mem_gib" on CUDA
TRAIN = ("loss", "ppl", "lr", "grad_norm", "tokens_per_s", "skipped_steps", "data_wait_frac")
VAL = ("loss", "ppl")
SAE_STEP = ("mse", "sparsity", "fve", "l0", "dead_frac")  # at the chrono cadence, on the step's kept tokens
SAE_MASK = ("masked_frac",)  # at the chrono cadence: the share of real tokens the SAE mask left out
# at the chrono cadence and whenever one happens: SAE updates skipped (non-finite loss or gradient), in total;
SAE_HEALTH = ("skipped_steps",)
SAE_RETIRED = "retired_at_step"  # logged once, when an SAE leaves the run (sae.max_skipped_in_a_row, NaN weights)
# at eval, the core panel on sae.eval_tokens validation tokens (sae-lens / SAEBench definitions)
# and what temporal dropout is meant to change: co-firing of latents on those tokens (chrono/redundancy.py)
# (co-firing beside its shuffled-token null: the same densities on randomly permuted tokens; excess = observed − null)
SAE_EVAL = ("ce_recovered", "kl_div_score", "ce_delta", "l2_ratio", "eval_fve", "eval_l0", "cofiring_max_phi",
            "cofiring_max_phi_null", "cofiring_max_phi_excess")
CHRONO_STEP = ("alignment_loss", "alignment_share", "dropped_frac")  # per hook, at the chrono cadence
# per hook, at each checkpoint after the first (the encoder's rows matched as the decoder's are: hungarian_mcs_encoder)
DRIFT = ("mmcs", "self_match_frac", "hungarian_mcs", "hungarian_mcs_encoder")
REDUNDANCY = ("decoder_redundancy",)  # per hook, at each checkpoint: live-latent pairs with decoder cosine > 0.8
STABILITY = ("activation_stability",)  # per hook, at each eval after the first: per-latent correlation with the last
# per hook, at each eval after the first checkpoint: the last checkpoint's exported SAE on this model's activations
# (how much the LM's change since then breaks an SAE; the panel's own eval_fve / ce_recovered / kl_div_score)
PREVIOUS_SAE = ("previous_sae_fve", "previous_sae_ce_recovered", "previous_sae_kl_div_score")
CROSS_SEED = ("cross_seed_mcs", "hungarian_mcs_seed_baseline")  # per hook, at each checkpoint, with sae.seed_baseline
# per hook, at eval: observed, permutation null, excess = observed − null, the null's SD (the excess's resolution),
# the permutation p (pooled kinds); the number of columns used
PURITY = tuple(f"{kind}_purity{part}" for kind in ("temporal", "source", "temporal_stratified")
               for part in ("", "_null", "_excess", "_null_sd")) + ("temporal_purity_p", "source_purity_p",
                                                                    "temporal_purity_gt50", "purity_columns")
# per hook, at eval: latents selective for time (bucket columns) or source, Benjamini–Hochberg at chrono.fdr_q, of
# those tested (firing in ≥ chrono.min_windows windows)
# + "fire": the median share of probe windows a tested latent fires in (what the test's power depends on)
SELECTIVE = tuple(f"selective_{kind}_{k}" for kind in ("time", "source") for k in ("count", "frac", "tested", "fire"))
MEM_LATENTS = tuple(f"memorisation_latents_{k}" for k in ("auc_max", "auc_max_null", "auc_max_p"))  # with reference
# the memorisation scores (chrono/memorisation.extraction_scores computes them) per probe column, each with _lo / _hi:
# a 0/1 score's rate gets a Wilson interval, any other's mean a t interval. A new score: compute it there, name it here.
MEM_SCORES = {"exact_match": "rate", "token_match": "mean", "loss": "mean"}
MIA_SCORES = ("loss", "zlib", "min_k", "ref")  # membership scores (MIMIR): per bucket vs unseen
EXPOSURE_BINS = ("1", "2", "3-4", "5+")  # memorisation by exposure count
# the training-order test (chrono/order.py): Spearman ρ and permutation p between a seen window's membership score
# and the step it was first / last seen, pooled and within source
ORDER_SCORES, ORDER_BY = ("ref", "loss"), ("first", "last")
ORDER_N = "mem/order_n"  # the seen windows it is computed over
ORDER_N_FULL_LR = "mem/order_n_full_lr"  # … of them first seen at the full learning rate (warmup and warmdown out)
def eval_time(part: str) -> str:
    return f"time/eval_{part}_s"


# the parts of one eval, each timed (time/eval_<part>_s; benchmarks/eval_cost.py prints the split): the core's, the
# probe windows' shared scoring, and the built-in registered metrics (registry.py; a registered metric adds its own)
EVAL_PARTS = ("val", "sae_panel", "reference", "probe_forward", "extraction", "canaries", "memorisation", "membership",
              "blind", "probe_saes")
# wall-clock, and what a session's faults change (data workers restarted): differ between identical runs
SAE_WARMUP_TOKENS, SAE_WARMUP_S = "sae/warmup_tokens", "time/sae_warmup_s"  # sae.warmup_tokens, at step 0
TIMING = ("time/eval_s", "time/attn_metrics_s", "time/latent_records_s", SAE_WARMUP_S, "train/tokens_per_s",
          "train/data_wait_frac", *(eval_time(part) for part in EVAL_PARTS), "data/worker_restarts")
DROPOUT_RATE = "chrono/temporal_dropout_rate"
ATTN_DIVERSITY_MEAN, ATTN_ENTROPY_MEAN = "chrono/attn_diversity/mean", "chrono/attn_entropy/mean"
ATTN_DIVERSITY_NOSINK_MEAN = "chrono/attn_diversity_nosink/mean"
ATTN_TRAIN_TERM = "chrono/attn_diversity/train_term"
# the regulariser's μ in use, and μ · ‖∇D‖ / ‖∇CE‖ on the q/k projections, measured at the chrono cadence
ATTN_MU, ATTN_GRAD_SHARE = "chrono/attn_diversity/mu", "chrono/attn_diversity/grad_share"
MEM_LOSS_GAP = "mem/loss_gap"
# the crosscoder between the step-0 and the live model (crosscoder.py), on its training batches at the chrono cadence
CROSSCODER_STEP = ("train_mse", "train_fve_base", "train_fve_ft", "train_l0", "dead_frac")
# … and at each eval, on the probe windows: reconstruction, the classes by relative decoder norm at the threshold the
# null crosscoder sets (null_count: the null's latents past the 0.9 floor; r_sd: the spread of the relative decoder
# norms beside the null twin's: the model's change short of a class), Latent Scaling on the fine-tuned-only latents
# (confirmed: ν^ε and ν^r < 0.5), their emergence and their link to the time buckets (Kruskal–Wallis + BH; the share
# whose peak bucket is the bucket they emerged in, beside its chance 1/B)
CROSSCODER_EVAL = ("fve_base", "fve_ft", "l0", "threshold", "ft_only", "base_only", "shared", "null_count", "r_sd",
                   "r_sd_null", "ft_only_confirmed", "nu_eps_median", "nu_rec_median", "cos_ft_only_median",
                   "emergence_median_step", "ft_only_tested", "ft_only_time_selective", "peak_at_emergence",
                   "peak_at_emergence_chance")
CI = ("_lo", "_hi")  # suffixes of a value's 95 % interval


def is_timing(key: str) -> bool:
    """Whether a key is wall-clock or fault bookkeeping (TIMING, or any registered metric's time/eval_<name>_s):
    what differs between two identical runs."""
    return key in TIMING or key.startswith("time/")


def train(name: str) -> str:
    return f"train/{name}"


def val(name: str) -> str:
    return f"val/{name}"


def sae(hook: str, name: str) -> str:
    return f"sae/{hook}/{name}"


def chrono(hook: str, name: str) -> str:
    return f"chrono/{hook}/{name}"


def attn_layer(layer: int, nosink: bool = False) -> str:
    return f"chrono/attn_diversity{'_nosink' if nosink else ''}/layer_{layer}"


def mem(score: str, column: str, by: str = "") -> str:
    """Memorisation score of a probe column: by first-seen bucket (by=""), by last-seen bucket (by="last_seen")
    or by exposure count (by="exposures", column one of EXPOSURE_BINS)."""
    return f"mem/{by + '/' if by else ''}{score}/{column}"


def mia(metric: str, score: str, bucket: str) -> str:
    """Membership inference of a bucket vs unseen: metric auc | tpr1 (TPR at 1 % FPR, with ≥ 100 unseen windows) |
    tpr0 (TPR at 0 FPR: members above every unseen window, with fewer), score one of MIA_SCORES."""
    return f"mem/mia_{metric}/{score}/{bucket}"


def did(bucket: str, stratified: bool = False) -> str:
    """Difference-in-differences memorisation (Lesci et al.): mean Δloss(bucket) − mean Δloss(unseen); stratified:
    within each source, weighted by the bucket's source mix."""
    return f"mem/did{'_stratified' if stratified else ''}/{bucket}"


def probe_share(source: str, column: str) -> str:
    """Share of a probe column's documents that come from source."""
    return f"mem/probe_share/{source}/{column}"


def order(stat: str, score: str, by: str = "first", within: bool = False, full_lr: bool = False) -> str:
    """The training-order test: stat rho | p, score one of ORDER_SCORES, by one of ORDER_BY; within: steps permuted
    within source; full_lr: over the windows first seen at the full learning rate only (not the schedule's ramps)."""
    return f"mem/order_{stat}{'_within' if within else ''}{'_full_lr' if full_lr else ''}/{score}/{by}"


def blind(kind: str) -> str:
    """A blind baseline's AUROC (chrono/blind.py): a text-only classifier of kind member (seen vs unseen windows) or
    time (first seen in the first vs the second half of the buckets); 0.5 = the text alone tells nothing."""
    return f"mem/blind_auc/{kind}"


# the skew-normal fit of the canary candidates' NLLs: Kolmogorov–Smirnov distance, and its lower tail's error in bits
CANARY_FIT_KS, CANARY_FIT_TAIL = "mem/canary_fit/ks", "mem/canary_fit/tail_bits"
CANARY_CANDIDATES = "mem/canary_candidates"  # how many candidates this eval scored (chrono.canary_interim_candidates)


CANARY_KINDS = ("", "_extrap", "_sampled")  # rank-based, extrapolated (a skew-normal model), sampled (no model)


def canary(label: str, extrapolated: bool = False, sampled: bool = False) -> str:
    return f"mem/canary_exposure/{label}{'_extrap' if extrapolated else '_sampled' if sampled else ''}"


def canary_cell(key: str) -> str | None:
    """The repetition cell of a rank-based canary key (mem/canary_exposure/<cell>); None for any other key."""
    if not key.startswith("mem/canary_exposure/") or key.endswith(CI):
        return None
    cell = key.split("/")[-1]
    return None if any(cell.endswith(kind) for kind in CANARY_KINDS if kind) else cell


def forgetting(score: str) -> str:
    """The mean change of a window's score (ref | did) per 100 steps after it was seen (chrono/forgetting.py)."""
    return f"mem/forgetting/{score}"


def forgetting_windows(score: str) -> str:
    return f"mem/forgetting_windows/{score}"


def crosscoder(name: str) -> str:
    return f"crosscoder/{name}"


def with_ci(key: str) -> list[str]:
    return [key] + [key + suffix for suffix in CI]


def data_stats(stats: dict) -> dict[str, float]:
    """The stream's statistics (MixtureStream.stats) as data/<stat>[/<source>] keys."""
    out = {}
    for key, value in stats.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        out.update({f"data/{key}" + (f"/{k}" if k is not None else ""): v for k, v in items})
    return out


def variant(name: str, key: str) -> str:
    return f"variant/{name}/{key}"


def variant_view(record: dict, name: str) -> dict:
    """A logged record as the variant's own run would have logged it: the LM's keys as they are (the variant's LM
    is the run's LM), the variant's keys in place of the main SAEs' (every per-hook key belongs to the SAEs, except
    the token mask's share, which all SAEs of a hook share)."""
    prefix = f"variant/{name}/"
    out = {k: v for k, v in record.items() if not k.startswith("variant/")
           and (hook_of(k) is None or k.rsplit("/", 1)[1] in SAE_MASK)}
    out.update({k[len(prefix):]: v for k, v in record.items() if k.startswith(prefix)})
    return out


def hook_of(key: str) -> str | None:
    """The hook point inside a per-hook key (sae/<hook>/fve → <hook>), or None."""
    parts = key.split("/")
    return parts[1] if len(parts) == 3 and parts[0] in ("sae", "chrono") and ".hook_" in parts[1] else None


# ---- what one run logs, for plan.py's storage arithmetic (and a test that compares it with a real run)
def chrono_step_keys(hooks: list[str], n_layers: int, diversity: bool) -> list[str]:
    keys = [DROPOUT_RATE, ATTN_DIVERSITY_MEAN, ATTN_DIVERSITY_NOSINK_MEAN, ATTN_ENTROPY_MEAN, "time/attn_metrics_s"]
    keys += [attn_layer(l, nosink) for l in range(n_layers) for nosink in (False, True)]
    keys += [ATTN_TRAIN_TERM, ATTN_MU, ATTN_GRAD_SHARE] if diversity else []
    keys += [sae(h, n) for h in hooks for n in SAE_STEP + SAE_MASK + SAE_HEALTH]
    return keys + [chrono(h, n) for h in hooks for n in CHRONO_STEP]


def crosscoder_step_keys(enabled: bool) -> list[str]:
    return [crosscoder(n) for n in CROSSCODER_STEP] if enabled else []
