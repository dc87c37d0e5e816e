"""The closing summary of a run (experiments/run.py prints it; analysis/report.py puts it on the report's front
page): its results at the last eval, and beside each time-claim what the run could have seen."""

from __future__ import annotations

import math
from pathlib import Path

from chrono_membench import metric_keys as K
from chrono_membench.chrono import resolution as R
from chrono_membench.config import read_yaml
from chrono_membench.logging import final_values, split_run
from chrono_membench.run_dir import RunDir


def _order_verdict(p: float, n: int) -> str:
    """A training-order ρ's verdict: its permutation p, and the |ρ| its n windows resolve (the null's SD)."""
    return R.from_permutation(p, R.correlation_mde(n) / R.POWER_FACTOR, largest=1.0)


def _purity_verdict(excess: float, sd: float, p: float | None) -> str:
    """A purity excess's verdict: its permutation p, or (stratified: no p) the interval its null's SD gives — two-sided,
    so an excess below the null can be detected too, and says so (latents spread over the buckets more evenly than
    the windows' labels shuffled within source would spread them)."""
    if p is not None:
        return R.from_permutation(p, sd)
    said = R.from_interval(excess - R.Z * sd, excess + R.Z * sd)
    return said + ", below its null" if said == "detected" and excess < 0 else said


def _order(f: dict) -> list[str]:
    """The training-order test, within source (steps permuted, each step's windows together) as the headline, beside
    it the pooled value and the full-learning-rate steps' (the schedule's ramps left out), each with its verdict."""
    n, lines = f.get(K.ORDER_N), []
    for within in (True, False):
        rho, p = f.get(K.order("rho", "ref", within=within)), f.get(K.order("p", "ref", within=within))
        if rho is None or not n:
            continue
        said = _order_verdict(p, int(n))
        line = (f"training order{' within source' if within else ', pooled over sources'} (Spearman ρ, reference "
                f"score vs first-seen step, {int(n)} seen windows, steps permuted): {rho:+.3f}, p = {p:.2g} ({said})")
        flat, flat_p, flat_n = (f.get(K.order("rho", "ref", within=within, full_lr=True)),
                                f.get(K.order("p", "ref", within=within, full_lr=True)), f.get(K.ORDER_N_FULL_LR))
        if flat is not None and flat_n and flat_n > 2:
            flat_said = _order_verdict(flat_p, int(flat_n))
            line += f"; full-LR steps only ({int(flat_n)} windows): {flat:+.3f}, p = {flat_p:.2g} ({flat_said})"
        lines.append(line if within or not lines else "  " + line)
    return lines


