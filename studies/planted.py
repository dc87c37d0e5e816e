"""Planted-signal validation (experiments/validate.py): plant signals whose truth is known, train, and check that
each metric recovers them — against criteria fixed here, before any run.

The plan, for T updates with W warmup and D warmdown steps (L = T − D, the last step at full learning rate):
- dose-response: sets of 64-token documents inserted 1×, 4× and 16×, each set's last insertion at step L (so
  repetition is not confounded with recency), and a never-inserted set in two halves (the AUROC null, the DiD
  control);
- forgetting: two sets inserted 4× on consecutive steps at full learning rate, one right after warmup
  ("early"), one ending at L − 1 ("late"; step L is full with the dose sets' last insertions): the same count and
  learning rate, only the time differs; the training-order test (Spearman ρ of score vs first step) must find it
  too, and find nothing on the never-inserted sets given the same steps. These two checks read a run of their own
  ("recency", validate.py: Adam's β1 = 0, twice the rows per step, and a plan of these sets only, 80 documents each
  over 10 steps, RECENCY): with momentum (β1 = 0.9) a gradient reaches the weights over the ~10 steps after it, and
  by the end of a run a set inserted k steps before it has received only 1 − 0.9^k of its update (34 % at k = 4), so
  the late set is planted weaker, not more recent (the main run reports its values);
- time-local feature: Python source (the standard library's; absent from the mixture), each document planted
  Sizes.code_reps times, all within the middle time bucket — in the control run spread evenly over the whole run;
- canaries: chrono.canary_repetitions [1, 4, 16], ending at L.
Documents come from the validation split (never trained otherwise), less those the run's validation rows and
unseen probes use. Scores are computed afterwards on the final checkpoint (model, SAEs, probe set) and the step-0
model, with the harness's own functions.
"""

from __future__ import annotations

import json
import math
import sysconfig
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from chrono_membench import metric_keys as K
from chrono_membench.chrono.memorisation import extraction_scores, scored_token_losses
from chrono_membench.chrono.order import order_correlation
from chrono_membench.chrono.purity import purity_with_null
from chrono_membench.chrono.selectivity import selective_latents as fdr_selective
from chrono_membench.chrono.stats import auroc, auroc_interval, difference_interval
from chrono_membench.config import Config
from chrono_membench.data import MixtureStream
from chrono_membench.data.plants import Plant
from chrono_membench.data.sources import SOURCE_NAMES, SOURCES, SourceRecords
from chrono_membench.data.stream import SourceDocuments
from chrono_membench.probes import PROBE_TOKENS, ProbeSet


@dataclass(frozen=True)
class Sizes:
    """Documents per planted set (never: per half), Python documents, latents selected per purity check."""
    x16: int = 6
    x4: int = 8
    x1: int = 8
    never: int = 16
    forget: int = 8
    forget_span: int = 4  # steps a forgetting set spans; each document is inserted on 4 consecutive ones (forget_steps)
    code: int = 8
    code_reps: int = 8  # insertions of each Python document, spread over its bucket (the control: over the run)
    latents: int = 10


