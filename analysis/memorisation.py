"""Memorisation against time, with 95 % intervals: Pythia's scores per time bucket vs steps since the bucket was
trained (forgetting curves); membership inference per bucket vs unseen (AUROC of the four MIMIR scores, 0.5 =
chance); the difference-in-differences profile (Lesci et al.) over training; memorisation by exposure count and by
last-seen bucket; canary exposure by repetition count, rank-based and extrapolated, beside the never-inserted controls.

    python analysis/memorisation.py runs/<name> --out figures/
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from common import parse_args, save_figure

from chrono_membench import metric_keys as K


MIA_COLOURS = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # none of the bucket traces' defaults
BUCKET_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                  "#17becf")


def bucket_start(bucket: str, n_buckets: int, max_steps: int) -> float:
    """First step of bucket b<k> (windows trained in [kT/B, (k+1)T/B))."""
    return int(bucket[1:]) * max_steps / n_buckets


def error_bars(values, lows, highs) -> dict:
    """plotly error_y from a value's _lo / _hi series (nan where the interval is undefined)."""
    up = [h - v if h == h else 0 for v, h in zip(values, highs)]
    down = [v - lo if lo == lo else 0 for v, lo in zip(values, lows)]
    return {"type": "data", "array": up, "arrayminus": down, "visible": True}


def with_interval(run, key: str) -> tuple[list[int], list[float], dict]:
    steps, values = run.series(key)
    lo, hi = dict(zip(*run.series(key + K.CI[0]))), dict(zip(*run.series(key + K.CI[1])))
    return steps, values, error_bars(values, [lo.get(s, math.nan) for s in steps], [hi.get(s, math.nan) for s in steps])


def bucket_order(names) -> list[str]:
    return sorted(names, key=lambda b: (b == "unseen", int(b[1:]) if b[1:].isdigit() else 0))


