"""The probe-set evaluation (docs/design.md §4.4, §4.5): memorisation in the training context, membership
inference, the difference-in-differences profile, forgetting curves, canary exposure, and purity with its
permutation null — eval metrics registered with registry.py (canaries, forgetting, memorisation, membership, blind,
probe_saes), in that order.

Every probe window is scored once per eval (windows_of caches it on the evaluation context; under torchrun each
rank takes its share, then the per-window values are gathered, so every rank computes the same metrics from all
windows). Returns metric dicts (keys from metric_keys); purity matrices go to the context; writes nothing. The
arithmetic lives in chrono/ (memorisation, purity, stats).
"""

from __future__ import annotations

import math

import time
from dataclasses import dataclass

import numpy as np
import torch

from chrono_membench import hooks
from chrono_membench import metric_keys as K
from chrono_membench.chrono.memorisation import (
    exposure, extraction_scores, extrapolated_exposure, extrapolated_interval, fixed_chunks, prefixed_nll,
    sample_secrets, sampled_exposure, scored_token_losses, skewnorm_fit_check, token_losses,
)
from chrono_membench.chrono.blind import blind_auroc
from chrono_membench.chrono.forgetting import SCORES, record, slopes
from chrono_membench.chrono.latent_auc import memorisation_latents
from chrono_membench.chrono.order import order_correlation
from chrono_membench.chrono.purity import purity_with_null, stratified_purity
from chrono_membench.chrono.selectivity import selective_latents
from chrono_membench.chrono.stats import (
    auroc, auroc_interval, difference_interval, mean_interval, stratified_difference, tpr_at_fpr, wilson_interval,
)
from chrono_membench.data.sources import SOURCE_NAMES
from chrono_membench.distributed import ALONE, Dist
from chrono_membench.probes import PREFIX_TOKENS, SCORED_TOKENS, UNSEEN, Canaries, Probe, ProbeSet
from chrono_membench.registry import EvalContext, KeySpace, register
from chrono_membench.sae import SAEBank

EVAL_CHUNK = 16  # probe windows per forward
ORDER_PERMUTATIONS = 999  # the training-order test's (cheap: ranks of a few hundred windows)
CANARY_CHUNK = 64  # canary candidates per forward
GENERATE_CHUNK = 256  # probe windows per KV-cached greedy decode: the bridge's per-token overhead is per call (256
#                       windows: 12.4 s in calls of 256, 17.4 s in calls of 64, on the demo model; docs/metrics.md says
#                       what the batch does to bf16 greedy tokens)


def logits_fn(model, autocast, chunk_rows: int = EVAL_CHUNK, keep: int = 0):
    """tokens [B, T] → logits [B, T, V] (fp32), or of the last `keep` positions only: the HF model's logits_to_keep,
    which unembeds only those (a probe window's scored tokens need SCORED_TOKENS + 1 of its 64: 11 % of the probe
    forward, the same bits)."""
    def logits(tokens):
        with autocast:
            return torch.cat([model(chunk, logits_to_keep=keep).float() for chunk in tokens.split(chunk_rows)])
    return logits


def generate_fn(model, autocast):
    def generate(prefix, n_tokens):
        with autocast:
            return torch.cat([model.generate(chunk, max_new_tokens=n_tokens, do_sample=False, stop_at_eos=False,
                                             verbose=False, use_past_kv_cache=True, prepend_bos=False)[:, -n_tokens:]
                              for chunk in prefix.split(GENERATE_CHUNK)])
    return generate


