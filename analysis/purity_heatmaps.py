"""Temporal and source purity matrices at a chosen step (latents sorted by their dominant column), and the
purity summaries over training beside their permutation nulls (what chance alone gives with these columns and
documents): temporal, source, and temporal within each source.

    python analysis/purity_heatmaps.py runs/<name> --out figures/ [--step N] [--max-latents 400]
"""

from __future__ import annotations

import json

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from safetensors import safe_open

from common import parse_args, save_figure

from chrono_membench import metric_keys as K
from chrono_membench.hooks import file_name
from chrono_membench.run_dir import RunDir

KINDS = ("temporal", "source", "temporal_stratified")


def sorted_live(matrix: torch.Tensor, max_latents: int) -> tuple[torch.Tensor, list[int]]:
    """Live latents ordered by dominant column, then by purity; at most max_latents (the purest kept)."""
    live = (matrix.sum(1) > 0).nonzero().flatten()
    m = matrix[live]
    dominant, purity = m.argmax(1), m.max(1).values
    keep = purity.argsort(descending=True)[:max_latents]
    order = keep[torch.argsort(dominant[keep] * 2 - purity[keep])]
    return m[order], live[order].tolist()


def null_note(at: dict, hook: str) -> str:
    """What the heatmap must be read against: a latent that fires in a few windows is pure by chance, so the block
    pattern alone shows nothing; the purity beside its permutation null, and the latents the FDR test finds."""
    def value(name, fmt):
        v = at.get(K.chrono(hook, name))
        return format(v, fmt) if isinstance(v, (int, float)) else "n/a"

    def selective(kind):
        if K.chrono(hook, f"selective_{kind}_tested") not in at:
            return "not tested (too few windows per column)"
        return f"{value(f'selective_{kind}_count', '.0f')} of {value(f'selective_{kind}_tested', '.0f')} tested latents"
    return (f"chance alone makes rare latents pure: mean temporal purity {value('temporal_purity', '.3f')} vs its "
            f"permutation null {value('temporal_purity_null', '.3f')} (excess {value('temporal_purity_excess', '+.4f')}, "
            f"p {value('temporal_purity_p', '.3f')});<br>time-selective under FDR: {selective('time')}; source purity "
            f"excess {value('source_purity_excess', '+.4f')}, source-selective: {selective('source')}")


def main() -> None:
    def extra(p):
        p.add_argument("--step", type=int, default=None, help="default: the last step with purity matrices")
        p.add_argument("--max-latents", type=int, default=400)
    args = parse_args(__doc__, extra)
    for run in args.loaded:
        found = RunDir(run.directory).artifact_steps("purity") if run.directory else []
        steps = sorted({s for s, _ in found if args.step is None or s == args.step})
        if not steps:
            print(f"{run.name}: no purity matrices" + (f" at step {args.step}" if args.step is not None else ""))
            continue
        for path in (p for s, p in found if s == steps[-1]):
            with safe_open(path, "pt") as f:
                meta, temporal = f.metadata(), f.get_tensor("temporal").float()
                source = f.get_tensor("source").float() if "source" in f.keys() else None
            hook, step = meta["hook"], steps[-1]
            titles = ["temporal purity P[i, bucket]", "source purity S[i, source]"]
            fig = make_subplots(rows=1, cols=2, subplot_titles=titles)
            for col, (matrix, names) in enumerate(((temporal, json.loads(meta["temporal_columns"])),
                                                   (source, json.loads(meta["source_columns"]))), start=1):
                if matrix is None:  # one source only among the probes
                    continue
                m, latents = sorted_live(matrix, args.max_latents)
                fig.add_trace(go.Heatmap(z=m.tolist(), x=names, y=[str(i) for i in latents], zmin=0, zmax=1,
                                         colorscale="Viridis", name="temporal" if col == 1 else "source",
                                         showscale=col == 2), row=1, col=col)
            fig.update_yaxes(title_text="latent (sorted by dominant column)", showticklabels=False)
            fig.add_annotation(text=null_note(run.at(step), hook), xref="paper", yref="paper", x=0, y=-0.08, showarrow=False,
                               align="left", xanchor="left", yanchor="top")
            fig.update_layout(title=f"Purity at step {step} · {run.label} · {hook}", height=860, template="plotly_white",
                              margin={"b": 120})
            print(save_figure(fig, args.out, f"purity_heatmaps_{run.label}_{file_name(hook)}"))
            curves = go.Figure()
            for kind, colour in zip(KINDS, ("#1f77b4", "#ff7f0e", "#2ca02c")):
                for suffix, dash in (("", "solid"), ("_null", "dash")):
                    s, v = run.series(K.chrono(hook, f"{kind}_purity{suffix}"))
                    curves.add_trace(go.Scatter(x=s, y=v, name=f"{kind}{' null' if suffix else ''}", mode="lines+markers",
                                                line={"color": colour, "dash": dash}))
            curves.update_layout(title=f"Purity (solid) vs its permutation null (dashed) · {run.label} · {hook}",
                                 xaxis_title="step", yaxis_title="mean normalised purity", template="plotly_white")
            print(save_figure(curves, args.out, f"purity_curves_{run.label}_{file_name(hook)}"))


if __name__ == "__main__":
    main()