def headline(run_dir: str | Path) -> list[str]:
    """The run's chrono results at its last eval: SAE quality, memorisation and membership per bucket, canary
    exposure, purity over its null, the training-order test; beside each time-claim, what this run could have
    seen (chrono/resolution.py). Intervals are 95 %; what each number means is in docs/metrics.md."""
    f, lines = final_values(run_dir), []
    config = RunDir(split_run(run_dir)[0]).config
    chrono_cfg = read_yaml(config).get("chrono", {}) if config.exists() else {}
    nan = float("nan")
    if K.SAE_WARMUP_TOKENS in f:
        lines.append(f"SAE warm-up: {f[K.SAE_WARMUP_TOKENS]:,.0f} tokens through the step-0 model before training "
                     f"({f.get(K.SAE_WARMUP_S, nan):.0f} s; exported as step 0)")

    lines += _regulariser(f)

    def ci(key: str, fmt: str = ".2f") -> str:
        if key not in f:
            return "-"
        lo, hi = f.get(key + K.CI[0], nan), f.get(key + K.CI[1], nan)
        return f"{f[key]:{fmt}}" + (f" [{lo:{fmt}}, {hi:{fmt}}]" if lo == lo else "")

    def verdict(key: str, null: float = 0.0, largest: float | None = None) -> str:
        return f" ({R.from_interval(f.get(key + K.CI[0], nan), f.get(key + K.CI[1], nan), null, largest)})" \
            if key in f else ""

    for hook in sorted({K.hook_of(k) for k in f} - {None}):
        if K.sae(hook, "eval_fve") in f:
            lines.append(f"SAE {hook}: FVE {f[K.sae(hook, 'eval_fve')]:.3f}, CE recovered "
                         f"{f[K.sae(hook, 'ce_recovered')]:.3f}, L0 {f[K.sae(hook, 'eval_l0')]:.0f}, dead "
                         f"{f.get(K.sae(hook, 'dead_frac'), nan):.2f}, activation stability since the last eval "
                         f"{f.get(K.chrono(hook, 'activation_stability'), nan):.3f}")
        if K.chrono(hook, "previous_sae_fve") in f:
            lines.append(f"  the last checkpoint's SAE on this model: FVE {f[K.chrono(hook, 'previous_sae_fve')]:.3f}, "
                         f"CE recovered {f[K.chrono(hook, 'previous_sae_ce_recovered')]:.3f} (what the LM's change "
                         f"since that checkpoint costs an SAE trained before it)")
        if K.chrono(hook, "temporal_purity_excess") in f:
            parts = []
            for kind in ("temporal", "temporal_stratified", "source"):
                excess = f.get(K.chrono(hook, kind + "_purity_excess"), nan)
                sd, p = f.get(K.chrono(hook, kind + "_purity_null_sd"), nan), f.get(K.chrono(hook, kind + "_purity_p"))
                parts.append(f"{kind} {excess:+.4f} ({_purity_verdict(excess, sd, p)})")
            lines.append("  purity − permutation null: " + "; ".join(parts))
        tested = {kind: f.get(K.chrono(hook, f"selective_{kind}_tested")) for kind in ("time", "source")}
        if any(tested.values()):
            q = chrono_cfg.get("fdr_q", 0.05)
            lines.append(f"  latents selective at FDR q = {q} (Kruskal–Wallis per latent, Benjamini–Hochberg): " + ", ".join(
                f"{kind} {f[K.chrono(hook, f'selective_{kind}_count')]:.0f} of {n:.0f} tested"
                for kind, n in tested.items() if n))
            fire = f.get(K.chrono(hook, "selective_time_fire"))
            if tested["time"] and fire and not f[K.chrono(hook, "selective_time_count")]:
                lines.append("    " + _selective_power(chrono_cfg, fire))
    buckets = sorted({k.split("/")[-1] for k in f if k.startswith("mem/loss/") and not k.endswith(K.CI)},
                     key=lambda b: (b == "unseen", b))
    if buckets:
        lines.append("memorisation (probe windows in their training context; 95 % intervals):")
        for b in buckets:
            lines.append(f"  {b:>7}: loss {ci(K.mem('loss', b))}  exact {ci(K.mem('exact_match', b))}")
            if b != "unseen":
                lines.append(f"           MIA AUROC(ref) {ci(K.mia('auc', 'ref', b))}"
                             f"{verdict(K.mia('auc', 'ref', b), 0.5, 0.5)}")
                lines.append(f"           DiD within sources {ci(K.did(b, True), '+.3f')}{verdict(K.did(b, True))}")
        if K.MEM_LOSS_GAP in f:
            lines.append(f"  unseen − seen loss gap {f[K.MEM_LOSS_GAP]:+.3f} nats")
    lines += _order(f) + _forgetting(f) + _blind(f)
    variants = sorted({k.split("/")[1] for k in f if k.startswith("variant/")})
    for name in variants:  # the SAE variants trained on this run's activations (docs/experiments.md)
        v = final_values(f"{split_run(run_dir)[0]}#{name}")
        lines.append(f"  variant {name}: " + "; ".join(
            f"{hook} FVE {v.get(K.sae(hook, 'eval_fve'), nan):.3f}, "
            f"CE recovered {v.get(K.sae(hook, 'ce_recovered'), nan):.3f}, "
            f"activation stability {v.get(K.chrono(hook, 'activation_stability'), nan):.3f}"
            for hook in sorted({K.hook_of(k) for k in v} - {None})))
    return lines + _canaries(f, chrono_cfg.get("canary_candidates", 127))


def _forgetting(f: dict) -> list[str]:
    """The decided statement per forgetting score (chrono/forgetting.py)."""
    parts = []
    for score, name in (("ref", "reference score −Δloss"), ("did", "DiD beyond unseen's drift")):
        value, lo, hi = (f.get(k) for k in K.with_ci(K.forgetting(score)))
        if value is not None and lo is not None:
            parts.append(f"{name} {value:+.3f} [{lo:+.3f}, {hi:+.3f}] nats per 100 steps "
                         f"({R.from_interval(lo, hi)}; {f.get(K.forgetting_windows(score), 0):.0f} windows)")
    return ["forgetting (a window's score against the steps since it was seen, over the evals after it; mean slope "
            "over windows, < 0: forgotten): " + "; ".join(parts)] if parts else []


