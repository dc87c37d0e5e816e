"""Forgetting curves (docs/design.md §4.5): how a window's memorisation changes with the steps since it was seen.

Each eval records, per seen probe window, Δloss = loss now − loss under the step-0 model, and the unseen windows'
mean Δloss (the drift every document shares). A window's two scores at an eval: the reference score −Δloss (MIMIR's,
higher = more memorised) and its DiD, −(Δloss − mean Δloss of unseen) (Lesci et al.: its memorisation beyond what
fine-tuning did to text it never saw). A window seen at step s and scored at ≥ 2 evals after s has a least-squares
slope of each score against the eval step; the headline is the mean slope over windows, per 100 steps, with a t
interval across windows (the windows are the independent units; the evals of one window are not) and its verdict.
A negative slope is forgetting. The published shape is a power law in steps since seen (Chang et al. 2024, "How Do
Large Language Models Acquire Factual Knowledge During Pretraining?"); its exponent needs ≥ 3 evals after a window
was seen and is not estimated here (the bucket curves, bucket_curves, show the shape; only the linear slope is decided).
"""

from __future__ import annotations

import numpy as np

from chrono_membench.chrono.resolution import from_interval
from chrono_membench.chrono.stats import mean_interval

SCORES = ("ref", "did")  # the reference score and the DiD, both higher = more memorised


def record(uids, first_steps, delta: np.ndarray, seen: np.ndarray) -> dict:
    """One eval's record: {"unseen_delta": mean Δloss of the unseen windows, "windows": {uid: [first step, Δloss]}}
    for the seen windows."""
    unseen = delta[~seen]
    return {"unseen_delta": float(unseen.mean()) if len(unseen) else float("nan"),
            "windows": {u: [int(s), float(x)] for u, s, x, k in zip(uids, first_steps, delta, seen) if k}}


def scores_of(rec: dict, uid: str) -> dict[str, float]:
    first, delta = rec["windows"][uid]
    return {"ref": -delta, "did": -(delta - rec["unseen_delta"])}


def slopes(history: list[tuple[int, dict]]) -> dict[str, dict]:
    """Per score: each window's slope against the eval step over the evals after it was seen (≥ 2 of them), its mean
    over windows per 100 steps with a 95 % interval across windows, their number and the verdict (with the smallest
    mean slope the run could have detected); {} where no window has 2 evals after it."""
    evals = sorted(history, key=lambda h: h[0])
    uids = {u for _, rec in evals for u in rec["windows"]}
    per: dict[str, list[float]] = {s: [] for s in SCORES}
    for uid in uids:
        points = [(step, scores_of(rec, uid)) for step, rec in evals
                  if uid in rec["windows"] and step > rec["windows"][uid][0]]
        if len(points) < 2:
            continue
        x = np.array([p[0] for p in points], dtype=np.float64)
        for s in SCORES:
            y = np.array([p[1][s] for p in points])
            if s == "did" and not np.isfinite(y).all():
                continue
            per[s].append(float(np.polyfit(x, y, 1)[0]) * 100)
    out = {}
    for s, values in per.items():
        if len(values) < 2:
            continue
        v = np.array(values)
        lo, hi = mean_interval(v)
        out[s] = {"slope": float(v.mean()), "lo": lo, "hi": hi, "windows": len(v), "verdict": from_interval(lo, hi)}
    return out


def bucket_curves(history: list[tuple[int, dict]], bucket_of) -> dict[str, list[tuple[float, float, float, float]]]:
    """Per bucket ("b<k>") and score: [(mean steps since seen, mean score, 95 % lo, hi)] at each eval after the
    bucket ended, over the windows it holds then. bucket_of: first step → bucket index."""
    out: dict[str, list] = {}
    for step, rec in sorted(history, key=lambda h: h[0]):
        groups: dict[int, list[str]] = {}
        for uid, (first, _) in rec["windows"].items():
            if first < step:
                groups.setdefault(bucket_of(first), []).append(uid)
        for b, members in groups.items():
            since = float(np.mean([step - rec["windows"][u][0] for u in members]))
            for s in SCORES:
                y = np.array([scores_of(rec, u)[s] for u in members])
                lo, hi = mean_interval(y)
                out.setdefault(f"b{b}/{s}", []).append((since, float(y.mean()), lo, hi))
    return out
