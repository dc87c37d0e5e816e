"""Forgetting curves (docs/design.md §4.5) on hand-made histories where the slope is known."""

import numpy as np

from chrono_membench.chrono.forgetting import bucket_curves, record, scores_of, slopes


def history(slope_per_step: float, noise: float, windows: int = 40, seed: int = 0, drift: float = 0.0):
    """Evals at 10, 20, 30, 40; windows seen at steps 1..9 (bucket 0) and 11..19 (bucket 1); a window's Δloss at
    step t after it was seen: −1 + slope · (t − seen) + noise (more negative Δ = more memorised); unseen windows'
    Δloss moves by `drift` per step."""
    rng = np.random.default_rng(seed)
    first = np.concatenate([rng.integers(1, 10, windows // 2), rng.integers(11, 20, windows // 2)])
    uids = [f"w{i}" for i in range(windows)] + [f"u{i}" for i in range(10)]
    out = []
    for step in (10, 20, 30, 40):
        seen = first < step
        delta = np.where(seen, -1 + slope_per_step * (step - first), 0) + drift * step + rng.normal(0, noise, windows)
        unseen = drift * step + rng.normal(0, noise, 10)
        keep = np.concatenate([seen, np.zeros(10, bool)])
        rec = record([u for u, k in zip(uids, keep) if k] + uids[windows:],
                     list(first[seen]) + [0] * 10, np.concatenate([delta[seen], unseen]),
                     np.concatenate([np.ones(seen.sum(), bool), np.zeros(10, bool)]))
        out.append((step, rec))
    return out


def test_a_known_forgetting_rate_is_recovered_with_an_interval_that_holds_it():
    # Δloss rises by 0.01 per step after a window is seen: its reference score −Δloss falls by 1 nat per 100 steps
    got = slopes(history(0.01, 0.05))
    assert got["ref"]["lo"] < -1.0 < got["ref"]["hi"] and got["ref"]["verdict"] == "detected"
    assert got["ref"]["windows"] == 40  # every window has ≥ 2 evals after it was seen
    assert got["did"]["lo"] < -1.0 < got["did"]["hi"]  # no drift in unseen: the DiD slope is the same


def test_no_forgetting_is_not_detected_and_unseen_drift_is_removed_by_the_did():
    flat = slopes(history(0.0, 0.05))
    assert flat["ref"]["lo"] < 0 < flat["ref"]["hi"] and flat["ref"]["verdict"].startswith("none detected")
    drifting = slopes(history(0.0, 0.05, drift=0.02))  # every document's loss rises 2 nats per 100 steps
    assert drifting["did"]["lo"] < 0 < drifting["did"]["hi"]  # the DiD removes what unseen text shares
    assert drifting["ref"]["hi"] < -1.5  # the raw reference score reads the shared drift as forgetting


def test_coverage_of_the_slope_interval_over_replicates():
    fits = [slopes(history(0.01, 0.3, seed=s))["ref"] for s in range(200)]
    covered = sum(f["lo"] <= -1.0 <= f["hi"] for f in fits)
    assert covered / 200 >= 0.92


def test_bucket_curves_group_windows_by_bucket_at_each_eval_after_it_was_seen():
    h = history(0.01, 0.0)
    curves = bucket_curves(h, lambda s: 0 if s < 10 else 1)
    since = [p[0] for p in curves["b1/ref"]]  # bucket 1 at the evals 20, 30, 40 after it was seen
    assert len(since) == 3 and 0 < since[0] < 10 and np.allclose(np.diff(since), 10)
    assert len(curves["b0/ref"]) == 4 and curves["b0/ref"][0][1] > curves["b0/ref"][-1][1]  # it falls
    rec = h[-1][1]
    uid = next(iter(rec["windows"]))
    assert scores_of(rec, uid)["ref"] == -rec["windows"][uid][1]