def _gather(d: Dist, index: torch.Tensor, weight: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """Per-window values [n_local, ...] of this rank's padded share → [n, ...] for every window, in order."""
    real = (weight > 0).cpu()
    index, values = d.cat(index[real].to(values.device)), values[real.to(values.device)]
    flat = d.cat(values.flatten())
    out = torch.empty((n, *values.shape[1:]), dtype=values.dtype, device=values.device)
    out[index] = flat.view(len(index), *values.shape[1:])
    return out


@torch.no_grad()
def fill_reference_losses(reference, probes: list[Probe], autocast, device, d: Dist = ALONE) -> None:
    """Loss of each probe's scored tokens under the step-0 model, for the probes that have none yet (a probe
    enters the set when its window is trained; its reference loss is computed at the next eval)."""
    todo = [p for p in probes if p.ref_loss is None]
    if not todo:
        return
    index, weight = d.padded_share(len(todo))
    windows = torch.tensor([todo[i].tokens for i in index], device=device)
    loss = scored_token_losses(logits_fn(reference, autocast, keep=SCORED_TOKENS + 1), windows).mean(1)
    for p, value in zip(todo, _gather(d, index, weight, loss, len(todo)).tolist()):
        p.ref_loss = value


def _with_ci(key: str, value: float, interval: tuple[float, float]) -> dict[str, float]:
    return {key: value, key + K.CI[0]: interval[0], key + K.CI[1]: interval[1]}


def _score_group(scores: dict[str, np.ndarray], rows: np.ndarray, column: str, by: str = "") -> dict[str, float]:
    """Each memorisation score (K.MEM_SCORES) of the windows `rows`: a rate with its Wilson interval, or a mean with
    its t interval."""
    if not rows.any():
        return {}
    out = {}
    for name, kind in ((n, k) for n, k in K.MEM_SCORES.items() if n in scores):
        x = scores[name][rows]
        if kind == "rate":
            hits, n = int(x.sum()), len(x)
            out.update(_with_ci(K.mem(name, column, by), hits / n, wilson_interval(hits, n)))
        else:
            out.update(_with_ci(K.mem(name, column, by), float(x.mean()), mean_interval(x)))
    return out


def exposure_bin(n: int) -> str:
    return "1" if n <= 1 else "2" if n == 2 else "3-4" if n <= 4 else "5+"


def membership_scores(scores: dict[str, np.ndarray], zlib_bytes: np.ndarray, ref_loss: np.ndarray | None
                      ) -> dict[str, np.ndarray]:
    """MIMIR's scores, signed so that higher = more likely a training member: −LOSS, −LOSS / zlib bytes of the
    text, Min-K% Prob, and −(LOSS − reference LOSS) (the step-0 model's loss on the same window)."""
    out = {"loss": -scores["loss"], "zlib": -scores["loss"] / np.maximum(zlib_bytes, 1), "min_k": scores["min_k"]}
    if ref_loss is not None:
        out["ref"] = -(scores["loss"] - ref_loss)
    return out


def order_metrics(member: dict[str, np.ndarray], entries: list, seen: np.ndarray, source: np.ndarray,
                  seed: int, full_lr: tuple[int, int] | None = None) -> dict[str, float]:
    """The training-order test over every seen probe window: ρ and p between its membership score and the step
    it was first / last seen, pooled and within source; with `full_lr` (first, last step at the full learning
    rate), the same over the windows first seen in it, so that the schedule's ramps cannot make the effect
    (undefined ones are not logged)."""
    first = np.array([e[0] for e in entries], dtype=np.float64)
    subsets = [(False, seen)]
    if full_lr is not None:
        flat = seen & (first >= full_lr[0]) & (first <= full_lr[1])
        subsets.append((True, flat))
    out = {K.ORDER_N: int(seen.sum()), **({K.ORDER_N_FULL_LR: int(subsets[1][1].sum())} if full_lr else {})}
    for by, column in zip(K.ORDER_BY, (0, 1)):
        step = np.array([e[column] for e in entries], dtype=np.float64)
        for score in (s for s in K.ORDER_SCORES if s in member):
            for (flat, rows), within in ((subset, w) for subset in subsets for w in (False, True)):
                rho, p = order_correlation(member[score][rows], step[rows], source[rows] if within else None,
                                           ORDER_PERMUTATIONS, seed)
                if rho == rho:
                    out.update({K.order("rho", score, by, within, flat): rho, K.order("p", score, by, within, flat): p})
    return out


@dataclass
class Windows:
    """One eval's probe windows, scored: what the three metric families below read."""
    names: list[str]  # the columns: b0 … b{B-1}, unseen
    uids: list[str]  # [W] each window's document
    col: np.ndarray  # [W] each window's column
    source: np.ndarray  # [W] its source
    entries: list  # [W] its seen-log entry [first step, last step, exposures] (zeros for unseen)
    steps: np.ndarray  # [W] the step it entered the probe set (0: unseen)
    scores: dict[str, np.ndarray]  # extraction scores (exact_match, token_match, loss, min_k)
    member: dict[str, np.ndarray]  # membership scores (higher = member)
    ref_loss: np.ndarray | None  # the step-0 model's loss, with a reference model

    @property
    def unseen(self) -> np.ndarray:
        return self.col == self.names.index(UNSEEN)


def windows_of(ctx: EvalContext) -> tuple[Windows, dict] | None:
    """The eval's probe windows, scored once and shared by every metric that reads them: (Windows, {hook: per-window
    activation sums, token counts, prefix means}), or None while the probe set is empty. The step-0 reference
    losses of new windows, the SAE forward and the extraction scores are timed (time/eval_<part>_s)."""
    if "windows" not in ctx.cache:
        flat = [p for _, ps in ctx.probes.columns() for p in ps]
        ctx.cache["windows"] = None
        if flat:
            if ctx.reference is not None and ctx.trained:  # before the first update the live model is the step-0
                start = time.perf_counter()                # one: score_windows fills the reference losses itself
                fill_reference_losses(ctx.reference, flat, ctx.autocast, ctx.device, ctx.dist)
                ctx.timings["reference"] = time.perf_counter() - start
            ctx.cache["windows"] = score_windows(ctx)
    return ctx.cache["windows"]


@register("canaries", needs="windows", panel=False,
          keys=lambda s: [k for label in s.canary_labels for k in [K.canary(label), *K.with_ci(K.canary(label, True)),
                                                                   *K.with_ci(K.canary(label, sampled=True))]]
          + ([K.CANARY_FIT_KS, K.CANARY_FIT_TAIL, K.CANARY_CANDIDATES] if s.canary_labels else []))
def canaries(ctx: EvalContext) -> dict[str, float]:
    """Canary exposure (every candidate at the final eval, the interim subset before it); nothing before the first
    update (a canary's exposure is then its controls', the null every later eval measures)."""
    if ctx.canaries is None or not ctx.trained:
        return {}
    return canary_exposures(ctx.model, ctx.canaries, ctx.autocast, ctx.device, ctx.seed, ctx.final)


@register("forgetting", needs="windows", title="forgetting: mean change of a window's score per 100 steps after it "
          "was seen (ref: −Δloss; did: beyond unseen's drift)", null=0.0,
          keys=lambda s: [k for score in SCORES for k in [*K.with_ci(K.forgetting(score)), K.forgetting_windows(score)]]
          if s.reference and s.buckets else [])
def forgetting(ctx: EvalContext) -> dict[str, float]:
    """Forgetting curves (chrono/forgetting.py): this eval's record of every seen window's Δloss joins the earlier
    evals' (ctx.history; the trainer writes it as artifacts/step_N/probe_scores.json), and each score's mean slope
    per 100 steps since seen is logged with its interval once windows have 2 evals after they were seen."""
    scored = windows_of(ctx)
    if scored is None or scored[0].ref_loss is None or not ctx.trained:
        return {}
    w = scored[0]
    delta = w.scores["loss"] - w.ref_loss
    ctx.cache["forgetting_record"] = record(w.uids, [e[0] for e in w.entries], delta, ~w.unseen)
    ctx.history.append((ctx.step, ctx.cache["forgetting_record"]))
    out = {}
    for score, got in slopes(ctx.history).items():
        out.update(_with_ci(K.forgetting(score), got["slope"], (got["lo"], got["hi"])))
        out[K.forgetting_windows(score)] = got["windows"]
    return out


def _memorisation_keys(s: KeySpace) -> list[str]:
    keys = [k for n in K.MEM_SCORES for c in s.columns for k in K.with_ci(K.mem(n, c))]
    keys += [k for n in K.MEM_SCORES for c in s.buckets for k in K.with_ci(K.mem(n, c, "last_seen"))]
    keys += [k for n in K.MEM_SCORES for c in K.EXPOSURE_BINS for k in K.with_ci(K.mem(n, c, "exposures"))]
    return keys + [K.probe_share(src, c) for src in s.sources for c in s.columns]


@register("memorisation", keys=_memorisation_keys, needs="windows", panel=False)
def memorisation(ctx: EvalContext) -> dict[str, float]:
    """Every extraction score by first-seen bucket, last-seen bucket and exposure count (memorisation_by_column)."""
    scored = windows_of(ctx)
    return memorisation_by_column(scored[0], ctx.probes) if scored else {}


def _membership_keys(s: KeySpace) -> list[str]:
    scores = [n for n in K.MIA_SCORES if s.reference or n != "ref"]
    keys = [k for n in scores for b in s.buckets for k in K.with_ci(K.mia("auc", n, b)) + [K.mia("tpr1", n, b)]
            + K.with_ci(K.mia("tpr0", n, b))]
    keys += [k for b in s.buckets for within in (False, True) for k in K.with_ci(K.did(b, within))] if s.reference else []
    keys += [K.order(stat, n, by, within, flat) for n in K.ORDER_SCORES if s.reference or n != "ref"
             for by in K.ORDER_BY for within in (False, True) for flat in (False, True) for stat in ("rho", "p")]
    return keys + [K.ORDER_N, K.ORDER_N_FULL_LR, K.MEM_LOSS_GAP]


@register("membership", keys=_membership_keys, needs="windows", panel=False)
def membership_metric(ctx: EvalContext) -> dict[str, float]:
    """Membership inference per bucket vs unseen, the DiD profile, the loss gap and the training-order test."""
    scored = windows_of(ctx)
    return membership(scored[0], ctx.seed, ctx.full_lr) if scored else {}


@register("blind", needs="windows",
          keys=lambda s: [k for kind in ("member", "time") for k in K.with_ci(K.blind(kind))] if s.buckets else [],
          title="blind baselines: a text-only classifier's AUROC (member: seen vs unseen; time: early vs late buckets)",
          null=0.5)
def blind(ctx: EvalContext) -> dict[str, float]:
    """Blind baselines (chrono/blind.py): a text-only classifier's cross-fitted AUROC of seen vs unseen windows, and
    of windows first seen in the first half of the buckets vs the second half; chance (0.5) is what a membership or
    time claim about the model needs. A packed row's windows are held out together (they can share tokens)."""
    scored = windows_of(ctx)
    if not scored:
        return {}
    w, out = scored[0], {}
    flat = [(name, p) for name, ps in ctx.probes.columns() for p in ps]  # windows_of's order
    tokens = [p.tokens for _, p in flat]
    row_of = {key: i for i, key in enumerate(dict.fromkeys((name, p.step, p.row) for name, p in flat))}
    group = np.array([row_of[name, p.step, p.row] for name, p in flat])  # the packed row a window was cut from
    late = w.col >= ctx.chrono.n_buckets / 2
    for kind, rows, labels in (("member", np.ones(len(w.col), bool), ~w.unseen), ("time", ~w.unseen, late)):
        got = blind_auroc([t for t, r in zip(tokens, rows) if r], labels[rows], ctx.seed, strata=w.source[rows],
                          groups=group[rows])
        if got is not None:
            out.update(_with_ci(K.blind(kind), got[0], got[1:]))
    return out


def _probe_sae_keys(s: KeySpace) -> list[str]:
    return [K.chrono(h, n) for h in s.hooks for n in K.PURITY + K.SELECTIVE + (K.MEM_LATENTS if s.reference else ())]


@register("probe_saes", keys=_probe_sae_keys, needs="saes", panel=False)
def probe_saes(ctx: EvalContext) -> dict[str, float]:
    """Per hook: purity with permutation nulls, time- and source-selective latents, memorisation latents (and the
    same for every SAE variant); the matrices go to ctx.matrices (artifacts.write_purity)."""
    scored = windows_of(ctx)
    if not scored:
        return {}
    w, acts = scored
    c = ctx.chrono
    main = {h: a for h, a in acts.items() if not h.startswith("variant/")}
    latent, matrices = latent_metrics(w, main, c.purity_permutations, ctx.seed, c.min_windows, c.fdr_q)
    ctx.matrices.update(matrices)
    for name in ctx.saes.variants:  # the same statistics (and permutation draws) as the variant's own run would get
        prefix = K.variant(name, "")
        mine = {h[len(prefix):]: a for h, a in acts.items() if h.startswith(prefix)}
        got = latent_metrics(w, mine, c.purity_permutations, ctx.seed, c.min_windows, c.fdr_q)[0]
        latent.update({prefix + k: v for k, v in got.items()})
    return latent


def score_windows(ctx: EvalContext) -> tuple[Windows, dict]:
    """The windows' extraction and membership scores, and (with SAEs) each hook's per-window activation sums,
    token counts and prefix means [W, F], from one forward shared with the logits (and ctx.records); gathered over
    ranks. Before the first update, and at the evals before the last without chrono.interim_greedy: the
    teacher-forced scores only (no greedy decoding: exact and token match missing)."""
    columns, d, device, autocast = ctx.probes.columns(), ctx.dist, ctx.device, ctx.autocast
    flat = [p for _, ps in columns for p in ps]
    index, weight = d.padded_share(len(flat))
    gather = lambda v: _gather(d, index, weight.to(device), v, len(flat))  # noqa: E731
    windows = torch.tensor([flat[i].tokens for i in index], device=device)
    losses, acts, start = None, {}, time.perf_counter()
    if ctx.saes is not None:  # one forward over the windows: the SAE activations and the extraction scores' losses
        chunk_losses: list[torch.Tensor] = []
        doc_sums, doc_tokens, prefix_means = probe_activation_sums(ctx.model, ctx.saes, windows, autocast,
                                                                   chunk_losses, ctx.records)
        losses = torch.cat(chunk_losses)
        acts = {h: tuple(gather(x[h]).cpu() for x in (doc_sums, doc_tokens, prefix_means)) for h in doc_sums}
        ctx.timings["probe_forward"], start = time.perf_counter() - start, time.perf_counter()
    greedy = ctx.trained and (ctx.final or ctx.chrono.interim_greedy)
    logits = logits_fn(ctx.model, autocast, keep=SCORED_TOKENS + 1)
    local = extraction_scores(logits, windows, greedy=greedy, losses=losses,
                              generate_fn=generate_fn(ctx.model, autocast) if greedy else None)
    scores = {k: gather(v).double().cpu().numpy() for k, v in local.items()}
    if ctx.reference is not None and not ctx.trained:  # the live model is the step-0 model: its losses are theirs
        for p, value in zip(flat, scores["loss"].tolist()):
            if p.ref_loss is None:
                p.ref_loss = value
    ref_loss = np.array([p.ref_loss for p in flat], dtype=np.float64) if ctx.reference is not None else None
    w = Windows(names=[name for name, _ in columns], uids=[p.uid for p in flat],
                col=np.array([c for c, (_, ps) in enumerate(columns) for _ in ps]),
                source=np.array([p.source for p in flat]),
                entries=[ctx.seen.entries.get(p.uid, [0, 0, 0]) for p in flat], steps=np.array([p.step for p in flat]),
                scores=scores, member=membership_scores(scores, np.array([p.zlib_bytes for p in flat]), ref_loss),
                ref_loss=ref_loss)
    ctx.timings["extraction"] = time.perf_counter() - start  # greedy extraction and the teacher-forced scores
    return w, acts


def memorisation_by_column(w: Windows, probes: ProbeSet) -> dict[str, float]:
    """Every extraction score by first-seen bucket (the column), by last-seen bucket and by exposure count, with
    intervals; each column's source mix."""
    out = {}
    last_col = np.array([probes.bucket_of(e[1]) if step else -1 for step, e in zip(w.steps, w.entries)])
    exposure_col = np.array([exposure_bin(e[2]) if step else "" for step, e in zip(w.steps, w.entries)])
    for c, name in enumerate(w.names):
        out.update(_score_group(w.scores, w.col == c, name))
        if name != UNSEEN:
            out.update(_score_group(w.scores, last_col == c, name, "last_seen"))
        if (w.col == c).any():
            out.update({K.probe_share(s, name): float((w.source[w.col == c] == s).mean()) for s in SOURCE_NAMES})
    for b in K.EXPOSURE_BINS:
        out.update(_score_group(w.scores, exposure_col == b, b, "exposures"))
    return out


def membership(w: Windows, seed: int, full_lr: tuple[int, int] | None = None) -> dict[str, float]:
    """Each bucket's windows against the unseen ones: MIA AUROC and TPR per score, the DiD profile (pooled and
    within source), the loss gap; and the training-order test over every seen window."""
    out, unseen = {}, w.unseen
    if unseen.any() and (~unseen).any():
        out[K.MEM_LOSS_GAP] = float(w.scores["loss"][unseen].mean() - w.scores["loss"][~unseen].mean())
    for c, name in enumerate(w.names):
        rows = w.col == c
        if name == UNSEEN or not rows.any() or not unseen.any():
            continue
        for score, values in w.member.items():
            a, b = values[rows], values[unseen]
            out.update(_with_ci(K.mia("auc", score, name), float(auroc(a, b)), auroc_interval(a, b)))
            if len(b) >= 100:  # TPR at 1 % FPR needs ≥ 100 non-members; with fewer, the lowest FPR there is: 0
                out[K.mia("tpr1", score, name)] = tpr_at_fpr(a, b, 0.01)
            else:  # a rate over the bucket's windows: its Wilson interval (at 16 windows: ±0.3 or more)
                tpr = tpr_at_fpr(a, b, 0.0)
                out.update(_with_ci(K.mia("tpr0", score, name), tpr, wilson_interval(round(tpr * len(a)), len(a))))
        if w.ref_loss is not None:  # Δloss = loss now − loss at step 0; DiD = mean Δ(bucket) − mean Δ(unseen)
            delta = w.scores["loss"] - w.ref_loss
            a, b = delta[rows], delta[unseen]
            out.update(_with_ci(K.did(name), float(a.mean() - b.mean()), difference_interval(a, b)))
            # the same within each source, weighted by the bucket's mix: fine-tuning moves sources' losses unequally
            value, low, high = stratified_difference(a, w.source[rows], b, w.source[unseen])
            if value == value:  # nan: no source has windows on both sides yet
                out.update(_with_ci(K.did(name, stratified=True), value, (low, high)))
    out.update(order_metrics(w.member, w.entries, ~unseen, w.source, seed, full_lr))
    return out


def latent_metrics(w: Windows, acts: dict, permutations: int, seed: int, min_windows: int,
                   fdr_q: float) -> tuple[dict[str, float], dict]:
    """Per hook: temporal / source purity with permutation nulls, latents selective for time or source under FDR
    control, and the latents whose prefix activation tells memorised windows from the rest of their bucket."""
    out, matrices = {}, {}
    generator = torch.Generator().manual_seed(seed)
    src = torch.tensor([SOURCE_NAMES.index(s) for s in w.source])
    unseen = w.unseen
    memorised = top_decile_within(w.member["ref"], w.col) if "ref" in w.member else None
    for hook, (S, n, X) in acts.items():
        m, summary = purity_summaries(S, n, torch.as_tensor(w.col), src, permutations, generator)
        out.update({K.chrono(hook, k): v for k, v in summary.items()})
        if m:
            m["columns"] = [w.names[i] for i in m.pop("temporal_labels")]
            m["source_columns"] = [SOURCE_NAMES[i] for i in m.pop("source_labels")]
            matrices[hook] = m
        selective = {}  # latents that carry time (bucket columns only, within source) or source, under FDR control
        for kind, labels, rows, strata in (("time", w.col, ~unseen, src.numpy()),
                                           ("source", src.numpy(), np.ones(len(w.col), bool), None)):
            got = selective_latents(S.numpy()[rows], n.numpy()[rows], labels[rows], min_windows, fdr_q,
                                    None if strata is None else strata[rows])
            if got is not None:
                out.update({K.chrono(hook, f"selective_{kind}_{k}"): float(got[k]) for k in ("count", "frac", "fire")})
                out[K.chrono(hook, f"selective_{kind}_tested")] = float(len(got["tested"]))
                selective[kind] = [{"latent": int(i), "q": float(q)} for i, q in zip(got["tested"], got["q"])
                                   if q <= fdr_q]
        if selective:
            matrices.setdefault(hook, {})["selective_latents"] = selective
        if memorised is not None:
            got = memorisation_latents(X[~unseen], memorised[~unseen], w.col[~unseen], permutations, seed)
            if got is not None:
                out.update({K.chrono(hook, f"memorisation_latents_{k}"): got[k]
                            for k in ("auc_max", "auc_max_null", "auc_max_p")})
                matrices.setdefault(hook, {})["memorisation_latents"] = got["table"]
    return out, matrices


def top_decile_within(score: np.ndarray, column: np.ndarray) -> np.ndarray:
    """The "memorised" windows: the top 10 % (at least one) of each column by the reference-difference score
    (exact matches are too rare at fine-tuning scale to label with)."""
    out = np.zeros(len(score), dtype=bool)
    for c in np.unique(column):
        rows = np.flatnonzero(column == c)
        k = max(1, int(round(0.1 * len(rows))))
        out[rows[np.argsort(-score[rows])[:k]]] = True
    return out


def purity_summaries(S: torch.Tensor, n: torch.Tensor, col: torch.Tensor, src: torch.Tensor, permutations: int,
                     generator: torch.Generator) -> tuple[dict, dict[str, float]]:
    """(matrices, summaries) of the temporal purity (columns: buckets + unseen that have windows), the source
    purity, and the temporal purity within each source, each with its permutation null and excess."""
    matrices, out = {}, {}
    for kind, labels, strata in (("temporal", col, None), ("source", src, None), ("temporal_stratified", col, src)):
        got = (stratified_purity(S, n, labels, strata, permutations, generator) if strata is not None
               else purity_with_null(S, n, labels, permutations, generator))
        if got is None:  # fewer than two columns (e.g. only "unseen" at step 0): purity is undefined, not logged
            continue
        out.update({f"{kind}_purity": got["observed"], f"{kind}_purity_null": got["null"],
                    f"{kind}_purity_excess": got["excess"], f"{kind}_purity_null_sd": got["null_sd"]})
        if "p_value" in got:  # the permutation test's one-sided p (pooled kinds; the stratified one has its SD)
            out[f"{kind}_purity_p"] = got["p_value"]
        if strata is None:
            matrices[kind], matrices[f"{kind}_labels"] = got["matrix"], got["labels"].tolist()
        if kind == "temporal":
            out["temporal_purity_gt50"], out["purity_columns"] = got["gt50"], float(got["columns"])
    return (matrices if "temporal" in matrices else {}), out


@torch.no_grad()
def scored_activations(model, saes: SAEBank, windows: torch.Tensor, autocast, start: int = PREFIX_TOKENS,
                       losses: list | None = None, variants: bool = False):
    """Per chunk of windows: {hook: (latent activations [chunk, S, F] on the window's tokens from `start` on
    (default: the S scored tokens), run in their training context; the SAE mask [chunk, S])}; activations are
    0 where the mask drops a token (position 0, BOS, norm outliers). `losses`: a list each chunk's −log p of its
    scored tokens [chunk, SCORED_TOKENS] is appended to, from the same forward (a chunk's logits are not kept: a
    probe set's would be windows × 64 × vocabulary floats). variants: also each variant's, keyed
    variant/<name>/<hook>."""
    for padded, n in fixed_chunks(windows, EVAL_CHUNK):  # one chunk size: a window's bits do not depend on the set
        with autocast:
            chunk_logits, cache = model.run_with_cache(padded, names_filter=lambda name: name in saes.hook_points,
                                                       logits_to_keep=SCORED_TOKENS + 1)
        chunk = padded[:n]
        if losses is not None:
            losses.append(token_losses(chunk_logits[:n].float(), chunk, PREFIX_TOKENS))
        del chunk_logits
        cache = {hook: cache[hook][:n] for hook in saes.hook_points}
        base = saes.base_mask(chunk, torch.zeros_like(chunk))[:, start:]  # windows hold no padding
        out = {}
        for hook in saes.hook_points:
            flat = hooks.flatten(cache[hook][:, start:])
            keep = base.flatten() & ~saes.outliers(hook, flat)  # the variants share the leading bank's token mask
            for key, bank in [(hook, saes)] + [(K.variant(name, hook), v) for name, v in saes.variants.items()
                                               if variants and hook in v.hook_points]:
                acts = torch.zeros(keep.numel(), bank.saes[hook].cfg.d_sae, device=flat.device)
                acts[keep] = bank.encode(hook, flat[keep]).float()
                out[key] = acts.view(len(chunk), -1, acts.shape[-1]), keep.view(len(chunk), -1)
        yield out


@torch.no_grad()
def probe_activation_sums(model, saes: SAEBank, windows: torch.Tensor, autocast, losses: list | None = None,
                          records=None) -> tuple[dict, dict, dict]:
    """Per window and SAE: summed latent activations over its scored tokens that the SAE mask keeps, how many
    there are, and the mean activation over its kept prefix tokens → ({hook: [W, F]}, {hook: [W]}, {hook: [W, F]}),
    the variants' SAEs under variant/<name>/<hook>. `losses`: see scored_activations. `records`: a
    latent_records.LatentRecords each chunk's scored tokens are also folded into (its windows must be these)."""
    sums, counts, prefix = ({} for _ in range(3))
    for chunk in scored_activations(model, saes, windows, autocast, start=0, losses=losses, variants=True):
        if records is not None:
            records.add(chunk, PREFIX_TOKENS)
        for hook, (acts, keep) in chunk.items():
            if hook not in sums:
                sums[hook], counts[hook], prefix[hook] = [], [], []
            sums[hook].append(acts[:, PREFIX_TOKENS:].sum(1))
            counts[hook].append(keep[:, PREFIX_TOKENS:].sum(1).float())
            prefix[hook].append(acts[:, :PREFIX_TOKENS].sum(1) / keep[:, :PREFIX_TOKENS].sum(1, keepdim=True).clamp_min(1))
    return tuple({h: torch.cat(v) for h, v in d.items()} for d in (sums, counts, prefix))


@torch.no_grad()
def canary_exposures(model, canaries: Canaries, autocast, device, seed: int = 0, final: bool = True
                     ) -> dict[str, float]:
    """Mean exposure per repetition cell (and of the never-inserted controls, the null), rank-based and
    extrapolated (with a 95 % bootstrap interval over the candidate set), against every candidate (final) or the
    first canaries.interim of them. The candidates' NLLs are computed once and shared by every secret."""
    # the shared prefix once (its keys and values cached), then 64 candidates per forward of the HF model
    prefix = torch.tensor(canaries.prefix, device=device)
    reference = canaries.reference if final else canaries.reference[:canaries.interim]
    nll = prefixed_nll(model.original_model, prefix, torch.cat([canaries.secrets, reference]).to(device),
                       CANARY_CHUNK, autocast).cpu()
    secrets, others = nll[:len(canaries.secrets)], nll[len(canaries.secrets):]
    extrapolated = extrapolated_exposure(secrets.double().numpy(), others)  # one fit, every secret
    out = dict(zip((K.CANARY_FIT_KS, K.CANARY_FIT_TAIL), skewnorm_fit_check(others)))
    out[K.CANARY_CANDIDATES] = len(others)
    cells = {label: [i for i, c in enumerate(canaries.cells) if c == label] for label in canaries.labels()}
    intervals = extrapolated_interval({label: secrets[cell].double().numpy() for label, cell in cells.items()},
                                      others, canaries.bootstrap, seed)
    # the rank among all secrets: as many draws from the model's own tempered distributions as candidates
    low, high = canaries.alphabet
    draws, logq = sample_secrets(model.original_model, prefix, len(others), canaries.length, canaries.alphabet,
                                 torch.Generator().manual_seed(seed), autocast=autocast)
    bits, lo, hi = sampled_exposure(secrets.double().numpy(), draws.numpy(), logq.numpy(), canaries.length, high - low)
    for label, cell in cells.items():
        out[K.canary(label)] = float(np.mean([exposure(secrets[i].item(), others) for i in cell]))
        out.update(_with_ci(K.canary(label, True), float(np.mean(extrapolated[cell])), intervals[label]))
        # a cell's interval: the mean of its secrets' bounds (their errors share the draws); no upper bound when a
        # secret has none (no draw reached it: its value is then a lower bound)
        sampled = _with_ci(K.canary(label, sampled=True), float(np.mean(bits[cell])),
                           (float(np.mean(lo[cell])), float(np.mean(hi[cell]))))
        out.update({k: v for k, v in sampled.items() if math.isfinite(v)})
    return out
