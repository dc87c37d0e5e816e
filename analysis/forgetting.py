"""Forgetting curves: each time bucket's mean memorisation against the steps since its windows were seen, at every
eval after the bucket ended, with 95 % intervals (the reference score −Δloss and the DiD beyond the unseen windows'
drift), and in the title the run's decided statement — the mean slope per 100 steps over windows seen at ≥ 2 evals
after their step (chrono/forgetting.py). Read from artifacts/step_N/probe_scores.json.

    python analysis/forgetting.py runs/<name> --out figures/
"""

from __future__ import annotations

from functools import partial

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from common import parse_args, save_figure

from chrono_membench.artifacts import read_probe_scores
from chrono_membench.chrono.forgetting import SCORES, bucket_curves, slopes
from chrono_membench.probes import bucket_of
from chrono_membench.run_dir import RunDir

TITLES = {"ref": "reference score −Δloss (nats)", "did": "DiD: −(Δloss − unseen's Δloss) (nats)"}


def main() -> None:
    args = parse_args(__doc__)
    for run in args.loaded:
        history = read_probe_scores(RunDir(run.directory), 10 ** 12) if run.directory else []
        if len(history) < 2:
            print(f"{run.name}: fewer than 2 evals with probe scores; no forgetting curve")
            continue
        chrono, train = run.config.get("chrono", {}), run.config.get("train", {})
        n_buckets, max_steps = chrono.get("n_buckets", 10), train.get("max_steps", 1)
        curves = bucket_curves(history, partial(bucket_of, n_buckets=n_buckets, max_steps=max_steps))
        fit = slopes(history)
        fig = make_subplots(rows=1, cols=len(SCORES), subplot_titles=[
            TITLES[s] + (f"<br>{fit[s]['slope']:+.3f} [{fit[s]['lo']:+.3f}, {fit[s]['hi']:+.3f}] per 100 steps, "
                         f"{fit[s]['verdict']}" if s in fit else "<br>no window at 2 evals after it was seen")
            for s in SCORES])
        for i, score in enumerate(SCORES):
            for j, bucket in enumerate(sorted({k.split("/")[0] for k in curves}, key=lambda b: int(b[1:]))):
                points = curves.get(f"{bucket}/{score}", [])
                x, y, lo, hi = (list(v) for v in zip(*points)) if points else ([], [], [], [])
                fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=bucket, legendgroup=bucket,
                                         showlegend=i == 0, line={"color": f"hsl({40 + 300 * j // n_buckets},70%,45%)"},
                                         error_y={"type": "data", "array": [h - v for v, h in zip(y, hi)],
                                                  "arrayminus": [v - lo_ for v, lo_ in zip(y, lo)]}),
                              row=1, col=i + 1)
            fig.add_hline(y=0, line_dash="dash", row=1, col=i + 1)
        fig.update_xaxes(title_text="steps since seen (the bucket's mean)")
        fig.update_layout(title=f"Forgetting curves · {run.label}", template="plotly_white", height=520, width=1200)
        print(save_figure(fig, args.out, f"forgetting_{run.label}"))


if __name__ == "__main__":
    main()