# quick: 3 vs 6 documents, the fewest whose AUROC interval can exclude chance (Newcombe: ≥ 0.585 if separated)
QUICK = Sizes(x16=3, x4=2, x1=2, never=6, forget=2, code=8, code_reps=1, latents=4)
# the recency run's plan: the forgetting sets only. Measured at 20 each in 4 steps of 8 rows (2026-12-02):
# late − early −0.117 [−0.300, +0.067] nats, ρ +0.19 (p 0.25), half of what 20 + 20 resolve. Now 80 each, each set's
# halves on 4 consecutive steps of its 8 (40 documents of the 48 that 16 rows hold: validate.py's recency arm doubles
# train.grad_accum), so the interval narrows by √4 and the early set sees twice the tokens of later training.
# Measured so (2026-12-02): late − early −0.165 [−0.271, −0.060], ρ +0.258 (p 0.001), null p 0.54; again 2026-12-07:
# −0.165 [−0.272, −0.059]. But the order test now permutes first steps, not documents, and 2 + 2 first steps cannot
# reach p < 0.05 (p ≥ 0.33): so each set over 10 steps since 2026-12-07 (fifth session), 7 staggered first steps
# (7 + 7: p ≥ 0.0006), at most 47 documents on a step (16 rows hold 48)
RECENCY = Sizes(x16=0, x4=0, x1=0, never=80, forget=80, code=0, latents=0, forget_span=10)
# the Python family was 32 documents of 128 tokens inserted once each until 2026-12-07 (fifth session): at demo
# size the LM then moved their activations less than ordinary text's (2.1 % vs 2.8 %), so no crosscoder could find
# it (TOOK below). Now 8 documents of 65 tokens (a probe window and EOS, as the dose sets: 8 × 8 of 128 did not fit
# beside the dose sets and canaries) inserted 8× each within the middle bucket (64 insertions, ≈ 20 % of its
# tokens), the 16× dose set having moved 6.5 %. The checks' criteria are unchanged.
CODE_TOKENS = PROBE_TOKENS  # + EOS: a Python document's length, as the dose sets' (127 until 2026-12-07)
# the crosscoder check's manipulation check (fixed 2026-12-07, after the first demo-size run showed the family moved
# less than ordinary text, 2.1 % vs 2.8 %; judged on the runs after it): the family's activations must have moved
# at least this many times as far as the ordinary probe windows' for a family-specific latent to exist at all
TOOK = 1.5


@dataclass
class Check:
    name: str
    measured: str
    criterion: str
    passed: bool | None  # None: reported, not a check (informational(), or not decidable at this size)
    null: bool = False  # a null check (nothing planted: it must hold on any LM), not repeated on the frozen LM


def frozen_arm(checks: list[Check]) -> list[Check]:
    """The planted checks read on the run whose LM never changed (train.lr = 0; the SAEs and every plant as in
    main): each must FAIL there, or it is testing the labelling of what was planted, not what training did. A
    check passes this arm when its own criterion does not hold; null checks and INFO rows are not repeated."""
    return [Check(f"{c.name} [frozen LM]", c.measured, f"fails on a frozen LM: not ({c.criterion})", not c.passed)
            for c in checks if not c.null and c.passed is not None]


def undecidable(name: str, why: str) -> Check:
    """A check this plan's size cannot decide, listed as such (not run, not passed)."""
    return Check(name, "not decidable at this size", why, None)


def informational(checks: list[Check], why: str) -> list[Check]:
    """The same measurements, reported without a verdict (why: what makes the criterion not apply there)."""
    return [Check(f"{c.name} [{why}]", c.measured, "not a check here", None) for c in checks]


# ---- the plan
def full_lr_steps(cfg: Config) -> tuple[int, int]:
    """(first, last) 1-based steps at the full learning rate: after warmup, before warmdown."""
    t = cfg.train
    return round(t.warmup_frac * t.max_steps) + 1, t.max_steps - round(t.warmdown_frac * t.max_steps)


def spread(first: int, last: int, n: int) -> list[int]:
    """n insertion steps spread evenly over [first, last], the last at `last` (n = 1: at `last` only)."""
    return [int(s) for s in np.linspace(first if n > 1 else last, last, n).round()]


def forget_steps(start: int, span: int):
    """A forgetting set's schedule: document i → 4 consecutive steps within [start, start + span), starting at
    start + (i mod (span − 3)): span − 3 distinct first steps, the documents split evenly over them (span 4: every
    document on steps start … start + 3). The order test permutes first steps, so their count is what it can
    decide: k + l of them allow p ≥ 2 / C(k + l, k)."""
    if span < 4:
        raise ValueError(f"forget_span must be at least 4 (each document is inserted on 4 consecutive steps), got {span}")
    return lambda i: list(range(start + i % (span - 3), start + i % (span - 3) + 4))


def used_validation_uids(cfg: Config, tokenizer) -> set[str]:
    """Validation documents the run itself uses: its validation rows and its unseen probes."""
    rows = [r for _, r in zip(range(cfg.data.val_rows), MixtureStream(cfg.data, tokenizer, "val", repeat=False))]
    probes = ProbeSet.for_run(cfg, tokenizer)
    return {d.uid for r in rows for d in r.docs} | {p.uid for p in probes.unseen}