def main() -> None:
    args = parse_args(__doc__)
    for run in args.loaded:
        chrono, train = run.config.get("chrono", {}), run.config.get("train", {})
        n_buckets, max_steps = chrono.get("n_buckets", 10), train.get("max_steps", 1)
        # one panel per memorisation score (K.MEM_SCORES: any number, three to a row), then six of the rest
        titles = {"exact_match": "exact match (32-extractable)", "token_match": "memorisation score (token match)",
                  "loss": "loss on the scored 32 tokens"}
        score_rows = math.ceil(len(K.MEM_SCORES) / 3)
        buckets = bucket_order({k.split("/")[-1] for k in run.keys("mem/loss/") if not k.endswith(K.CI)})
        # a score logged at fewer than 3 evals (the demo decodes greedily at its last eval only) is drawn as the last
        # eval's value per column, not as a time series of one or two dots
        evals = {m: len({s for b in buckets for s in run.series(K.mem(m, b))[0]}) for m in K.MEM_SCORES}
        fig = make_subplots(rows=score_rows + 2, cols=3, subplot_titles=[
            *(titles.get(m, m.replace("_", " ")) + ("" if evals[m] >= 3 else " (last eval)") for m in K.MEM_SCORES),
            *[""] * (3 * score_rows - len(K.MEM_SCORES)),
            "MIA AUROC vs unseen (final)", "DiD: Δloss − Δloss(unseen) (dotted: within sources)",
            "loss by exposure count (final)",
            "loss by last-seen bucket (final)", "canary exposure (final; bits)", "unseen − seen loss gap"])
        final = run.final()
        for i, metric in enumerate(K.MEM_SCORES):
            row, col = divmod(i, 3)
            if evals[metric] < 3:
                keys = [K.mem(metric, b) for b in buckets if K.mem(metric, b) in final]
                values = [final[k] for k in keys]
                fig.add_trace(go.Bar(x=[k.split("/")[-1] for k in keys], y=values, name=f"{metric} (last eval)",
                                     error_y=error_bars(values, *([final.get(k + ci, math.nan) for k in keys]
                                                                  for ci in K.CI))), row=row + 1, col=col + 1)
                continue
            for bucket in buckets:
                steps, values, err = with_interval(run, K.mem(metric, bucket))
                x = steps if bucket == "unseen" else [s - bucket_start(bucket, n_buckets, max_steps) for s in steps]
                fig.add_trace(go.Scatter(x=x, y=values, error_y=err, mode="lines+markers", name=f"{metric} {bucket}",
                                         legendgroup=bucket), row=row + 1, col=col + 1)
        seen = [b for b in buckets if b != "unseen"]
        for i, score in enumerate(K.MIA_SCORES):  # side by side at each bucket, a colour each (not the legend's others)
            keys = [K.mia("auc", score, b) for b in seen if K.mia("auc", score, b) in final]
            if keys:
                values = [final[k] for k in keys]
                x = [seen.index(k.split("/")[-1]) + (i - (len(K.MIA_SCORES) - 1) / 2) * 0.15 for k in keys]
                fig.add_trace(go.Scatter(x=x, y=values, mode="markers", name=f"AUROC {score}",
                                         marker={"color": MIA_COLOURS[i % len(MIA_COLOURS)], "size": 8},
                                         error_y=error_bars(values, [final.get(k + K.CI[0], math.nan) for k in keys],
                                                            [final.get(k + K.CI[1], math.nan) for k in keys])),
                              row=score_rows + 1, col=1)
        fig.update_xaxes(tickvals=list(range(len(seen))), ticktext=seen, row=score_rows + 1, col=1)
        fig.add_hline(y=0.5, line_dash="dash", annotation_text="chance", row=score_rows + 1, col=1)
        for j, bucket in enumerate(seen):  # a colour per bucket; solid pooled, dotted within sources
            for stratified, dash in ((False, "solid"), (True, "dot")):
                steps, values, err = with_interval(run, K.did(bucket, stratified))
                fig.add_trace(go.Scatter(x=steps, y=values, error_y=err, mode="lines+markers",
                                         line={"dash": dash, "color": BUCKET_COLOURS[j % len(BUCKET_COLOURS)]},
                                         name=f"DiD{' within sources' if stratified else ''} {bucket}"),
                              row=score_rows + 1, col=2)
        fig.add_hline(y=0.0, line_dash="dash", row=score_rows + 1, col=2)
        for row, col, by, columns in ((score_rows + 1, 3, "exposures", list(K.EXPOSURE_BINS)),
                                      (score_rows + 2, 1, "last_seen", seen)):
            keys = [K.mem("loss", c, by) for c in columns if K.mem("loss", c, by) in final]
            if keys:
                values = [final[k] for k in keys]
                fig.add_trace(go.Bar(x=[k.split("/")[-1] for k in keys], y=values, name=f"loss by {by}",
                                     error_y=error_bars(values, [final.get(k + K.CI[0], math.nan) for k in keys],
                                                        [final.get(k + K.CI[1], math.nan) for k in keys])),
                              row=row, col=col)
        # the repetition cells: rank-based values, and the extrapolated ones with their bootstrap interval
        labels = sorted({c for c in map(K.canary_cell, run.keys("mem/canary_exposure/")) if c is not None},
                        key=lambda r: (r == "control", int(r) if r.isdigit() else 0))
        kinds = {"rank-based (capped)": {}, "sampled (no assumed tail)": {"sampled": True},
                 "extrapolated (skew-normal model)": {"extrapolated": True}}
        for name, kind in kinds.items():
            values = [final.get(K.canary(l, **kind), math.nan) for l in labels]
            if labels and any(v == v for v in values):
                err = error_bars(values, *([final.get(K.canary(l, **kind) + ci, math.nan) for l in labels]
                                           for ci in K.CI)) if kind else None
                fig.add_trace(go.Bar(x=[f"×{l}" if l != "control" else l for l in labels], y=values, error_y=err,
                                     name=name), row=score_rows + 2, col=2)
        steps, values = run.series(K.MEM_LOSS_GAP)
        fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name="loss gap"), row=score_rows + 2, col=3)
        for i, metric in enumerate(K.MEM_SCORES):  # the time-series panels (not the last eval's bars)
            if evals[metric] >= 3:
                fig.update_xaxes(title_text="steps since the bucket started (unseen: step)", row=i // 3 + 1,
                                 col=i % 3 + 1)
        fig.update_xaxes(title_text="step", row=score_rows + 1, col=2)
        fig.update_xaxes(title_text="step", row=score_rows + 2, col=3)
        fig.update_layout(title=f"Memorisation · {run.label}", height=400 * (score_rows + 2), template="plotly_white")
        print(save_figure(fig, args.out, f"memorisation_{run.label}"))


if __name__ == "__main__":
    main()
