"""Comparing arms (ablations, sweep points) over seeds: per metric, each arm's mean with a 95 % t-interval over its
seeds, and its difference to the baseline arm with a 95 % interval. The suite and sweeps give seed i of every arm
the same run.seed and data.seed (same data order, same SAE initialisation), so where an arm and the baseline ran
the same seeds the difference is paired: a t-interval over the per-seed differences (common random numbers; the
seed noise both arms share cancels). Otherwise it is Welch's interval over the two sets. A difference whose
interval contains 0 is "not distinguishable from seed noise"; with one seed per arm there is no interval and the
table says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from chrono_membench.logging import final_values, split_run
from chrono_membench.run_dir import RunDir

NOISE = "not distinguishable from seed noise"


def with_variants(overrides: list[str], variants: dict[str, dict]) -> list[str]:
    """`overrides` with `variants` (SAE variant name → settings) joined to any `sae.variants=` among them, as one
    override (a second one would replace the first). A name both give is refused in one line. What suite.py and
    sweep.py use to put their SAE-only arms and points inside one LM run."""
    from chrono_membench.config import ConfigError, parse_override

    given: dict = {}
    for o in (o for o in overrides if o.startswith("sae.variants=")):
        value = parse_override(o)[1] or {}
        if not isinstance(value, dict):
            raise ConfigError(f"sae.variants must be a mapping of variant names to settings, got {value!r}")
        given.update(value)
    if set(given) & set(variants):
        raise ConfigError(f"sae.variants: {', '.join(sorted(set(given) & set(variants)))} named twice (an arm or "
                          f"point of this suite/sweep already has that name)")
    merged = {**variants, **given}
    rest = [o for o in overrides if not o.startswith("sae.variants=")]
    return rest + ([f"sae.variants={json.dumps(merged)}"] if merged else [])


def seed_overrides(base, i: int) -> list[str]:
    """Seed i of a comparison: run.seed and data.seed of the base Config each moved by i (none for seed 0)."""
    return [f"run.seed={base.run.seed + i}", f"data.seed={base.data.seed + i}"] if i else []


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): a 95 % t-interval over seeds; (mean, nan, nan) with fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), math.nan, math.nan
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def difference_interval(arm: list[float], base: list[float]) -> tuple[float, float, float]:
    """(mean difference arm − base, low, high): Welch's 95 % interval; nan bounds with fewer than 2 seeds a side."""
    a, b = np.asarray(arm, dtype=np.float64), np.asarray(base, dtype=np.float64)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan
    if np.all(a == a[0]) and np.all(b == b[0]):  # no spread on either side: the difference is exact
        return diff, diff, diff
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return diff, float(ci.low), float(ci.high)


def paired_difference_interval(arm: list[float], base: list[float]) -> tuple[float, float, float]:
    """(mean of the per-seed differences arm[i] − base[i], low, high): a 95 % t-interval over those differences."""
    return mean_interval(list(np.asarray(arm, dtype=np.float64) - np.asarray(base, dtype=np.float64)))


def verdict(low: float, high: float) -> str:
    if math.isnan(low):
        return "one seed: no interval"
    if low == high == 0:
        return "identical in every seed"
    return NOISE if low <= 0 <= high else "differs"


def compare(arms: dict[str, list[dict[str, float]]], keys: list[str], baseline: str,
            seeds: dict[str, list] | None = None) -> list[dict]:
    """One row per (metric, arm): arms maps an arm to one final-metrics dict per seed; seeds (optional) maps an arm
    to each of those runs' seed identity, e.g. (run.seed, data.seed). An arm whose seeds are the baseline's (two or
    more, no repeats) is compared pairwise; otherwise, or without seeds, with Welch's interval."""
    rows = []
    for key in keys:
        base = {i: f[key] for i, f in enumerate(arms.get(baseline, [])) if key in f}
        for arm, finals in arms.items():
            values = {i: f[key] for i, f in enumerate(finals) if key in f}
            if not values:
                continue
            mean, low, high = mean_interval(list(values.values()))
            row = {"metric": key, "arm": arm, "seeds": len(values), "mean": mean, "low": low, "high": high}
            if arm != baseline and base:
                pairs = _pairs(values, base, seeds[arm], seeds[baseline]) if seeds else None
                if pairs:
                    d, d_low, d_high = paired_difference_interval(*zip(*pairs))
                else:
                    d, d_low, d_high = difference_interval(list(values.values()), list(base.values()))
                row.update({"diff": d, "diff_low": d_low, "diff_high": d_high, "verdict": verdict(d_low, d_high),
                            "test": "paired" if pairs else "Welch"})
            rows.append(row)
    return rows


def _pairs(values: dict[int, float], base: dict[int, float], arm_seeds: list, base_seeds: list) -> list | None:
    """[(arm value, baseline value)] matched by seed, or None unless both sides ran the same ≥ 2 distinct seeds."""
    a = {arm_seeds[i]: v for i, v in values.items()}
    b = {base_seeds[i]: v for i, v in base.items()}
    if len(a) < 2 or len(a) != len(values) or len(b) != len(base) or a.keys() != b.keys():
        return None
    return [(a[s], b[s]) for s in a]


def seed_of(config: dict) -> tuple:
    """A run's seed identity from its config.yaml: what seed i of a suite or sweep changes."""
    return config.get("run", {}).get("seed"), config.get("data", {}).get("seed")


def seed_table(runs: dict[str, list[Path | str]], baseline: str, prefixes=("val/", "sae/", "chrono/", "mem/", "train/loss")
               ) -> str:
    """Arms (each a list of seed runs: directories, or `<directory>#<SAE variant>`) → a text table: mean [95 %
    interval] per arm, and per arm but the baseline its difference to the baseline [interval, paired by seed] and
    the verdict."""
    arms = {arm: [final_values(p) for p in paths] for arm, paths in runs.items()}
    seeds = {arm: [seed_of(yaml.safe_load(RunDir(split_run(p)[0]).config.read_text())) for p in paths]
             for arm, paths in runs.items()}
    keys = sorted({k for finals in arms.values() for f in finals for k in f
                   if k.startswith(prefixes) and "/layer_" not in k and not k.endswith(("_lo", "_hi"))})
    rows = compare(arms, keys, baseline, seeds)
    width = max((len(r["metric"]) for r in rows), default=10)
    lines = [f"{'metric':<{width}}  {'arm':<14} {'n':>2}  {'mean [95 % CI]':<30} "
             f"{'− ' + baseline + ' [95 % CI]':<32} {'test':<6} verdict"]
    for r in rows:
        ci = f"{r['mean']:.4g} [{r['low']:.4g}, {r['high']:.4g}]" if r["low"] == r["low"] else f"{r['mean']:.4g}"
        diff = (f"{r['diff']:+.3g} [{r['diff_low']:+.3g}, {r['diff_high']:+.3g}]" if r.get("diff_low", math.nan) ==
                r.get("diff_low", math.nan) else (f"{r['diff']:+.3g}" if "diff" in r else ""))
        lines.append(f"{r['metric']:<{width}}  {r['arm']:<14} {r['seeds']:>2}  {ci:<30} {diff:<32} "
                     f"{r.get('test', ''):<6} {r.get('verdict', '')}")
    return "\n".join(lines)
