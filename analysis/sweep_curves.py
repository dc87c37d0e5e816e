"""Dose-response: each final metric of a sweep against the swept value (one panel per metric).

    python analysis/sweep_curves.py runs/<group>.json --out figures/      # the index experiments/sweep.py writes
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import plotly.graph_objects as go
from common import save_figure, write_json
from plotly.subplots import make_subplots

from chrono_membench import metric_keys as K
from chrono_membench.logging import final_values

PANELS = ("fve", "ce_recovered", "kl_div_score", "hungarian_mcs", "self_match_frac", "cross_seed_mcs",
          "alignment_share", "temporal_purity_excess")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("index", type=Path, help="the <group>.json experiments/sweep.py wrote")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    index = json.loads(args.index.read_text())
    axis, *other = index["axes"]
    finals = {run: final_values(Path(run)) for run in index["runs"]}
    hooks = sorted({K.hook_of(k) for f in finals.values() for k in f} - {None})
    keys = [k for hook in hooks for name in PANELS for k in (K.sae(hook, name), K.chrono(hook, name))
            if any(k in f for f in finals.values())] + [K.val("loss")]
    fig = make_subplots(rows=(len(keys) + 2) // 3, cols=3, subplot_titles=[k.split("/")[-1] for k in keys])
    table = {}
    for i, key in enumerate(keys):
        series: dict[str, list] = {}
        for run, point in index["runs"].items():
            label = ", ".join(f"{k}={point[k]}" for k in other) or "all"
            series.setdefault(label, []).append((float(point[axis]), finals[run].get(key)))
        for label, pts in series.items():
            pts = sorted(p for p in pts if p[1] is not None)
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=label,
                                     legendgroup=label, showlegend=i == 0), row=i // 3 + 1, col=i % 3 + 1)
            table.setdefault(key, {})[label] = pts
    fig.update_xaxes(title_text=axis)
    fig.update_layout(title=f"Sweep {index['group']}: final metrics against {axis}", height=300 * ((len(keys) + 2) // 3),
                      template="plotly_white")
    print(save_figure(fig, args.out, f"sweep_{index['group']}"))
    write_json(args.out, f"sweep_{index['group']}", table)


if __name__ == "__main__":
    main()