def _blind(f: dict) -> list[str]:
    """The blind baselines: a text-only classifier's AUROC, which must sit at chance for a membership or time claim
    to be about the model (chrono/blind.py)."""
    parts = []
    for kind, what in (("member", "seen vs unseen"), ("time", "first vs second half of the buckets")):
        key = K.blind(kind)
        if key in f:
            lo, hi = f.get(key + K.CI[0], float("nan")), f.get(key + K.CI[1], float("nan"))
            said = R.from_interval(lo, hi, 0.5, 0.5)
            warn = "" if said.startswith("none") or said.startswith("undecided") else (
                " — the text alone tells them apart: claims on these columns are not only about the model")
            parts.append(f"{what} {f[key]:.2f} [{lo:.2f}, {hi:.2f}] ({said}){warn}")
    return ["blind baselines (text only, no model; AUROC within source, 0.5 = chance): " + "; ".join(parts)] \
        if parts else []


def _regulariser(f: dict) -> list[str]:
    if K.ATTN_MU not in f:
        return []
    share = (f"; re-measured at the last calibration, the μ in use steered {f[K.ATTN_GRAD_SHARE]:.2%} of the q/k "
             f"gradient" if K.ATTN_GRAD_SHARE in f else "")
    return [f"attention-diversity regulariser: μ {f[K.ATTN_MU]:.3g}{share}; head diversity "
            f"{f.get(K.ATTN_DIVERSITY_MEAN, float('nan')):.4f}"]


def _selective_power(chrono_cfg: dict, fire: float) -> str:
    """What "none time-selective" resolves: the share of a 5 % population firing 2× / 4× as often in one bucket that
    this run's test would have found, simulated at the run's size and its latents' own firing rate."""
    n, buckets = chrono_cfg.get("probe_per_bucket", 256), chrono_cfg.get("n_buckets", 10)
    found = {e: R.fdr_power(n, buckets, e, q=chrono_cfg.get("fdr_q", 0.05), fire=fire)["found"] for e in (2.0, 4.0)}
    verdict = "none detected" if found[4.0] >= 0.8 else "undecided at this size"
    return (f"none time-selective: {verdict} — at {n} windows per bucket and these latents' firing rate "
            f"({fire:.0%} of windows), the test finds {found[2.0]:.0%} of a 5 % population firing 2× as often in one "
            f"bucket, {found[4.0]:.0%} at 4× (40 simulations)")


def _canaries(f: dict, n: int) -> list[str]:
    """Canary exposure per repetition cell: rank-based (capped at n candidates) and extrapolated with its interval;
    the fit's check."""
    nan, lines = float("nan"), []
    cells = [c for c in map(K.canary_cell, f) if c is not None]
    if cells:  # the rank-based value cannot exceed log2(candidates + 1); the sampled one is the rank among all secrets
        def sampled(c):
            value, lo, hi = (f.get(k, nan) for k in K.with_ci(K.canary(c, sampled=True)))
            return "n/a" if value != value else f"≥ {lo:.1f}" if hi != hi else f"{value:.1f} [{lo:.1f}, {hi:.1f}]"

        extrap = lambda c: "{:.1f} [{:.1f}, {:.1f}]".format(*(f.get(k, nan) for k in K.with_ci(K.canary(c, True))))  # noqa: E731
        lines.append(f"canary exposure (bits; rank-based, capped at log2({n} + 1) = {math.log2(n + 1):.1f} / sampled: "
                     f"the rank among all secrets by importance sampling, no assumed tail [95 %]): " + ", ".join(
            f"×{c}: {f[K.canary(c)]:.1f} / {sampled(c)}" for c in cells))
        lines.append("  extrapolated (a skew-normal model of the candidates' tail; it covers only where their losses "
                     "follow it) [95 % bootstrap]: " + ", ".join(f"×{c}: {extrap(c)}" for c in cells))
        if K.CANARY_FIT_KS in f:
            lines.append(f"  the skew-normal fit of the candidates: KS distance {f[K.CANARY_FIT_KS]:.3f}, lower-tail error "
                         f"{f[K.CANARY_FIT_TAIL]:+.2f} bits at its deepest checkable quantile (> 0: extrapolated bits "
                         f"read low; docs/metrics.md)")
    return lines