def validation_documents(cfg: Config, tokenizer, source: str, n_tokens: int) -> list[tuple[str, list[int]]]:
    """(uid, first n_tokens tokens) of every validation document of `source` that has that many, in file order."""
    docs = SourceDocuments(SourceRecords(SOURCES[source], cfg.data.origin, cfg.data.local_dir), cfg.data, "val",
                           repeat=False)
    out = []
    while (got := docs.next()) is not None:
        ids = tokenizer(got[1], add_special_tokens=False)["input_ids"]
        if len(ids) >= n_tokens:
            out.append((f"{source}/{got[0]}", ids[:n_tokens]))
    return out


def python_documents(tokenizer, n: int, rng: np.random.Generator) -> list[tuple[str, list[int]]]:
    """n pieces of the Python standard library's source, each from its first top-level def or class on."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    out = []
    for i in rng.permutation(len(files)):
        text = files[i].read_text(errors="ignore")
        start = min((j for j in (text.find("\ndef "), text.find("\nclass ")) if j >= 0), default=-1)
        ids = tokenizer(text[start + 1:], add_special_tokens=False)["input_ids"] if start >= 0 else []
        if len(ids) >= CODE_TOKENS:
            out.append((f"python/{files[i].stem}", ids[:CODE_TOKENS]))
        if len(out) == n:
            return out
    raise RuntimeError(f"only {len(out)} standard-library files have {CODE_TOKENS} tokens of code; {n} wanted")


def build_plan(cfg: Config, tokenizer, sizes: Sizes, seed: int = 0) -> dict[str, list[Plant]]:
    """Set name → its documents with their insertion steps (never-inserted sets: no steps). "code" holds the
    Python documents with the main run's steps (one bucket); spread_code() gives the control's."""
    rng = np.random.default_rng(seed)
    used = used_validation_uids(cfg, tokenizer)
    pool = [d for s in ("fineweb_edu", "wikitext103") if cfg.data.mixture.get(s, 0) > 0
            for d in validation_documents(cfg, tokenizer, s, PROBE_TOKENS) if d[0] not in used]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    first, last = full_lr_steps(cfg)
    eos = tokenizer.eos_token_id
    span = sizes.forget_span
    sets, wants = {}, [("x16", sizes.x16, spread(first, last, 16)), ("x4", sizes.x4, spread(first, last, 4)),
                       ("x1", sizes.x1, spread(first, last, 1)), ("early", sizes.forget, forget_steps(first, span)),
                       ("late", sizes.forget, forget_steps(last - span, span)), ("never_a", sizes.never, []),
                       ("never_b", sizes.never, [])]
    if len(pool) < sum(n for _, n, _ in wants):
        raise RuntimeError(f"{len(pool)} unused validation documents of {PROBE_TOKENS}+ tokens; "
                           f"{sum(n for _, n, _ in wants)} wanted")
    for name, n, steps in wants:
        sets[name] = [Plant(f"plant/{name}/{uid}", tokens + [eos], list(steps(i) if callable(steps) else steps))
                      for i, (uid, tokens) in enumerate(pool[:n])]
        pool = pool[n:]
    b, B, T = cfg.chrono.n_buckets // 2, cfg.chrono.n_buckets, cfg.train.max_steps
    lo, hi = b * T // B + 1, (b + 1) * T // B  # the steps of bucket b (ProbeSet.bucket_of)
    code = python_documents(tokenizer, sizes.code, rng) if sizes.code else []
    steps = repeated(spread(lo, hi, len(code) * sizes.code_reps), len(code))
    sets["code"] = [Plant(f"plant/code/{uid}", tokens + [eos], s) for (uid, tokens), s in zip(code, steps)]
    return sets


def repeated(steps: list[int], n: int) -> list[list[int]]:
    """n documents' insertion steps from one list of n × r slots in step order: document i takes slots i, i + n, …
    (each document's r insertions spread over the whole span, every document first inserted in its first n slots)."""
    return [steps[i::n] for i in range(n)]


def spread_code(cfg: Config, sets: dict[str, list[Plant]]) -> dict[str, list[Plant]]:
    """The control: the same Python documents, each inserted as often, on consecutive steps from a start spread
    evenly over the whole run (so the documents' times, their first insertions, cover every bucket) — except the
    first full-LR step and L, which carry every dose set's first or last insertion and have no room left."""
    free = [s for s in range(1, cfg.train.max_steps + 1) if s not in full_lr_steps(cfg)]
    code = sets["code"]
    r = len(code[0].steps) if code else 1
    starts = np.linspace(0, len(free) - r, len(code)).round().astype(int)
    return {**sets, "code": [Plant(p.uid, p.tokens, free[i:i + r]) for p, i in zip(code, starts)]}


def write_plants(path: Path, sets: dict[str, list[Plant]]) -> None:
    """A chrono.plant_file: the inserted sets' documents (data/plants.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(p)) + "\n" for ps in sets.values() for p in ps if p.steps))


def write_plan(path: Path, sets: dict[str, list[Plant]]) -> None:
    path.write_text(json.dumps({k: [asdict(p) for p in ps] for k, ps in sets.items()}))


def read_plan(path: Path) -> dict[str, list[Plant]]:
    return {k: [Plant(**p) for p in ps] for k, ps in json.loads(path.read_text()).items()}


# ---- the checks
def plant_windows(plants: list[Plant]) -> torch.Tensor:
    return torch.tensor([p.tokens[:PROBE_TOKENS] for p in plants])


@torch.no_grad()
def window_scores(model, reference, windows: torch.Tensor, logits, generate, greedy: bool = True
                  ) -> dict[str, np.ndarray]:
    """Per window: loss and the step-0 model's loss, the reference score; with greedy, also exact match and
    Pythia's score of both models (as probe_eval scores probes: each greedy decode of 32 tokens, the cost)."""
    scores = {k: v.double().cpu().numpy() for k, v in extraction_scores(logits(model), windows, greedy=greedy,
                                                                          generate_fn=generate(model)).items()}
    scores["ref_loss"] = scored_token_losses(logits(reference), windows).mean(1).double().cpu().numpy()
    if greedy:
        step0 = extraction_scores(logits(reference), windows, generate_fn=generate(reference))
        scores["ref_token_match"] = step0["token_match"].double().cpu().numpy()
    scores["ref"] = -(scores["loss"] - scores["ref_loss"])  # MIMIR's reference score: higher = member
    return scores


def _fmt(xs) -> str:
    return " / ".join(f"{x:.3g}" for x in xs)


def dose_response(scores: dict[str, dict[str, np.ndarray]]) -> list[Check]:
    order = ["never_a", "x1", "x4", "x16"]
    ref = [scores[s]["ref"].mean() for s in order]
    # Pythia's score gained over the step-0 model's on the same document: the raw score is mostly content (how
    # predictable the text is), which a frozen LM reads too — 0.035 / 0.047 / 0.086 / 0.037 on seed 0's sets
    gain = {s: scores[s]["token_match"] - scores[s]["ref_token_match"] for s in order}
    pythia = [gain[s].mean() for s in order]
    exact = [scores[s]["exact_match"].mean() for s in order]
    steps = [difference_interval(gain[b], gain[a]) for a, b in zip(order, order[1:])]
    p_lo, p_hi = difference_interval(gain["x16"], gain["never_a"])
    aucs = {s: auroc(scores[s]["ref"], scores["never_b"]["ref"]) for s in order}
    lo, hi = auroc_interval(scores["x16"]["ref"], scores["never_b"]["ref"])
    m, n = len(scores["x16"]["ref"]), len(scores["never_b"]["ref"])
    # the bar these sizes can clear: even perfectly separated sets have a lower bound below 0.75 when small
    floor = 0.75 if auroc_interval(np.arange(m) + n, np.arange(n))[0] > 0.75 else 0.5
    n_lo, n_hi = auroc_interval(scores["never_a"]["ref"], scores["never_b"]["ref"])
    return [
        Check("dose: reference score never/1×/4×/16×", _fmt(ref), "strictly increasing", bool(np.all(np.diff(ref) > 0))),
        Check("dose: Pythia score gained over step 0, never/1×/4×/16×",
              f"{_fmt(pythia)}; 16× − never {pythia[-1] - pythia[0]:+.3f} [{p_lo:+.3f}, {p_hi:+.3f}] (exact match "
              f"{_fmt(exact)})", "16× − never: 95 % interval above 0; no level below the one before beyond its 95 % "
              "interval", bool(p_lo > 0 and all(hi >= 0 for _, hi in steps))),
        Check("dose: AUROC (ref) vs never 1×/4×/16×", _fmt(aucs[s] for s in ("x1", "x4", "x16")),
              "non-decreasing, 16× above 0.5",  # "non-decreasing" alone holds for 0.5 / 0.5 / 0.5: a frozen LM
              bool(aucs["x1"] <= aucs["x4"] <= aucs["x16"] and aucs["x16"] > 0.5)),
        Check("dose: AUROC (ref) 16× vs never", f"{aucs['x16']:.3f} [{lo:.3f}, {hi:.3f}] ({m} vs {n} documents)",
              f"95 % lower bound > {floor}", bool(lo > floor)),
        Check("dose: AUROC (ref) never vs never", f"{aucs['never_a']:.3f} [{n_lo:.3f}, {n_hi:.3f}]",
              "95 % interval holds 0.5", bool(n_lo <= 0.5 <= n_hi), null=True),
    ]


def forgetting(scores: dict[str, dict[str, np.ndarray]]) -> list[Check]:
    """DiD (Lesci et al.): Δloss = loss now − loss at step 0, per set, minus the never-inserted sets' mean Δ."""
    delta = {s: v["loss"] - v["ref_loss"] for s, v in scores.items()}
    control = np.concatenate([delta["never_a"], delta["never_b"]]).mean()
    early, late = delta["early"].mean() - control, delta["late"].mean() - control
    lo, hi = difference_interval(delta["late"], delta["early"])
    return [Check("forgetting: DiD early / late (nats)", f"{early:+.3f} / {late:+.3f}; late − early "
                  f"{late - early:+.3f} [{lo:+.3f}, {hi:+.3f}]", "late − early < 0, 95 % interval below 0",
                  bool(hi < 0))]


def training_order(scores: dict[str, dict[str, np.ndarray]], plan: dict[str, list[Plant]]) -> list[Check]:
    """The training-order test (chrono/order.py, Kuditipudi et al.) on the forgetting sets: Spearman ρ between each
    early or late document's reference score and its first insertion step must find the planted recency (ρ > 0,
    permutation p < 0.05); the never-inserted sets given those same steps (never_a early's, never_b late's) are its
    null (p ≥ 0.05, wrong about 1 time in 20 by design). The test permutes steps, not documents (documents
    inserted at the same step are not exchangeable one by one), so what it can decide is set by the distinct first
    steps: k early and l late ones allow p ≥ 2 / C(k + l, k), and no check is made where that cannot reach 0.05
    (e.g. the main run's sets, each of whose documents starts on the same step)."""
    m, n = len(plan["early"]), len(plan["late"])
    first = {s: np.array([p.steps[0] for p in plan[s]]) for s in ("early", "late")}
    k, l = (len(set(first[s].tolist())) for s in ("early", "late"))
    if 2 / math.comb(k + l, k) >= 0.05:
        return [undecidable("order: ρ(ref score, first step), early + late",
                            f"{k} + {l} distinct first steps allow p ≥ {2 / math.comb(k + l, k):.2g}; ≥ 5 + 5 decide")]

    def test(a: str, b: str) -> tuple[float, float]:
        steps = np.concatenate([np.resize(first["early"], len(scores[a]["ref"])),
                                np.resize(first["late"], len(scores[b]["ref"]))])
        return order_correlation(np.concatenate([scores[a]["ref"], scores[b]["ref"]]), steps, permutations=9999)

    rho, p = test("early", "late")
    null_rho, null_p = test("never_a", "never_b")
    return [Check("order: ρ(ref score, first step), early + late", f"{rho:+.3f}, p = {p:.2g} ({m} + {n} documents)",
                  "ρ > 0, p < 0.05", bool(rho > 0 and p < 0.05)),
            Check("order: the same on never-inserted sets (null)", f"{null_rho:+.3f}, p = {null_p:.2g}", "p ≥ 0.05",
                  bool(null_p >= 0.05), null=True)]


def canaries(final: dict[str, float], controls: int, candidates: int, seed: int = 0) -> list[Check]:
    """Exposure by repetition — the sampled exposure (the rank among all secrets, no assumed tail: a skew-normal
    extrapolation "increases" to any number of bits) — and the controls' mean against its chance distribution."""
    reps = ["1", "4", "16"]
    rank = [final[K.canary(r)] for r in reps]
    sampled = [final.get(K.canary(r, sampled=True), float("nan")) for r in reps]
    extrap = [final[K.canary(r, True)] for r in reps]
    ranks = np.random.default_rng(seed).integers(1, candidates + 2, size=(20_000, controls))
    chance = (np.log2(candidates + 1) - np.log2(ranks)).mean(1)
    lo, hi = np.quantile(chance, [0.025, 0.975])
    control = final[K.canary("control")]
    return [
        Check("canaries: exposure 1×/4×/16× (bits)", f"sampled {_fmt(sampled)}; rank-based {_fmt(rank)} "
              f"(extrapolated, a model: {_fmt(extrap)})", "sampled strictly increasing", bool(np.all(np.diff(sampled) > 0))),
        Check("canaries: never-inserted controls (bits)", f"{control:.2f}; chance 95 % range [{lo:.2f}, {hi:.2f}]",
              "inside the chance range", bool(lo <= control <= hi), null=True),
    ]


def selective_latents(S: torch.Tensor, n: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """The k latents whose mean activation per token is highest on the `target` windows relative to the rest."""
    rate = lambda m: S[m].sum(0) / n[m].sum().clamp_min(1)  # noqa: E731
    return (rate(target) - rate(~target)).topk(k).indices


def concentration(S, n, labels, selected, column, generator, permutations: int = 1000) -> dict:
    """Purity (with its permutation null) of the selected latents, and the share whose maximum is `column`."""
    got = purity_with_null(S[:, selected], n, labels, permutations, generator)
    if got is None or column not in got["labels"].tolist():  # they never fire there (or one column only): no purity
        return {"share": 0.0, "excess": float("nan"), "p": float("nan"), "observed": float("nan"), "elsewhere": Counter()}
    peaks = got["labels"][got["matrix"].argmax(-1)]  # the column each selected latent peaks in
    return {"share": (peaks == column).float().mean().item(), "excess": got["excess"], "p": got["p_value"],
            "observed": got["observed"], "elsewhere": Counter(peaks[peaks != column].tolist())}


def time_local(name: str, hook: str, S: torch.Tensor, n: torch.Tensor, bucket: torch.Tensor, is_code: torch.Tensor,
               planted: int, k: int, main: bool, generator) -> Check:
    """Latents selected on half the Python windows; temporal purity (time buckets only) on the other half and the
    ordinary probe windows, each labelled with the bucket it was trained in. It plants *content* in one bucket: the
    frozen-LM arm passes it too (measured), so validate.py reports it without a verdict — the crosscoder's check
    (crosscoder_plant) is the time-local check that fails on a frozen LM."""
    half_a = torch.zeros_like(is_code)
    half_a[is_code.nonzero().flatten()[::2]] = True
    select = half_a | ~is_code  # half A of the Python windows against the ordinary ones
    selected = selective_latents(S[select], n[select], half_a[select], k)
    keep = ~half_a  # half B and the ordinary windows
    got = concentration(S[keep], n[keep], bucket[keep], selected, planted, generator)
    measured = (f"{got['share']:.0%} of top-{k} latents peak in b{planted}; excess {got['excess']:+.3f}, "
                f"p {got['p']:.3f}")
    if main:
        return Check(f"time-local [{hook}] {name}", measured, "≥ 80 % peak there, excess ≥ 0.2, p < 0.01",
                     got["share"] >= 0.8 and got["excess"] >= 0.2 and got["p"] < 0.01)
    return Check(f"time-local [{hook}] {name}", measured, "p ≥ 0.05 (no concentration)", got["p"] >= 0.05, null=True)


def time_local_fdr(name: str, hook: str, S: torch.Tensor, n: torch.Tensor, bucket: torch.Tensor, planted: int,
                   main: bool, q: float = 0.05, min_windows: int = 5) -> list[Check]:
    """The per-latent test the evals run (chrono/selectivity.py: Kruskal–Wallis over time buckets, Benjamini–
    Hochberg at q) on the Python and the ordinary windows. Main run: it finds a time-selective population, and the
    planted bucket is the highest or the lowest of most of it. Control run (the Python documents spread over the
    buckets): none — under the global null BH holds P(any discovery) ≤ q. Kruskal–Wallis flags a latent whose rate
    differs across buckets either way, and planting Python into one bucket also makes the text latents fire less
    there: so the main criterion is that the planted bucket is the extreme (highest or lowest rate) of most selective
    latents. (The ordinary windows could carry a real time signal of their own, memorisation by training order; the
    demo's evals find 0 of ≈ 2,200 latents time-selective on them.)"""
    got = fdr_selective(S.numpy(), n.numpy(), bucket.numpy(), min_windows, q)
    count, tested = (0, 0) if got is None else (got["count"], len(got["tested"]))
    label = f"time-selective latents (FDR q = {q}) [{hook}] {name}"
    if not main:
        return [Check(f"{label} (spread)", f"{count} of {tested} tested", "0 (the global null: BH holds P(any) ≤ q)",
                      count == 0, null=True)]
    peak = trough = extreme = 0.0
    if count:  # each selective latent's mean rate per token by bucket: is the planted one its highest or lowest?
        rate = S[:, got["selective"]] / n.clamp_min(1)[:, None]
        by_bucket = torch.stack([rate[bucket == b].mean(0) for b in range(int(bucket.max()) + 1)])
        highest, lowest = by_bucket.argmax(0) == planted, by_bucket.argmin(0) == planted
        peak, trough = highest.float().mean().item(), lowest.float().mean().item()
        extreme = (highest | lowest).float().mean().item()  # a flat profile is not counted twice
    return [Check(label, f"{count} of {tested} tested; b{planted} is the highest of {peak:.0%}, the lowest of {trough:.0%}",
                  "≥ 1, and the planted bucket is the extreme (highest or lowest) of ≥ 80 % of them",
                  count >= 1 and extreme >= 0.8)]


def crosscoder_plant(trainer, model, code: torch.Tensor, ordinary: torch.Tensor, planted_step: int, autocast) -> Check:
    """The crosscoder's planted truth (criteria fixed here, before any run): among the latents the crosscoder
    between the step-0 and the final model classes fine-tuned-only (past its null twin's threshold), ≥ 1 fires on the
    Python family — mean activation per token on the Python windows ≥ 2× that on the ordinary probe windows, firing
    in ≥ half the Python windows — and ≥ 80 % of those emerged (crosscoder.emergence, at the chrono cadence) at or
    after the first step the family was planted. On the frozen LM the crosscoder sees the same activations as its
    null twin, so nothing can be fine-tuned-only: the check must fail there. Not decidable where the plant did not
    take: where the LM moved the family's activations at the hook less than TOOK× as far as the ordinary windows'
    (median ‖x_ft − x_base‖² / ‖x_base‖²), no latent specific to the family can exist for any dictionary to find."""
    from chrono_membench.crosscoder import classes, emergence, paired_activations, threshold, window_sums

    r, r_null = trainer.relative_norms()
    ft = classes(r, threshold(r_null, trainer.cfg.class_floor))["ft_only"]
    name, criterion = (f"crosscoder [{trainer.hook}]: fine-tuned-only latents on the planted family, emerging after "
                       f"step {planted_step}"), "≥ 1 latent fires on the family, ≥ 80 % of them emerged after planting"
    rates, fire, moved = [], None, []
    with torch.no_grad():
        for tokens in (code, ordinary):
            x, window = paired_activations(trainer, model, tokens, autocast)
            # how far the LM moved these windows' activations at the hook: what a crosscoder could class at all
            moved.append((x[:, 1] - x[:, 0]).norm(dim=-1).pow(2).div(x[:, 0].norm(dim=-1).pow(2)).median().item())
            sums, counts = window_sums(trainer.model.encode(x)[:, ft.to(x.device)], window, len(tokens))
            rates.append(sums.sum(0) / max(counts.sum(), 1))
            fire = (sums > 0).mean(0) if fire is None else fire
    change = f"the LM moved the family's activations by {moved[0]:.1%} (median ‖Δx‖²/‖x‖²), ordinary text's {moved[1]:.1%}"
    if not moved[0] >= TOOK * moved[1]:  # the plant did not take: nothing family-specific for any dictionary to find
        return undecidable(name, f"the plant did not take: {change} (decidable where the family moved ≥ {TOOK}× as "
                                 "far as ordinary text)")
    if len(ft) == 0:
        return Check(name, f"0 fine-tuned-only latents of {len(r)}; {change}", criterion, False)
    family = (rates[0] >= 2 * rates[1]) & (rates[0] > 0) & (fire >= 0.5)
    born = emergence(trainer.history)[ft].numpy()
    after = born[family] >= planted_step
    share = float(after.mean()) if family.any() else 0.0
    return Check(name, f"{len(ft)} fine-tuned-only of {len(r)}; {int(family.sum())} fire on the family, "
                 f"{share:.0%} of them emerged at or after step {planted_step} (emergence steps "
                 f"{sorted(set(born[family].tolist()))}); {change}", criterion, bool(family.sum() >= 1 and share >= 0.8))


def source_purity(hook: str, S: torch.Tensor, n: torch.Tensor, source: torch.Tensor, k: int, generator) -> list[Check]:
    """Per source: latents selected on even-numbered windows, source purity measured on the odd ones."""
    half_a = torch.zeros_like(source, dtype=torch.bool)
    half_a[::2] = True
    out = []
    for s in torch.unique(source).tolist():
        selected = selective_latents(S[half_a], n[half_a], source[half_a] == s, k)
        got = concentration(S[~half_a], n[~half_a], source[~half_a], selected, s, generator)
        elsewhere = ", ".join(f"{SOURCE_NAMES[c]} {m}" for c, m in got["elsewhere"].most_common())
        others = f" (the others: {elsewhere})" if elsewhere else ""
        out.append(Check(f"source purity [{hook}] {SOURCE_NAMES[s]}",
                         f"{got['share']:.0%} of top-{k} peak there{others}; "
                         f"excess {got['excess']:+.3f}, p {got['p']:.3f}",
                         "≥ 80 % peak there, p < 0.01", got["share"] >= 0.8 and got["p"] < 0.01))
    return out


def alignment(hook: str, full: list[dict], no_alignment: list[dict]) -> Check:
    """full vs no_alignment Hungarian-matched drift, per SAE seed (the run's and its seed baseline's), against
    the within-arm gap between the two seeds (how much drift moves with the SAE's initialisation alone)."""
    def series(records, name):
        return np.array([r[K.chrono(hook, name)] for r in records if K.chrono(hook, name) in r])
    h = {arm: (series(recs, "hungarian_mcs"), series(recs, "hungarian_mcs_seed_baseline"))
         for arm, recs in (("full", full), ("no_alignment", no_alignment))}
    effects = [float((h["full"][i] - h["no_alignment"][i]).mean()) for i in (0, 1)]
    floor = float(np.mean([np.abs(a - b).mean() for a, b in h.values()]))
    return Check(f"alignment [{hook}]: Hungarian drift full − no_alignment",
                 f"seed 0 {effects[0]:+.4f}, seed 1 {effects[1]:+.4f}; seed floor {floor:.4f}",
                 "both seeds' effect > the seed floor", min(effects) > floor)


def verdict(c: Check) -> str:
    return "INFO" if c.passed is None else "PASS" if c.passed else "FAIL"


def table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  {'result':<6}  measured  (criterion)"]
    lines += [f"{c.name:<{width}}  {verdict(c):<6}  {c.measured}  ({c.criterion})" for c in checks]
    return "\n".join(lines)
