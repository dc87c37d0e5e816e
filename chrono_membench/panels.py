"""Interactive plotly panels logged to the wandb run at every eval (they appear in the run's workspace; offline
runs carry them until `wandb sync`): what a user would otherwise open locally with analysis/.

    panels/purity/<hook>     the temporal purity matrix of this eval (live latents sorted by dominant column)
    panels/memorisation      loss on each time bucket's probe windows over training, and the DiD profile
    panels/drift             Hungarian-matched decoder similarity between checkpoints (and the seed baseline's)
    panels/metric/<name>     each registered eval metric's keys over training (registry.py; panel=True)

Built from the run's metrics.jsonl history and the eval's purity matrices; metric summaries are declared with
wandb's define_metric (min for losses, max for exposure and AUROC).
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from chrono_membench import metric_keys as K
from chrono_membench.registry import REGISTRY, EvalMetric, KeySpace

SUMMARIES = {"train/loss": "min", "val/loss": "min", "val/ppl": "min", "mem/canary_exposure/*": "max",
             "mem/mia_auc/*": "max"}  # wandb takes glob suffixes only
MAX_LATENTS = 512  # rows of the purity heatmap (a panel, not the artifact: that keeps every latent)


def series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def purity_figure(matrix: torch.Tensor, columns: list[str], hook: str, step: int) -> go.Figure:
    live = matrix.sum(-1) > 0
    P = matrix[live].float()
    keep = P.max(-1).values.argsort(descending=True)[:MAX_LATENTS]  # the purest MAX_LATENTS, by dominant column
    order = keep[torch.argsort(P[keep].argmax(-1) * 2 - P[keep].max(-1).values)]
    fig = go.Figure(go.Heatmap(z=P[order].numpy(), x=columns, colorscale="Viridis", zmin=0, zmax=1))
    fig.update_layout(title=f"temporal purity, {hook}, step {step} (the {len(order)} purest of {int(live.sum())} live "
                            "latents; chance alone gives rare latents purity 1: read temporal_purity_excess)",
                      yaxis_title="latent (sorted)", xaxis_title="probe column")
    return fig


def memorisation_figure(history: list[dict]) -> go.Figure | None:
    keys = sorted({k for r in history for k in r if k.startswith("mem/loss/") and not k.endswith(K.CI)
                   and k.count("/") == 2})
    if not keys:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("probe loss per column", "DiD (Δloss bucket − unseen)"))
    for key in keys:
        fig.add_trace(go.Scatter(x=series(history, key)[0], y=series(history, key)[1], name=key.split("/")[-1],
                                 mode="lines+markers"), row=1, col=1)
        did = K.did(key.split("/")[-1])
        if any(did in r for r in history):
            fig.add_trace(go.Scatter(x=series(history, did)[0], y=series(history, did)[1], mode="lines+markers",
                                     name="DiD " + key.split("/")[-1]), row=1, col=2)
    fig.update_layout(title="memorisation over training", xaxis_title="step")
    return fig


def drift_figure(history: list[dict], hooks: list[str]) -> go.Figure | None:
    fig = go.Figure()
    for hook in hooks:
        for name in ("hungarian_mcs", "hungarian_mcs_seed_baseline", "cross_seed_mcs"):
            steps, values = series(history, K.chrono(hook, name))
            if steps:
                fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=f"{hook} {name}"))
    if not fig.data:
        return None
    low = min([0.0] + [y for trace in fig.data for y in trace.y])
    fig.update_layout(title="decoder drift between checkpoints: Hungarian-matched cosine (1 = unchanged; the seed "
                            "baseline, where logged, is two seeds' SAEs: the noise floor)", xaxis_title="step",
                      yaxis={"range": [low, 1.02], "title": "cosine similarity"})
    return fig


def metric_figure(history: list[dict], metric: EvalMetric, space: KeySpace) -> go.Figure | None:
    """A registered eval metric's keys over training (its intervals as error bars where it logs _lo / _hi)."""
    keys = [k for k in metric.keys(space) if not k.endswith(K.CI) and any(k in r for r in history)]
    if not keys:
        return None
    fig = go.Figure()
    for key in keys:
        steps, values = series(history, key)
        lo, hi = (dict(zip(*series(history, key + suffix))) for suffix in K.CI)
        error = {"type": "data", "visible": True, "array": [hi[s] - v if s in hi else 0 for s, v in zip(steps, values)],
                 "arrayminus": [v - lo[s] if s in lo else 0 for s, v in zip(steps, values)]} if lo else None
        fig.add_trace(go.Scatter(x=steps, y=values, error_y=error, mode="lines+markers", name=key))
    if metric.null is not None:
        fig.add_hline(y=metric.null, line_dash="dash", annotation_text="chance")
    fig.update_layout(title=f"{metric.title or metric.name} over training", xaxis_title="step")
    return fig


def eval_panels(history: list[dict], matrices: dict, hooks: list[str], step: int,
                config: dict | None = None) -> dict[str, go.Figure]:
    """Every panel of one eval; with the run's config, one panel per registered eval metric that asks for one
    (panels/metric/<name>)."""
    panels = {f"panels/purity/{hook}": purity_figure(m["temporal"], m["columns"], hook, step)
              for hook, m in matrices.items() if "temporal" in m}
    if config is not None:
        space = KeySpace.of(config, hooks)
        for metric in (m for m in REGISTRY.values() if m.panel):
            fig = metric_figure(history, metric, space)
            if fig is not None:
                panels[f"panels/metric/{metric.name}"] = fig
    for name, fig in (("panels/memorisation", memorisation_figure(history)), ("panels/drift",
                                                                               drift_figure(history, hooks))):
        if fig is not None:
            panels[name] = fig
    return panels