def claims(run_dir: str | Path) -> list[tuple[str, str, str]]:
    """The run's time-claims at its last eval as rows (claim, measured value with its 95 % interval, verdict): the
    ones `headline` prints beside their verdicts, for a results table (analysis/study_page.py)."""
    f, rows, nan = final_values(run_dir), [], float("nan")
    config = RunDir(split_run(run_dir)[0]).config
    chrono_cfg = read_yaml(config).get("chrono", {}) if config.exists() else {}

    def interval(key: str, null: float = 0.0, largest: float | None = None, fmt: str = "+.3f") -> tuple[str, str]:
        lo, hi = f.get(key + K.CI[0], nan), f.get(key + K.CI[1], nan)
        shown = f"{f[key]:{fmt}}" + (f" [{lo:{fmt}}, {hi:{fmt}}]" if math.isfinite(lo) and math.isfinite(hi) else "")
        return shown, R.from_interval(lo, hi, null, largest)

    buckets = sorted({k.split("/")[-1] for k in f if k.startswith("mem/loss/") and not k.endswith(K.CI)} - {"unseen"})
    for b in buckets:
        if K.mia("auc", "ref", b) in f:
            rows.append((f"{b} told from unseen (MIA AUROC, reference score; chance 0.5)",
                         *interval(K.mia("auc", "ref", b), 0.5, 0.5, ".3f")))
    for b in buckets:
        if K.did(b, True) in f:
            rows.append((f"{b} memorised beyond unseen (DiD within sources, nats)", *interval(K.did(b, True))))
    n = f.get(K.ORDER_N)
    for within, full_lr in ((True, False), (True, True), (False, False), (False, True)):
        rho, p = (f.get(K.order(s, "ref", within=within, full_lr=full_lr)) for s in ("rho", "p"))
        count = f.get(K.ORDER_N_FULL_LR) if full_lr else n
        if rho is not None and count and count > 2:
            rows.append((f"training order, {'within source' if within else 'pooled'}"
                         f"{', full-LR steps only' if full_lr else ''} (Spearman ρ, {int(count)} windows)",
                         f"{rho:+.3f}, p = {p:.2g}", _order_verdict(p, int(count))))
    for score, name in (("ref", "reference score"), ("did", "DiD beyond unseen's drift")):
        if K.forgetting(score) in f and K.forgetting(score) + K.CI[0] in f:
            rows.append((f"forgetting: change of a window's {name} per 100 steps after it is seen (nats)",
                         *interval(K.forgetting(score))))
    for hook in sorted({K.hook_of(k) for k in f} - {None}):
        for kind in ("temporal", "temporal_stratified"):
            excess = f.get(K.chrono(hook, kind + "_purity_excess"))
            if excess is None:
                continue
            sd, p = f.get(K.chrono(hook, kind + "_purity_null_sd"), nan), f.get(K.chrono(hook, kind + "_purity_p"))
            rows.append((f"{hook}: {kind.replace('_', ' ')} purity − permutation null", f"{excess:+.4f}",
                         _purity_verdict(excess, sd, p)))
        tested, fire = f.get(K.chrono(hook, "selective_time_tested")), f.get(K.chrono(hook, "selective_time_fire"))
        if tested:
            count = f[K.chrono(hook, "selective_time_count")]
            said = "detected" if count else _selective_power(chrono_cfg, fire).split(": ", 1)[1] if fire else \
                "undecided at this size (no firing rate)"
            rows.append((f"{hook}: time-selective latents (Kruskal–Wallis, BH q = {chrono_cfg.get('fdr_q', 0.05)})",
                         f"{count:.0f} of {tested:.0f}", said))
    for kind, what in (("member", "seen vs unseen"), ("time", "first vs second half of the buckets")):
        if K.blind(kind) in f:
            rows.append((f"blind baseline, text only: {what} (AUROC within source; must sit at chance)",
                         *interval(K.blind(kind), 0.5, 0.5, ".2f")))
    return rows
