"""Feature trajectories across checkpoints: per latent, the cosine of its decoder row to its value at the
first and at the previous checkpoint; the MMCS and self-match curves; the top-k latents by drift.

    python analysis/feature_trajectories.py runs/<name> --out figures/ [--top 20]
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from safetensors import safe_open

from common import parse_args, save_figure, write_json

from chrono_membench import metric_keys as K
from chrono_membench.hooks import file_name
from chrono_membench.run_dir import RunDir


def decoder_history(run) -> dict[str, list[tuple[int, torch.Tensor]]]:
    """hook name → [(step, unit decoder rows [F, D])] over the run's feature artifacts."""
    history: dict[str, list] = {}
    for step, path in RunDir(run.directory).artifact_steps("features") if run.directory else []:
        with safe_open(path, "pt") as f:
            history.setdefault(f.metadata()["hook"], []).append((step, f.get_tensor("decoder_unit").float()))
    return history


def trajectories(history: list[tuple[int, torch.Tensor]]) -> dict:
    steps = [s for s, _ in history]
    first = history[0][1]
    to_first = torch.stack([(d * first).sum(-1) for _, d in history])  # [checkpoints, F]
    to_prev = torch.stack([(history[max(0, i - 1)][1] * d).sum(-1) for i, (_, d) in enumerate(history)])
    return {"steps": steps, "to_first": to_first, "to_previous": to_prev}


def main() -> None:
    args = parse_args(__doc__, lambda p: p.add_argument("--top", type=int, default=20))
    for run in args.loaded:
        for hook, history in decoder_history(run).items():
            t = trajectories(history)
            drift = 1 - t["to_first"][-1]
            top = drift.argsort(descending=True)[: args.top].tolist()
            fig = make_subplots(rows=2, cols=2, subplot_titles=[
                f"cos to first checkpoint (top {len(top)} by drift)", "cos to previous checkpoint (same latents)",
                "MMCS vs previous checkpoint", "self-match fraction"])
            for i in top:
                fig.add_trace(go.Scatter(x=t["steps"], y=t["to_first"][:, i].tolist(), name=f"latent {i}",
                                         legendgroup=str(i), mode="lines+markers"), row=1, col=1)
                fig.add_trace(go.Scatter(x=t["steps"], y=t["to_previous"][:, i].tolist(), name=f"latent {i}",
                                         legendgroup=str(i), showlegend=False, mode="lines+markers"), row=1, col=2)
            for key, col in (("mmcs", 1), ("self_match_frac", 2)):
                steps, values = run.series(K.chrono(hook, key))
                fig.add_trace(go.Scatter(x=steps, y=values, name=key, mode="lines+markers"), row=2, col=col)
            fig.update_xaxes(title_text="step")
            fig.update_yaxes(range=[-1.02, 1.02], row=1)  # cosines
            fig.update_yaxes(range=[0, 1.02], row=2)  # a similarity and a fraction
            fig.update_layout(title=f"Feature trajectories · {run.label} · {hook}", height=800, template="plotly_white")
            print(save_figure(fig, args.out, f"feature_trajectories_{run.label}_{file_name(hook)}"))
            write_json(args.out, f"feature_drift_{run.label}_{file_name(hook)}",
                       {"steps": t["steps"], "top_latents_by_drift": [{"latent": i, "drift": drift[i].item()} for i in top]})


if __name__ == "__main__":
    main()
