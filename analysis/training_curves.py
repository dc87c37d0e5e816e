"""Train/val loss and perplexity, learning rate, grad norm and tokens/s; several runs overlaid.

    python analysis/training_curves.py runs/<a> [runs/<b> ...] --out figures/
"""

from __future__ import annotations

import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from common import parse_args, save_figure

PANELS = ["train/loss", "val/loss", "val/ppl", "train/lr", "train/grad_norm", "train/tokens_per_s"]


def curves_figure(runs, keys, title: str, cols: int = 3) -> go.Figure:
    """One panel per key, one colour per run: the legend names the runs (one entry each), a trace's hover names its key
    and run (trace names `<key> · <run>`: the legend shows the run's label through the group's first entry)."""
    rows = -(-len(keys) // cols)
    # sae/<hook>/fve → sae/fve: hook names would overflow the panel titles (they are in the trace names)
    titles = [f"{k.split('/')[0]}/{k.split('/')[-1]}" if k.count("/") == 2 and ".hook_" in k else k for k in keys]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles)
    palette = plotly.colors.qualitative.Plotly
    for i, run in enumerate(runs):
        for j, key in enumerate(keys):
            steps, values = run.series(key)
            if steps:
                fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=f"{key} · {run.label}",
                                         legendgroup=run.label, showlegend=False, line={"color": palette[i % len(palette)]},
                                         marker={"size": 4}), row=j // cols + 1, col=j % cols + 1)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=run.label, legendgroup=run.label,
                                 line={"color": palette[i % len(palette)]}))  # the run's one legend entry
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title, height=320 * rows, template="plotly_white")
    return fig


def main() -> None:
    args = parse_args(__doc__)
    fig = curves_figure(args.loaded, PANELS, "Training curves")
    print(save_figure(fig, args.out, "training_curves"))


if __name__ == "__main__":
    main()
