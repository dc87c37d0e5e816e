"""The ablation suite side by side, over seeds: per metric each arm's mean with a 95 % t-interval over its seeds,
its difference to `full` with its interval (paired by seed where both arms ran the same seeds, else Welch's), and
the verdict ("not distinguishable from seed noise" when that interval contains 0); curves show each arm's mean
with a 95 % band over seeds. Runs are grouped into arms by their config's run.ablation
(one run per arm works too: no interval, and the table says so).

    python analysis/compare_ablations.py runs/<suite>-full-s0 runs/<suite>-full-s1 ... --out figures/
    python analysis/compare_ablations.py --wandb ENTITY/PROJECT/RUN_ID --wandb ... --out figures/
"""

from __future__ import annotations

import math

import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from common import parse_args, save_figure, write_json

from chrono_membench import metric_keys as K
from studies.comparison import compare, mean_interval, seed_of

PREFIXES = ("val/", "sae/", "chrono/", "mem/", "train/loss")


def fmt(value: float, sign: str = "") -> str:
    return "–" if value != value else f"{value:{sign}.4g}"


def band_figure(arms: dict[str, list], keys: list[str], title: str, cols: int = 3) -> go.Figure:
    """One panel per key: each arm's mean over seeds (at the steps every seed logged) and its 95 % band."""
    rows = -(-len(keys) // cols)
    titles = [f"{k.split('/')[0]}/{k.split('/')[-1]}" if k.count("/") == 2 and ".hook_" in k else k for k in keys]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles)
    palette = plotly.colors.qualitative.Plotly
    for i, (arm, runs) in enumerate(arms.items()):
        colour = palette[i % len(palette)]
        for j, key in enumerate(keys):
            series = [dict(zip(*run.series(key))) for run in runs]
            steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
            if not steps:
                continue
            stats = [mean_interval([s[step] for s in series]) for step in steps]
            where = {"row": j // cols + 1, "col": j % cols + 1}
            if len(runs) > 1:
                band = [h for _, _, h in stats] + [lo for _, lo, _ in stats][::-1]
                fig.add_trace(go.Scatter(x=steps + steps[::-1], y=band,
                                         fill="toself", fillcolor=colour, opacity=0.2, line={"width": 0},
                                         name=f"{key} · {arm} 95 %", legendgroup=arm, showlegend=False), **where)
            fig.add_trace(go.Scatter(x=steps, y=[m for m, _, _ in stats], mode="lines+markers", line={"color": colour},
                                     name=f"{key} · {arm}", legendgroup=arm, showlegend=False, marker={"size": 4}),
                          **where)
        seeds = f"{len(runs)} seeds, 95 % band" if len(runs) > 1 else "1 seed: no band"
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{arm} ({seeds})", legendgroup=arm,
                                 line={"color": colour}))  # the arm's one legend entry
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title, height=320 * rows, template="plotly_white")
    return fig


def main() -> None:
    args = parse_args(__doc__)
    arms: dict[str, list] = {}
    for run in args.loaded:
        variant = run.name.partition("#")[2]  # a run seen through an SAE variant (<run>#<variant>): its own arm
        arm = variant or run.config.get("run", {}).get("ablation") or run.label
        arms.setdefault(arm, []).append(run)
    finals = {arm: [r.final() for r in runs] for arm, runs in arms.items()}
    keys = sorted({k for fs in finals.values() for f in fs for k in f
                   if k.startswith(PREFIXES) and "/layer_" not in k and not k.endswith(K.CI)})
    baseline = "full" if "full" in arms else next(iter(arms))
    rows = compare(finals, keys, baseline, {arm: [seed_of(r.config) for r in runs] for arm, runs in arms.items()})
    columns = ["metric", "arm", "seeds", "mean", "95 % CI", f"− {baseline}", "95 % CI of the difference", "test",
               "verdict"]
    cells = [[r["metric"] for r in rows], [r["arm"] for r in rows], [r["seeds"] for r in rows],
             [fmt(r["mean"]) for r in rows], [f"[{fmt(r['low'])}, {fmt(r['high'])}]" for r in rows],
             [fmt(r.get("diff", math.nan), "+") for r in rows],
             [f"[{fmt(r.get('diff_low', math.nan), '+')}, {fmt(r.get('diff_high', math.nan), '+')}]" for r in rows],
             [r.get("test", "") for r in rows], [r.get("verdict", "") for r in rows]]
    table = go.Figure(go.Table(header={"values": columns, "align": "left"}, cells={"values": cells, "align": "left"}))
    table.update_layout(title=f"Final metrics by ablation (mean over seeds, 95 % intervals; differences to {baseline})",
                        height=max(400, 24 * len(rows)))
    print(save_figure(table, args.out, "ablations_table"))
    write_json(args.out, "ablations_final", {"baseline": baseline, "rows": rows})
    hooks = sorted({K.hook_of(k) for fs in finals.values() for f in fs for k in f} - {None})
    panels = [K.val("loss"), K.MEM_LOSS_GAP, K.ATTN_DIVERSITY_MEAN, K.ATTN_DIVERSITY_NOSINK_MEAN, K.DROPOUT_RATE]
    for hook in hooks:
        panels += [K.sae(hook, "fve"), K.sae(hook, "ce_recovered"), K.chrono(hook, "alignment_loss"),
                   K.chrono(hook, "hungarian_mcs"), K.chrono(hook, "temporal_purity_excess"),
                   K.chrono(hook, "source_purity_excess")]
    banded = [arm for arm, runs in arms.items() if len(runs) > 1]
    title = ("Ablations over training: mean over seeds" + (f"; 95 % band over seeds for {', '.join(banded)}" if banded
                                                           else "; every arm has one seed: no band"))
    print(save_figure(band_figure(arms, panels, title), args.out,
                      "ablations_curves"))


if __name__ == "__main__":
    main()
