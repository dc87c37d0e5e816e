"""Memorisation against time: exact match, token match and loss per time bucket vs steps since the bucket
was seen (forgetting curves), the unseen−seen loss gap over training, canary exposure by repetition count.

    python analysis/memorisation.py runs/<name> --out figures/
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from common import parse_args, save_figure

from chrono_membench import metric_keys as K

METRICS = K.MEM_SCORES


def bucket_start(bucket: str, n_buckets: int, max_steps: int) -> float:
    """First step of bucket b<k> (documents first seen in [kT/B, (k+1)T/B))."""
    return int(bucket[1:]) * max_steps / n_buckets


def main() -> None:
    args = parse_args(__doc__)
    for run in args.loaded:
        chrono, train = run.config.get("chrono", {}), run.config.get("train", {})
        n_buckets, max_steps = chrono.get("n_buckets", 10), train.get("max_steps", 1)
        fig = make_subplots(rows=2, cols=3, subplot_titles=[
            "exact match (32-extractable)", "token match", "loss on the continuation",
            "loss gap (unseen − seen)", "canary exposure (bits) over training", "final canary exposure"])
        buckets = sorted({k.split("/")[-1] for k in run.keys(K.mem("loss", ""))})
        for col, metric in enumerate(METRICS, start=1):
            for bucket in buckets:
                steps, values = run.series(K.mem(metric, bucket))
                if bucket == "unseen":
                    x = steps  # never seen: plotted against the training step
                else:
                    x = [s - bucket_start(bucket, n_buckets, max_steps) for s in steps]
                fig.add_trace(go.Scatter(x=x, y=values, mode="lines+markers", name=f"{metric} {bucket}",
                                         legendgroup=bucket), row=1, col=col)
        steps, values = run.series(K.MEM_LOSS_GAP)
        fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name="loss gap"), row=2, col=1)
        final = run.final()
        labels = sorted({k.split("/")[-1] for k in run.keys(K.canary(""))},
                        key=lambda r: (r == "control", int(r) if r.isdigit() else 0))
        for label in labels:
            steps, values = run.series(K.canary(label))
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=f"canary ×{label}"), row=2, col=2)
        if labels:
            fig.add_trace(go.Bar(x=[f"×{l}" for l in labels], y=[final[K.canary(l)] for l in labels],
                                 name="final exposure"), row=2, col=3)
        fig.update_xaxes(title_text="steps since the bucket started (unseen: step)", row=1)
        fig.update_xaxes(title_text="step", row=2, col=1)
        fig.update_xaxes(title_text="step", row=2, col=2)
        fig.update_layout(title=f"Memorisation · {run.label}", height=850, template="plotly_white")
        print(save_figure(fig, args.out, f"memorisation_{run.label}"))


if __name__ == "__main__":
    main()
